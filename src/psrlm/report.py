"""`psrlm report RUN_DIR [RUN_DIR ...]`: paper-style tables and plots from finished runs, and the multi-seed
science check.

One run (read from its manifests and `eval/` folder, so later `psrlm eval` results show up too):
  Table 1  accuracy per benchmark per iteration, PSRLM and SRLM       Table 2  M1 -> Mn change
  Table 3  judge accuracy (generated verdicts + A/B consistency; logit-read soft verdicts)
  Table 4  step number and step length per benchmark                  Table 5  greedy vs test-time search
  Appendix B: pairwise step judging vs solution scoring; PPD pair precision per iteration (oracle, arith)
  plots in <run>/report_plots/: accuracy, judge accuracy, steps and pair precision vs iteration
Several runs of the same recipe with different `iterate.seed`: for each split, the PSRLM and SRLM M1 -> Mn change
per seed, their mean with a 95 % t-interval across seeds, and the PSRLM - SRLM difference, so the question "does
PSRLM Mn beat M1, and beat SRLM's change?" gets a number with its uncertainty.

The tables are drawn in report_tables.py, the plots in report_plots.py; here: what a run holds (collect, and what
of it is stale), the science check, and the report put together.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from pathlib import Path

from psrlm.confidence import mean_ci
from psrlm.records import atomic_write_text, read_json, write_json
from psrlm.report_plots import plot_run
from psrlm.report_tables import (
    iteration_of,
    last_iteration,
    markdown_table,
    method_of,
    model_order,
    parse_name,
    table_accuracy,
    table_appendix_b,
    table_deltas,
    table_judge,
    table_judge_kinds,
    table_pairs,
    table_steps,
    table_tts,
)
from psrlm.run_layout import RunLayout
from psrlm.summary_table import format_table, judge_label, manifest_facts


def load_summary(run_dir: Path) -> dict:
    path = RunLayout(run_dir).summary
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `psrlm iterate` for {run_dir} first")
    return read_json(path)


def deltas(summary: dict, split: str) -> dict[str, float]:
    """M1 -> last-iteration accuracy change per method on one split."""
    models = summary["models"]
    out = {}
    for method in ("psrlm", "srlm"):
        last = last_iteration(models, method)
        if last and f"{method}-M1" in models:
            first, end = models[f"{method}-M1"][split]["accuracy"], models[last][split]["accuracy"]
            if first is not None and end is not None:  # nothing measured on a side: no change to report
                out[method] = end - first
    return out


def science_check(run_dirs: list[Path]) -> dict:
    summaries = [{"models": collect(d)["models"]} for d in run_dirs]  # current results only, never stale ones
    result: dict = {"runs": [str(d) for d in run_dirs]}
    for split in ("test", "hard"):
        per_seed = [deltas(s, split) for s in summaries]
        entry = {}
        for key in ("psrlm", "srlm"):
            vals = [d[key] for d in per_seed if key in d]
            entry[key] = {"per_seed": vals, "mean": mean_ci(vals)[0], "ci95": mean_ci(vals)[1]}
        diff = [d["psrlm"] - d["srlm"] for d in per_seed if {"psrlm", "srlm"} <= set(d)]
        entry["psrlm_minus_srlm"] = {"per_seed": diff, "mean": mean_ci(diff)[0], "ci95": mean_ci(diff)[1]}
        result[split] = entry
    precision, own = {}, {}
    for s in summaries:
        for name, m in s["models"].items():
            pp = (m.get("manifest") or {}).get("pair_precision") or {}
            if pp.get("precision") is not None:
                precision.setdefault(name, []).append(pp["precision"])
            if pp.get("correct_wrong", 0) + pp.get("wrong_correct", 0):
                own.setdefault(name, []).append(pp["correct_wrong"] / (pp["correct_wrong"] + pp["wrong_correct"]))
    result["pair_precision"] = {
        k: {"per_seed": v, "mean": statistics.mean(v), "own_pair_judge_accuracy": own.get(k)}
        for k, v in precision.items()
    }
    return result


def format_science(result: dict) -> str:
    lines = ["| split | PSRLM M1→Mn | SRLM M1→Mn | PSRLM − SRLM |", "|---|---|---|---|"]
    for split in ("test", "hard"):
        cells = []
        for key in ("psrlm", "srlm", "psrlm_minus_srlm"):
            e = result[split][key]
            vals = ", ".join(f"{v:+.3f}" for v in e["per_seed"])
            ci = "" if math.isnan(e["ci95"]) else f" ± {e['ci95']:.3f}"
            cells.append(f"{e['mean']:+.3f}{ci} ({vals})")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    if result["pair_precision"]:
        lines += [
            "",
            "| model | PPD pair precision (oracle), per seed | own-pair judge accuracy, per seed |",
            "|---|---|---|",
        ]
        for name, e in result["pair_precision"].items():
            own = e.get("own_pair_judge_accuracy") or []
            own_cell = f"{statistics.mean(own):.3f} ({', '.join(f'{v:.3f}' for v in own)})" if own else "-"
            lines.append(f"| {name} | {e['mean']:.3f} ({', '.join(f'{v:.3f}' for v in e['per_seed'])}) | {own_cell} |")
        lines += ["", "Own-pair judge accuracy: among the pairs with exactly one right step (oracle), the share where "
                  "the model's judge chose the right one; 0.5 is chance."]  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- one run: collect


def collect(run_dir: Path) -> dict:
    """Everything the report shows for one run: {models: {name: metrics}, stale: {name: why}, tts, appendix_b,
    timings_s, wall_s}.

    Model metrics come from `eval/<name>.json` (written by `psrlm iterate` / `psrlm eval`), per-benchmark results
    from `eval/<name>/summary.json`, pair precision and search statistics from `manifests/<name>.json`; a run
    with only a `summary.json` (older runs) still renders. Results that no longer belong to the run's current
    models (see `staleness`) are left out of `models` and listed in `stale` with the reason."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    summary = read_json(layout.summary) if layout.summary.exists() else {}
    names = set(summary.get("models", {}))
    names |= {p.stem for p in layout.manifests.glob("*.json")}
    names |= {p.stem for p in layout.evals.glob("*.json") if p.stem != "appendix_b"}  # older runs
    names |= {p.parent.name for p in layout.evals.glob("*/summary.json")}  # `psrlm eval` and iterate
    if not names:
        raise FileNotFoundError(f"{run_dir}: no summary.json, manifests/ or eval/ results: run `psrlm iterate` or "
                                "`psrlm eval` for it first")  # fmt: skip
    stale = staleness(run_dir, names, summary.get("models", {}))
    models: dict = {}
    for name in sorted(names, key=model_order):
        if name in stale:
            continue
        m = dict(summary.get("models", {}).get(name, {}))
        for ev in (layout.legacy_eval(name), layout.eval_metrics(name)):
            if ev.exists():
                m.update(read_json(ev))
        bench = layout.eval_summary(name)
        benchmarks = dict(m.get("benchmarks") or {})
        if bench.exists():
            benchmarks.update(read_json(bench))
        for split in ("test", "hard"):  # runs from before per-benchmark files: the arith splits under test/hard
            if split in m and f"arith_{split}" not in benchmarks:
                benchmarks[f"arith_{split}"] = m[split]
        m["benchmarks"] = benchmarks
        man = layout.manifest(name)
        if man.exists():
            m["manifest"] = manifest_facts(read_json(man))
        judge = layout.eval_judge(name)  # written by `psrlm eval`
        if judge.exists():
            m.update(read_json(judge))
        tts = layout.eval_tts(name)
        if tts.exists():
            m["tts"] = read_json(tts)
        models[name] = m
    appendix_b = layout.appendix_b
    ab = read_json(appendix_b) if appendix_b.exists() else None
    if ab and {Path(ab.get("pair_judge", "")).name, Path(ab.get("scorer", "")).name} & set(stale):
        stale["appendix B"] = "made with a model that is stale"
        ab = None
    return {
        "models": models,
        "stale": stale,
        "appendix_b": ab,
        "timings_s": summary.get("timings_s", {}),
        "wall_s": summary.get("wall_s"),
    }


