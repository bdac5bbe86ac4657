"""`psrlm report RUN_DIR [RUN_DIR ...]`: tables from finished runs, and the multi-seed science check.

One run: the summary table (accuracy per held-out split, judge accuracy, steps, pairs, pair precision) and the
M1 -> Mn changes per method. Several runs of the same recipe with different `iterate.seed`: for each split, the
PSRLM and SRLM M1 -> Mn change per seed, their mean with a 95 % t-interval across seeds, and the PSRLM - SRLM
difference, so the question "does PSRLM Mn beat M1, and beat SRLM's change?" gets a number with its uncertainty.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from psrlm.records import write_json

# two-sided 95 % Student-t quantiles by degrees of freedom (no scipy dependency for three numbers)
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def load_summary(run_dir: Path) -> dict:
    path = Path(run_dir) / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `psrlm iterate` for {run_dir} first")
    return json.loads(path.read_text())


def last_iteration(models: dict, method: str) -> str | None:
    its = sorted(int(n.split("-M")[1]) for n in models if n.startswith(f"{method}-M"))
    return f"{method}-M{its[-1]}" if its and its[-1] > 1 else None


def deltas(summary: dict, split: str) -> dict[str, float]:
    """M1 -> last-iteration accuracy change per method on one split."""
    models = summary["models"]
    out = {}
    for method in ("psrlm", "srlm"):
        last = last_iteration(models, method)
        if last and f"{method}-M1" in models:
            out[method] = models[last][split]["accuracy"] - models[f"{method}-M1"][split]["accuracy"]
    return out


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (nan with fewer than two values)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    t = _T95.get(len(values) - 1, 1.96)
    return statistics.mean(values), t * statistics.stdev(values) / math.sqrt(len(values))


def science_check(run_dirs: list[Path]) -> dict:
    summaries = [load_summary(d) for d in run_dirs]
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
    precision = {}
    for s in summaries:
        for name, m in s["models"].items():
            p = ((m.get("manifest") or {}).get("pair_precision") or {}).get("precision")
            if p is not None:
                precision.setdefault(name, []).append(p)
    result["pair_precision"] = {k: {"per_seed": v, "mean": statistics.mean(v)} for k, v in precision.items()}
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
        lines += ["", "| model | PPD pair precision (oracle), per seed |", "|---|---|"]
        for name, e in result["pair_precision"].items():
            lines.append(f"| {name} | {e['mean']:.3f} ({', '.join(f'{v:.3f}' for v in e['per_seed'])}) |")
    return "\n".join(lines)


def report(run_dirs: list[Path], out: Path | None = None) -> str:
    from psrlm.iterate import format_table

    parts = []
    for d in run_dirs:
        s = load_summary(d)
        parts.append(f"## {d}\n\n{format_table(s['models'])}\n")
        timings = ", ".join(f"{k} {v:.0f}s" for k, v in s.get("timings_s", {}).items())
        parts.append(f"wall {s.get('wall_s', 0):.0f}s — {timings}\n")
    if len(run_dirs) > 1:
        sc = science_check(run_dirs)
        parts.append("## Science check: M1 → Mn accuracy change, mean ± 95 % CI over seeds\n\n" + format_science(sc))
        if out:
            write_json(Path(out).with_suffix(".json"), sc)
    text = "\n".join(parts)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n")
    return text
