"""A run's model folders as Hugging Face model repos: the folder's files (weights hard-linked where the file system
allows, else copied) and a README.md model card: base model, the exported datasets it was trained on, its
hyperparameters and training result, and its evaluation results in the card's `model-index` format.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from psrlm.export.run_folder import MODEL_MARK, RunFolder
from psrlm.records import read_json

TAGS = ["psrlm", "process-based-self-rewarding", "math", "step-by-step"]


def place_files(src: Path, dst: Path, copy: bool = False) -> str:
    """Every file of the model folder into `dst` (not README.md, not hidden files such as the folder lock):
    hard links, which cost no disk and stay valid because psrlm replaces files rather than rewriting them, or copies
    where linking is not possible (another file system) or `copy` is asked. Returns "hard-linked", "copied" or
    "hard-linked + copied"."""
    how = set()
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if not f.is_file() or rel.parts[0].startswith(".") or rel.as_posix() == "README.md":
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if copy:
                raise OSError("copy asked")
            os.link(f, target)
            how.add("hard-linked")
        except OSError:
            shutil.copy2(f, target)
            how.add("copied")
    return " + ".join(sorted(how, reverse=True)) or "no files"


def _eval_results(run: RunFolder, name: str, names: dict[str, str]) -> tuple[list, list[str]]:
    """(EvalResults for the model-index, markdown table lines) from <run>/eval/<name>/."""
    from huggingface_hub import EvalResult

    folder = run.layout.evaluation(name)
    results, lines = [], []
    metrics_file = folder / "metrics.json"
    metrics = read_json(metrics_file) if metrics_file.exists() else {}
    shots = " (3-shot)" if metrics.get("few_shot") else ""
    judge_shots = " (3-shot)" if metrics.get("judge_few_shot", metrics.get("few_shot")) else ""
    for bench, s in (metrics.get("benchmarks") or {}).items():
        if not s.get("n"):
            continue
        results.append(EvalResult(task_type="text-generation", task_name="Math problem solving (greedy)",
                                  dataset_type=names["eval"], dataset_name=bench, dataset_config=name,
                                  dataset_split=bench, metric_type="accuracy", metric_value=s["accuracy"],
                                  metric_name=f"accuracy{shots}"))  # fmt: skip
        lines.append(f"| {bench} | greedy accuracy{shots} | {s['accuracy']:.3f} | {s['n']} |")
    judge = [
        ("judge", "judge_accuracy", f"judge accuracy{judge_shots} (generated verdicts, both A/B orders)"),
        ("judge_soft", "accuracy", f"judge accuracy{judge_shots} (soft verdicts, both A/B orders)"),
    ]
    for key, field, label in judge:
        j = metrics.get(key) or {}
        if j.get("n") and j.get(field) is not None:
            results.append(EvalResult(task_type="text-classification", task_name="Pairwise step judging",
                                      dataset_type=names["eft"], dataset_name="EFT test", dataset_config="pairwise",
                                      dataset_split="test", metric_type="accuracy", metric_value=j[field],
                                      metric_name=label))  # fmt: skip
            lines.append(f"| EFT test | {label} | {j[field]:.3f} | {j['n']} |")
    tts_file = folder / "tts.json"
    if tts_file.exists():
        t = read_json(tts_file)
        for mode in ("greedy", "tts"):
            label = "accuracy with test-time step search" if mode == "tts" else "greedy accuracy (same problems)"
            results.append(EvalResult(task_type="text-generation", task_name="Test-time scaling (step search)",
                                      dataset_type=names["eval"], dataset_name=t.get("benchmark", ""),
                                      dataset_config=name, metric_type="accuracy",
                                      metric_value=t[mode]["accuracy"], metric_name=label))  # fmt: skip
            lines.append(f"| {t.get('benchmark', '')} | {label} | {t[mode]['accuracy']:.3f} | {t['n']} |")
    return results, lines


def _hyperparameters(manifest: dict, build: dict) -> list[str]:
    stage = (manifest.get("metrics", {}).get("train") or {}).get("stage") or build.get("stage", "")
    settings = manifest.get("settings") or {}
    rows = [(k, v) for k, v in settings.items() if k.startswith(f"{stage}.")]
    if not rows and isinstance(build.get(stage), dict):  # M0: its recipe is in psrlm_build.json
        rows = [(f"{stage}.{k}", v) for k, v in build[stage].items()]
    rows += [(k, v) for k, v in settings.items() if k.startswith(("search.", "srlm.", "prompts."))]
    return [f"| `{k}` | {v} |" for k, v in rows]


def _training(manifest: dict, build: dict) -> list[str]:
    train = manifest.get("metrics", {}).get("train") or build
    keys = ("stage", "examples", "pairs", "steps", "effective_batch", "final_loss", "reward_accuracy",
            "reward_margin", "tokens", "truncated", "saved_dtype", "wall_s")  # fmt: skip
    return [f"| {k} | {train[k]:.4g} |" if isinstance(train[k], float) else f"| {k} | {train[k]} |"
            for k in keys if train.get(k) is not None]  # fmt: skip


def _what(name: str, manifest: dict, build: dict, names: dict[str, str], parent: str) -> tuple[str, list[str]]:
    """(prose on how the model was made, the dataset repos it was trained on)."""
    method, it = manifest.get("method", ""), manifest.get("iteration", 0)
    if name == "M0":
        return (f"The base model M0: a Llama-class model built from a config, its tokenizer trained on the domain, "
                f"pre-trained on {build.get('examples', '?')} raw domain texts (problems with worked solutions, not "
                "the training or test problems). The texts are not exported; psrlm regenerates them from the "
                "recorded settings."), []  # fmt: skip
    if it == 1:
        eft = "`pairwise`, split `train`: pairwise step judging" if method == "psrlm" else \
            "`scoring`: whole-solution scoring"  # fmt: skip
        return (f"M1 of the {method.upper()} loop: SFT of {parent} on the IFT data (`{names['ift']}`) and the EFT "
                f"data (`{names['eft']}`, config {eft}), mixed."), [names["ift"], names["eft"]]  # fmt: skip
    train = manifest.get("metrics", {}).get("train") or {}
    config = f"{name.rsplit('-M', 1)[0]}_it{it}"  # the search folder's label: the method, or an arm's (oracle)
    oracle = (manifest.get("metrics", {}).get("judge") or {}).get("kind") == "oracle"
    what = (f"{name} of the ORACLE-judged arm beside the {method.upper()} loop (science, not the self-rewarding "
            "method)" if oracle else f"M{it} of the {method.upper()} loop")  # fmt: skip
    if train.get("skipped"):
        return (f"{what}: its parent's search made no preference pairs, so this is "
                f"{parent} unchanged (config `{config}` of `{names['ppd']}` is empty)."), []  # fmt: skip
    how = "step-wise DPO" if method == "psrlm" else "DPO"
    judged = "from its candidates judged by the arith step oracle" if oracle else \
        f"{parent} made by judging its own candidates"  # fmt: skip
    return (f"{what}: {how} of {parent} on the {train.get('pairs', '?')} preference "
            f"pairs {judged} (config `{config}` of `{names['ppd']}`, the search "
            f"traces in `{names['traces']}`); the reference model is {parent}."), [names["ppd"]]  # fmt: skip


def _provenance(folder: Path) -> str:
    files = {"psrlm_manifest.json": "parent, data files with sha256, config, metrics",
             MODEL_MARK: "how psrlm built it", "train_log.json": "loss curve, settings, how many weights moved"}  # fmt: skip
    present = [f"`{f}` ({what})" for f, what in files.items() if (folder / f).exists()]
    return f"How it was made, in this folder: {', '.join(present)}." if present else ""


def model_card(run: RunFolder, name: str, folder: Path, names: dict[str, str], repo: dict[str, str],
               meta: dict) -> str:  # fmt: skip
    """The README.md text of model `name`: YAML (ModelCardData, with model-index) + prose. `repo` maps every
    exported model to its repo id; `names` the dataset kinds to theirs."""
    from huggingface_hub import ModelCard, ModelCardData

    manifest = run.manifests.get(name) or {}
    build = read_json(folder / MODEL_MARK) if (folder / MODEL_MARK).exists() else {}
    parent_path = manifest.get("parent_model")
    parent_name = "M0" if name.endswith("-M1") else Path(parent_path).name if parent_path else None
    base = repo.get(parent_name) if parent_name else None
    hub_m0 = run.section("model").get("path") or ""
    if base is None and name.endswith("-M1") and hub_m0.count("/") == 1 and not Path(hub_m0).exists():
        base = hub_m0  # a Hub checkpoint (Qwen/Qwen2.5-Math-7B) is the base model, named by its id
    parent = f"`{base}`" if base else f"`{parent_name}`" if parent_name else "none"
    what, datasets = _what(name, manifest, build, names, parent)
    results, eval_lines = _eval_results(run, name, names)
    data = ModelCardData(model_name=repo[name], base_model=base, datasets=datasets or None,
                         eval_results=results or None, library_name="transformers", license=meta["license"],
                         pipeline_tag="text-generation", tags=TAGS + [manifest.get("method") or "base-model"],
                         psrlm={"version": meta["version"], "run": meta["run"], "model": name,
                                "iteration": manifest.get("iteration", 0), "settings": manifest.get("settings") or {}})  # fmt: skip
    hyper = _hyperparameters(manifest, build)
    training = _training(manifest, build)
    body = [f"# {repo[name]}", "", f"A model of a run of {meta['paper']}, exported by psrlm {meta['version']}.", "",
            what, "", "## Training data", ""]  # fmt: skip
    body += [f"- `{d}` (dataset)" for d in datasets] or ["- (none exported, see above)"]
    if hyper:
        body += ["", "## Hyperparameters", "", "| setting | value |", "| --- | --- |", *hyper]
    if training:
        body += ["", "## Training result", "", "| | |", "| --- | --- |", *training]
    body += ["", "## Evaluation", ""]
    body += ["| benchmark | metric | value | n |", "| --- | --- | --- | --- |", *eval_lines] if eval_lines else \
        ["Not evaluated in this run."]  # fmt: skip
    body += ["", "The same numbers are in this card's `model-index` metadata; every answer behind them is in "
             f"`{names['eval']}` (config `{name}`).", "", "## Use", "",
             "The model answers in psrlm's step format (`Step 1: ...`, the answer in `\\boxed{}`) and judges two "
             "candidate steps with `[[A]]`/`[[B]]`; the prompts are psrlm's (`prompts.variant` "
             f"`{run.section('prompts').get('variant', '?')}`, `src/psrlm/prompts.py`).", "", "```python",
             "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             f'tok = AutoTokenizer.from_pretrained("{repo[name]}")',
             f'model = AutoModelForCausalLM.from_pretrained("{repo[name]}")', "```", "", _provenance(folder)]  # fmt: skip
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body) + "\n"))
