"""The run's summary table (what `psrlm iterate` prints at its end and `psrlm report` shows per run of several),
and the cell formats report's tables share with it.
"""

from __future__ import annotations


def fmt(x, spec=".3f") -> str:
    """A number as a table cell: `-` where there is none."""
    return "-" if x is None else format(x, spec)


def judge_label(name: str, manifest: dict | None) -> str:
    """A model's name, marked when its pairs came from the oracle judge (a science run, not the method)."""
    judge = (manifest or {}).get("judge") or {}
    if judge.get("kind") != "oracle":
        return name
    return f"{name} [ORACLE judge, accuracy {1 - judge.get('flip', 0):.2f}]"


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
        cells = [judge_label(name, man), *accs, *generated,
                 soft, fmt(first.get("mean_steps"), ".2f"), str(search.get("pairs", "-")), fmt(prec)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