def staleness(run_dir: Path, names: set[str], summarised: dict) -> dict[str, str]:
    """{name: why} for every result that no longer belongs to the run's current models, judged only on evidence
    the run holds (a run from before these records shows as it is):
    - a model whose manifest names its folder, and that folder is gone (moved to replaced/ by --fresh);
    - a model whose parent's manifest is gone, or records other settings than the fingerprint its child was made
      from (the parent was rebuilt), and everything downstream of a stale model;
    - an evaluation whose folder records a model (path and hash) that is gone or has other weights now;
    - a number in summary.json whose evaluation folder is gone (in a run whose evaluations record their model)."""
    from psrlm.folders import SETTINGS_NAME, fingerprint, model_identity

    stale: dict[str, str] = {}
    gone: set[str] = set()  # models that are not the run's current ones (their children are not either)
    layout = RunLayout(run_dir)
    manifests = {n: read_json(layout.manifest(n)) for n in names if layout.manifest(n).exists()}
    stamped = any(layout.evals.glob(f"*/{SETTINGS_NAME}"))
    for name in sorted(names, key=lambda n: (iteration_of(n) or 0, n)):  # parents before their children
        method, it = parse_name(name)
        man = manifests.get(name)
        if man is not None and man.get("model_path") and not layout.model(name).is_dir():
            stale[name] = "its model is gone from models/ (moved to replaced/ by --fresh?)"
            gone.add(name)
            continue
        parent_fp = ((man or {}).get("settings") or {}).get("parent")
        if parent_fp and method and it and it > 1:
            # the manifest names its parent (the oracle arm's oracle-M2 starts from psrlm-M1); older ones did not
            parent = (manifest_facts(man).get("parent") if man else None) or f"{method}-M{it - 1}"
            why = ("was replaced" if parent not in manifests
                   else "was rebuilt since, with other settings"
                   if fingerprint(manifests[parent].get("settings") or {}) != parent_fp
                   else "is not current" if parent in gone else None)  # fmt: skip
            if why:
                stale[name] = f"its parent {parent} {why}"
                gone.add(name)
                continue
        stamp = layout.evaluation(name) / SETTINGS_NAME
        if stamp.exists():
            record = read_json(stamp)
            sha = (record.get("settings") or {}).get("model.sha256")
            known = (record.get("extra") or {}).get("model") or {}
            own = layout.model(name)
            model = own if own.is_dir() else Path(known["path"]) if known.get("path") else None
            if sha and model is not None:
                if not model.is_dir():
                    stale[name] = f"its evaluation belongs to {model}, which is gone"
                elif model_identity(model, known) != sha:
                    stale[name] = f"its evaluation was made from other weights than {model} holds now"
        elif stamped and name in summarised:
            stale[name] = "its evaluation was moved aside (replaced/) and not redone yet"
    return stale


