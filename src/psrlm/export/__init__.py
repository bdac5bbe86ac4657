"""`psrlm export RUN_DIR [--out DIR] [--push-to-hub ORG/NAME [--private]]`: a run's data and models in Hugging Face
formats, with dataset and model cards.

    DIR/datasets/NAME-ift/      IFT solutions            config default: split train
    DIR/datasets/NAME-eft/      EFT judge items          configs pairwise (train, test), scoring (train; SRLM)
    DIR/datasets/NAME-ppd/      PPD preference pairs     a config per method and iteration: psrlm_it2, srlm_it2, ...
    DIR/datasets/NAME-traces/   search traces            the same configs, and tts_<model> (test-time search)
    DIR/datasets/NAME-eval/     evaluation samples       a config per model (M0, psrlm-M1, ...), a split per benchmark
    DIR/models/NAME-<model>/    the model's files (weights hard-linked, else copied) + README.md model card
    DIR/README.md, export.json  what was exported, what is missing and why

NAME is the run folder's name, or the NAME of --push-to-hub; DIR defaults to RUN_DIR/export. Each dataset folder is a
Hub dataset repo: parquet under data/<config>/<split>-00000-of-00001.parquet and a README.md whose YAML says configs,
splits, features, license, the psrlm version and the settings that made each config, so
`datasets.load_dataset(DIR/datasets/NAME-ppd, "psrlm_it2")` reads it offline. Each model card names its base model,
the dataset repos it was trained on, its hyperparameters and its evaluation results (`model-index`). A run that is
half done exports what exists and says, one line per stage, what is missing.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from psrlm.export.run_folder import RunFolder
from psrlm.records import write_json

PAPER = "[Process-based Self-Rewarding Language Models](https://arxiv.org/abs/2503.03746) (Zhang et al., 2025)"
INDEX = "export.json"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("psrlm")
    except PackageNotFoundError:
        return "unknown"


def _staging(out: Path, run_dir: Path) -> Path:
    """A fresh folder beside `out` to build the export in; `out` itself must be new, empty or an earlier export
    (replaced only once the new one is complete, so a failed export leaves the old one whole)."""
    if out.resolve() == run_dir.resolve():
        raise ValueError(
            f"--out {out} is the run folder itself; give a folder for the export (default RUN_DIR/export)"
        )
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / INDEX).exists():
        raise ValueError(f"--out {out} is not empty and holds no psrlm export ({INDEX}); choose a new folder")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def _model_stage_lines(run: RunFolder, exported: dict) -> list[str]:
    """One line per model the recorded config expects that was not exported."""
    expected = ["M0"] if not run.section("model").get("path") else []
    expected += [f"{m}-M{i}" for m in run.methods() for i in [1, *run.iterations()]]
    lines = []
    for name in expected:
        if name not in exported:
            why = "no M1 manifest or summary.json names the M0 yet (not pre-trained, or not a psrlm-built model)" \
                if name == "M0" else f"no manifests/{name}.json: not trained yet"  # fmt: skip
            lines.append(f"model {name:<14} missing: {why}")
    return lines


def export_run(run_dir: Path, out: Path | None = None, namespace: str | None = None, name: str | None = None,
               license: str | None = None, copy: bool = False) -> dict:  # fmt: skip
    """Export what `run_dir` holds into `out` (default RUN_DIR/export); returns the index written to
    `out`/export.json, with one line per stage ("stages") saying what was written or what is missing. Repos are
    named NAME-<kind> and NAME-<model> (NAME: `name`, else the run folder's name), as `namespace`/... in the cards
    when a Hub namespace is given. `copy`: copy the model files instead of hard-linking them."""
    start = time.time()
    run = RunFolder(Path(run_dir))
    final = Path(out) if out else run.dir / "export"
    out = _staging(final, run.dir)
    try:
        index = _export(run, out, namespace, name, license, copy)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    index["seconds"] = round(time.time() - start, 2)
    write_json(out / INDEX, index)
    (out / "README.md").write_text(_index_readme(index), encoding="utf-8")
    _publish(out, final)
    return index


def _export(run: RunFolder, out: Path, namespace: str | None, name: str | None, license: str | None,
            copy: bool) -> dict:  # fmt: skip
    prefix = name or run.dir.resolve().name
    meta = {"version": _version(), "run": prefix, "paper": PAPER, "namespace": namespace, "copy": copy,
            "license": license or ("mit" if run.arith else "unknown")}  # fmt: skip
    lines = [f"config {'':<14}" + (f"from {run.config_source}" if run.config else
             "none recorded (no logs/runs.jsonl or manifests/): exporting what exists; what is missing is unknown")]  # fmt: skip
    repos: list[dict] = []
    lines += _export_datasets(run, out, prefix, meta, repos)
    lines += _search_lines(run)
    lines += _export_models(run, out, prefix, meta, repos)
    files = [f.stat() for f in out.rglob("*") if f.is_file()]
    return {"psrlm_version": meta["version"], "run": prefix, "run_dir": str(run.dir), "namespace": namespace,
            "license": meta["license"], "repos": repos, "stages": lines, "bytes": sum(f.st_size for f in files),
            "bytes_hard_linked": sum(f.st_size for f in files if f.st_nlink > 1)}  # fmt: skip


def _repo_id(meta: dict, name: str) -> str:
    return f"{meta['namespace']}/{name}" if meta["namespace"] else name


def _export_datasets(run: RunFolder, out: Path, prefix: str, meta: dict, repos: list[dict]) -> list[str]:
    from psrlm.export import data
    from psrlm.export.tables import write_dataset

    lines = []
    for kind, build in data.KINDS.items():
        made = build(run)
        if made is None:
            lines.append(f"data {kind:<15} missing: {_missing_data(run, kind)}")
            continue
        tables, card, body = made
        card = {"license": meta["license"], "language": ["en"], "pretty_name": f"{prefix} {kind}",
                "tags": data.TAGS, **card, "psrlm": {"version": meta["version"], "run": prefix,
                                                     "config_source": run.config_source}}  # fmt: skip
        counts = write_dataset(out / "datasets" / f"{prefix}-{kind}", tables, card, body)
        repos.append({"type": "dataset", "name": f"{prefix}-{kind}", "path": f"datasets/{prefix}-{kind}"})
        lines.append(f"data {kind:<15} " + "; ".join(
            f"{c}: " + ", ".join(f"{s} {n}" for s, n in splits.items()) for c, splits in counts.items()))  # fmt: skip
    return lines


def _export_models(run: RunFolder, out: Path, prefix: str, meta: dict, repos: list[dict]) -> list[str]:
    from psrlm.export import data, models

    names = {kind: _repo_id(meta, f"{prefix}-{kind}") for kind in data.KINDS}
    found = run.models()
    repo_ids = {m: _repo_id(meta, f"{prefix}-{m}") for m in found}
    lines = []
    for model, folder in found.items():
        dst = out / "models" / f"{prefix}-{model}"
        how = models.place_files(folder, dst, copy=meta["copy"])
        (dst / "README.md").write_text(models.model_card(run, model, folder, names, repo_ids, meta), encoding="utf-8")
        repos.append({"type": "model", "name": f"{prefix}-{model}", "path": f"models/{prefix}-{model}"})
        lines.append(f"model {model:<14} {how} from {folder}")
    lines += _model_stage_lines(run, found)
    lines += [f"model {p.name:<14} skipped: not a model the run's manifests describe (random initial weights, an "
              "M0 of other settings, or half written)" for p in run.skipped_models()]  # fmt: skip
    evaluated = run.eval_dirs()
    lines += [f"eval {m:<15} missing: no eval/{m}/ (not evaluated yet)" for m in [*found, *_expected_missing(run, found)]
              if m not in evaluated]  # fmt: skip
    return lines


def _expected_missing(run: RunFolder, placed: dict) -> list[str]:
    return [f"{m}-M{i}" for m in run.methods() for i in [1, *run.iterations()] if f"{m}-M{i}" not in placed]


def _missing_data(run: RunFolder, kind: str) -> str:
    if kind in ("ift", "eft"):
        files = run.data_files()
        wanted = files["ift"] if kind == "ift" else files["eft_train"] + files["eft_test"]
        return f"{', '.join(map(str, wanted)) or 'no file named by the config'} not found (`psrlm data` or `iterate`)"
    if kind == "eval":
        return "no eval/<model>/<benchmark>.jsonl yet"
    return "no search has made pairs yet (<method>/it<n>/pairs.jsonl)" if kind == "ppd" else \
        "no search folder yet (<method>/it<n>/traces.jsonl)"  # fmt: skip


def _search_lines(run: RunFolder) -> list[str]:
    lines, seen = [], set()
    for s in run.searches():
        seen.add((s.label, s.iteration))
        pairs = s.dir / "pairs.jsonl"
        n = sum(1 for line in pairs.open(encoding="utf-8") if line.strip()) if pairs.exists() else 0
        traces = sum(1 for line in (s.dir / "traces.jsonl").open(encoding="utf-8") if line.strip())
        if s.trained:
            trained = f"trained {s.trained}" + ("" if s.hash_ok else ", BUT the file changed since (sha256 differs)")
        else:
            trained = "no model trained on them yet"
        what = f"{n} pairs ({trained})" if n else "0 pairs (nothing to train on: the model is its parent unchanged)"
        lines.append(f"search {s.config:<13} {what}, {traces} traces")
    for method in run.methods():
        for it in run.iterations():
            if (method, it) not in seen:
                lines.append(
                    f"search {f'{method}_it{it}':<13} missing: no {method}/it{it}/traces.jsonl (not searched yet)"
                )
    return lines


def _index_readme(index: dict) -> str:
    repos = "\n".join(f"- `{r['path']}` ({r['type']} repo `{r['name']}`)" for r in index["repos"])
    stages = "\n".join(index["stages"])
    return f"""# psrlm export of run `{index["run"]}`

Made by psrlm {index["psrlm_version"]} from `{index["run_dir"]}` (license `{index["license"]}`). Each folder is a
Hugging Face repo with its card in README.md; a dataset loads with `datasets.load_dataset(folder, config)`, a model
with `AutoModelForCausalLM.from_pretrained(folder)`.

{repos}

What was exported and what is missing, one line per stage:

```
{stages}
```
"""


# --------------------------------------------------------------------------------------------------- CLI


def add_export_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("run_dir", type=Path, help="a run folder (paths.run_dir of `psrlm iterate`), finished or not")
    parser.add_argument("--out", type=Path, help="export folder (default RUN_DIR/export); an earlier export there "
                        "is replaced")  # fmt: skip
    parser.add_argument(
        "--name", dest="prefix", help="repo name prefix (default: the run folder's name, or NAME of --push-to-hub)"
    )
    parser.add_argument("--license", help="license id in every card (default mit for the embedded domain, whose data "
                        "and models psrlm makes; unknown for a real-data run: set it to your data's and model's)")  # fmt: skip
    parser.add_argument("--push-to-hub", metavar="ORG/NAME", help="then upload every repo as ORG/NAME-<kind> and "
                        "ORG/NAME-<model> with huggingface_hub (needs HF_TOKEN or `hf auth login`; never by default)")  # fmt: skip
    parser.add_argument("--private", action="store_true", help="with --push-to-hub: create the repos private")
    parser.add_argument("--copy", action="store_true", help="copy the model files instead of hard-linking them (an "
                        "export that shares no file with the run, e.g. to move it to another disk)")  # fmt: skip
    return parser


def cmd_export(args: argparse.Namespace) -> int:
    namespace, name = None, args.prefix
    if args.push_to_hub:
        namespace, _, hub_name = args.push_to_hub.partition("/")
        if not namespace or not hub_name or "/" in hub_name:
            raise ValueError(f"--push-to-hub {args.push_to_hub}: expected ORG/NAME")
        name = name or hub_name
    index = export_run(args.run_dir, args.out, namespace=namespace, name=name, license=args.license, copy=args.copy)
    out = Path(args.out) if args.out else Path(args.run_dir) / "export"
    print("\n".join(index["stages"]))
    print(f"exported {len(index['repos'])} repos to {out} in {index['seconds']:.1f}s: {index['bytes'] / 1e6:.1f} MB, "
          f"of which {index['bytes_hard_linked'] / 1e6:.1f} MB hard-linked to the run's files (no new disk)")  # fmt: skip
    if args.push_to_hub:
        from psrlm.export.hub import push

        for url in push(out, index, private=args.private):
            print(f"pushed {url}")
    return 0
