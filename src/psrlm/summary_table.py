"""The run's summary table (what `psrlm iterate` prints at its end and `psrlm report` shows per run of several),
and the cell formats report's tables share with it.
"""

from __future__ import annotations

from pathlib import Path


def fmt(x, spec=".3f") -> str:
    """A number as a table cell: `-` where there is none."""
    return "-" if x is None else format(x, spec)


def manifest_facts(manifest: dict) -> dict:
    """What the tables show of a model's manifest (a Manifest as a dict): its pairs' precision, its search's
    statistics, the judge that made its pairs (kind oracle: a science arm, not the method), the model it started
    from and, where its search left nothing to train on and the parent carried over unchanged, `copy_of`."""
    metrics = manifest.get("metrics") or {}
    parent = Path(manifest["parent_model"]).name if manifest.get("parent_model") else None
    facts = {"pair_precision": metrics.get("pair_precision"), "search": metrics.get("search"),
             "judge": metrics.get("judge"), "parent": parent}  # fmt: skip
    if (metrics.get("train") or {}).get("skipped"):
        facts["copy_of"] = parent
    return facts


def judge_label(name: str, manifest: dict | None) -> str:
    """A model's name, marked when its pairs came from the oracle judge (a science run, not the method)."""
    judge = (manifest or {}).get("judge") or {}
    if judge.get("kind") != "oracle":
        return name
    return f"{name} [ORACLE judge, accuracy {1 - judge.get('flip', 0):.2f}]"


def model_label(name: str, manifest: dict | None) -> str:
    """A model's name as every table shows it: marked ORACLE where the oracle judged its pairs (judge_label), and
    marked as its parent's unchanged copy where its search left nothing to train on (manifest_facts)."""
    label = judge_label(name, manifest)
    copy = (manifest or {}).get("copy_of")
    return f"{label} (copy of {copy}: nothing to train on)" if copy else label


def format_table(results: dict) -> str:
    """The run's closing table: accuracy per evaluated benchmark, judge accuracy, pairs."""
    benches = list(dict.fromkeys(b for r in results.values() for b in r.get("benchmarks", {})))
    head = ["model", *(f"{b} acc" for b in benches), "judge acc (generated)", "consistency",
            "judge acc (soft, both orders)", "steps", "pairs", "pair precision"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        man = r.get("manifest") or {}
        search = man.get("search") or {}
        prec = (man.get("pair_precision") or {}).get("precision")
        soft = fmt((r.get("judge_soft") or {}).get("accuracy"))
        accs = [fmt(r["benchmarks"][b]["accuracy"]) if b in r.get("benchmarks", {}) else "-" for b in benches]
        first = r.get("benchmarks", {}).get(benches[0], {}) if benches else {}
        judge = r.get("judge") or {}
        said = judge.get("no_verdict_rate") != 1.0  # a judge that wrote no verdict at all scored 0 by saying nothing
        generated = (fmt(judge.get("judge_accuracy")), fmt(judge.get("consistency")))
        generated = generated if said else ("no verdicts", "-")
        cells = [model_label(name, man), *accs, *generated,
                 soft, fmt(first.get("mean_steps"), ".2f"), str(search.get("pairs", "-")), fmt(prec)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