# ---------------------------------------------------------------------------------------------- the report


def report_run(run_dir: Path, plots_dir: Path | None = None) -> str:
    """The markdown report of one run; with `plots_dir`, PNG plots go there (linked relative to its parent,
    where the markdown file is written)."""
    c = collect(run_dir)
    models = c["models"]
    oracle = [judge_label(n, m.get("manifest")) for n, m in models.items() if judge_label(n, m.get("manifest")) != n]
    # the method's own iterations beside them (iterate.oracle_iterations): an arm of the run, not the whole run
    beside = any(judge_label(n, m.get("manifest")) == n and (iteration_of(n) or 0) > 1 and method_of(n) == "psrlm"
                 for n, m in models.items())  # fmt: skip
    what = "Science arm beside the method" if beside else "Science run"
    warning = (f"**{what}: {len(oracle)} model(s) trained on pairs judged by the arith oracle, not by the model "
               f"itself: {', '.join(oracle)}. That is not the self-rewarding method"
               + (": it shows what the training can do with right pairs, beside what the model's own judge gives."
                  if beside else ".") + "**\n") if oracle else ""  # fmt: skip
    evaluated = any(m.get("benchmarks") for m in models.values())
    nothing = "" if evaluated else ("No model of this run has been evaluated yet: `psrlm iterate` evaluates each "
                                    "model once it is trained, `psrlm eval` evaluates one now.\n")  # fmt: skip
    parts = [f"# Report: {run_dir}\n", warning, nothing, "## Table 1: greedy accuracy per benchmark\n", table_accuracy(models),
             "\n## Table 2: M1 → Mn change\n", table_deltas(models),
             "\n## Table 3: judge accuracy on the EFT test split\n", table_judge(models)]  # fmt: skip
    if kinds := table_judge_kinds(models):
        parts += ["\n## Table 3b: judge accuracy by EFT error kind\n", kinds]
    parts += ["\n## Table 4: steps per solution / tokens per step\n", table_steps(models)]
    for title, text in (("Tables 5/9: greedy vs test-time search", table_tts(models)),
                        ("Appendix B: step-wise pairwise judging vs solution scoring", table_appendix_b(c["appendix_b"])),
                        ("PPD pairs per iteration", table_pairs(models))):  # fmt: skip
        if text:
            parts += [f"\n## {title}\n", text]
    if c["stale"]:
        parts += ["\n## Stale results (not in the tables above)\n",
                  markdown_table(["result", "why it is stale"], [[n, why] for n, why in c["stale"].items()]),
                  "\nRerun `psrlm iterate` with the run's recipe to rebuild and evaluate them."]  # fmt: skip
    if c["timings_s"]:
        timings = ", ".join(f"{k} {v:.0f}s" for k, v in c["timings_s"].items())
        parts.append(f"\nwall {c['wall_s'] or 0:.0f}s — {timings}")
    if plots_dir is not None:
        files = plot_run(c, Path(plots_dir))
        parts += ["\n## Plots\n"] + [f"![{p.stem}]({Path(plots_dir).name}/{p.name})" for p in files]
        if (Path(plots_dir) / "figure2_data.png").exists():  # `psrlm figure2` / `psrlm report --figure2`
            parts += ["\n## Figure 2: training-data distribution (t-SNE)\n",
                      f"![figure2_data]({Path(plots_dir).name}/figure2_data.png)"]  # fmt: skip
    return "\n".join(parts) + "\n"


def report(run_dirs: list[Path], out: Path | None = None, plots: bool = True) -> str:
    """One run: its full report (written to <run>/report.md unless `out`). Several: each run's summary table
    and the science check across them (written to `out` only)."""
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) == 1:
        out = Path(out) if out else RunLayout(run_dirs[0]).report
        with _writing_into(run_dirs[0], out):
            text = report_run(run_dirs[0], plots_dir=out.parent / f"{out.stem}_plots" if plots else None)
            atomic_write_text(out, text)
        return text
    parts = []
    for d in run_dirs:
        load_summary(d)  # a folder that holds no run is named at once
        parts.append(f"## {d}\n\n{format_table(collect(d)['models'])}\n")
    sc = science_check(run_dirs)
    parts.append("## Science check: M1 → Mn accuracy change, mean ± 95 % CI over seeds\n\n" + format_science(sc))
    text = "\n".join(parts) + "\n"
    if out:
        with contextlib.ExitStack() as held:
            for d in run_dirs:
                held.enter_context(_writing_into(d, Path(out)))
            write_json(Path(out).with_suffix(".json"), sc)
            atomic_write_text(Path(out), text)
    return text


@contextlib.contextmanager
def _writing_into(run_dir: Path, out: Path):
    """The run's writer lock while a report is written inside it (report.md, report_plots/): a run another
    process is writing (`psrlm iterate`) is not written into; one line names the holder. Outside it: no lock."""
    from psrlm.folders import FolderError, FolderLock

    try:
        Path(out).resolve().relative_to(Path(run_dir).resolve())
    except ValueError:
        yield
        return
    lock = FolderLock(run_dir, "report")
    try:
        lock.acquire()
    except FolderError as e:
        raise FolderError(f"{e}; or write the report elsewhere: psrlm report {run_dir} --out FILE") from None
    try:
        yield
    finally:
        lock.release()
