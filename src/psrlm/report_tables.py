"""The tables of `psrlm report` for one run (Tables 1-5, 3b, Appendix B, PPD pairs), each from the models
`report.collect` gathered, and the model names they are keyed by ("psrlm-M3": method and iteration)."""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from psrlm.summary_table import fmt, model_label


def parse_name(name: str) -> tuple[str | None, int | None]:
    """ "psrlm-M3" -> ("psrlm", 3); "M0" -> (None, 0); a name `psrlm eval --name` chose -> (None, None)."""
    if name == "M0":
        return None, 0
    m = re.fullmatch(r"(.+)-M(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (None, None)


# the loop's chains in the order tables and the viewer show them: the method, its oracle arm beside it, the baseline
CHAIN_ORDER = {"psrlm": 1, "oracle": 2, "srlm": 3}


def model_order(name: str) -> tuple:
    """Sort key of model names: M0 first, then each chain by iteration: PSRLM, the oracle arm
    (iterate.oracle_iterations) beside it, SRLM, then any other label (a sweep's, `psrlm eval --name`) by name."""
    method, it = parse_name(name)
    rank = 0 if method is None and it == 0 else CHAIN_ORDER.get(method or "", len(CHAIN_ORDER) + 1)
    return rank, method or name, it is None, it or 0, name


def iteration_of(name: str) -> int | None:
    return parse_name(name)[1]


def method_of(name: str) -> str | None:
    return parse_name(name)[0]


def last_iteration(models: dict, method: str) -> str | None:
    its = sorted(it for m, it in map(parse_name, models) if m == method and it is not None)
    return f"{method}-M{its[-1]}" if its and its[-1] > 1 else None


def evaluated_benchmarks(models: dict) -> list[str]:
    from psrlm.benchmark_names import ALL_BENCHMARKS

    seen = {b for m in models.values() for b in m.get("benchmarks", {})}
    return [b for b in ALL_BENCHMARKS if b in seen] + sorted(seen - set(ALL_BENCHMARKS))


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    )


def common_n(models: dict, b: str) -> int | None:
    """The number of problems every model was evaluated on for benchmark `b`, or None when they differ."""
    ns = {m["benchmarks"][b].get("n") for m in models.values() if b in m["benchmarks"]}
    return ns.pop() if len(ns) == 1 and None not in ns else None


def _bench_header(models: dict, b: str) -> str:
    n = common_n(models, b)
    return f"{b} (n varies)" if n is None else f"{b} (n={n})"


def table_accuracy(models: dict) -> str:
    """Table 1: greedy accuracy per benchmark, with the mean over benchmarks (only for models evaluated on all)."""
    benches = evaluated_benchmarks(models)
    rows = []
    for name, m in models.items():
        accs = [m["benchmarks"].get(b, {}).get("accuracy") for b in benches]
        avg = statistics.mean(accs) if accs and None not in accs else None
        rows.append([shots_label(label(name, m), m, "benchmarks")] + [fmt(a) for a in accs] + [fmt(avg)])
    return markdown_table(["model", *(_bench_header(models, b) for b in benches), "avg"], rows)


def label(name: str, m: dict) -> str:
    """A model's name as the tables show it: marked ORACLE, or as an unchanged copy (summary_table.model_label)."""
    return model_label(name, m.get("manifest"))


def chain_start(models: dict, method: str) -> str | None:
    """The model a chain starts from: its own M1, or for an arm without one (the oracle arm: oracle-M2 from
    psrlm-M1) the parent its first iteration's manifest names."""
    if f"{method}-M1" in models:
        return f"{method}-M1"
    its = sorted(it for m, it in map(parse_name, models) if m == method and it is not None)
    parent = ((models.get(f"{method}-M{its[0]}") or {}).get("manifest") or {}).get("parent") if its else None
    return parent if parent in models else None


def table_deltas(models: dict) -> str:
    """Table 2: the M1 -> Mn change per benchmark and method, and of the oracle arm from the M1 it starts from."""
    benches = evaluated_benchmarks(models)
    rows = []
    for method in ("psrlm", "oracle", "srlm"):
        last = last_iteration(models, method)
        start = chain_start(models, method)
        if not last or not start:
            continue
        first = models[start]
        cells = []
        for b in benches:
            a, z = (
                first["benchmarks"].get(b, {}).get("accuracy"),
                models[last]["benchmarks"].get(b, {}).get("accuracy"),
            )
            cells.append("-" if a is None or z is None else f"{z - a:+.3f}")
        rows.append([f"{start} → {label(last, models[last])}", *cells])
    return markdown_table(["change", *benches], rows)


def shots_label(name: str, m: dict, what: str) -> str:
    """`name`, marked "(3-shot)" where its `what` ("benchmarks" or "judge") numbers were asked 3-shot
    (iterate.m0_three_shot; results from before the setting: both as `few_shot` says)."""
    few = m.get("few_shot") if what == "benchmarks" else m.get("judge_few_shot", m.get("few_shot"))
    return f"{name} (3-shot)" if few else name


def table_judge(models: dict) -> str:
    """Table 3: judge accuracy on the EFT test split (M0 3-shot as iterate.m0_three_shot says, later models
    zero-shot); `context` counts the judgments whose prompt did not fit the model's context (counted wrong)."""
    rows = []
    for name, m in models.items():
        j, soft = m.get("judge") or {}, m.get("judge_soft") or {}
        rows.append([shots_label(label(name, m), m, "judge"), fmt(j.get("judge_accuracy")), fmt(j.get("consistency")),
                     fmt(j.get("no_verdict_rate")), str(j.get("context_skipped", "-")), fmt(soft.get("accuracy")),
                     fmt(soft.get("single_order_accuracy")), fmt(soft.get("position_bias"))])  # fmt: skip
    head = ["model", "judge acc (generated)", "A/B consistency", "no verdict", "skipped (context)",
            "soft acc (both orders)", "soft acc (one order)", "P(first) bias"]  # fmt: skip
    return markdown_table(head, rows)


def table_judge_kinds(models: dict) -> str | None:
    """Table 3 by EFT error kind: the soft judge (both orders) where it was measured, else generated verdicts."""
    kinds = sorted({k for m in models.values() for key in ("judge_soft", "judge")
                    for k in ((m.get(key) or {}).get("by_kind") or {})})  # fmt: skip
    if not kinds:
        return None
    rows = []
    for name, m in models.items():
        soft = (m.get("judge_soft") or {}).get("by_kind")
        by_kind, how = (soft, "soft") if soft else ((m.get("judge") or {}).get("by_kind"), "generated")
        if by_kind:
            rows.append([label(name, m), how, *(fmt((by_kind.get(k) or {}).get("accuracy")) for k in kinds)])
    n = {k: max(((m.get(key) or {}).get("by_kind") or {}).get(k, {}).get("n", 0)
                for m in models.values() for key in ("judge_soft", "judge")) for k in kinds}  # fmt: skip
    return markdown_table(["model", "verdict", *(f"{k} (n={n[k]})" for k in kinds)], rows)


def table_steps(models: dict) -> str:
    """Table 4: steps per solution and tokens per step, per benchmark."""
    benches = evaluated_benchmarks(models)
    rows = []
    for name, m in models.items():
        cells = []
        for b in benches:
            s = m["benchmarks"].get(b)
            tok = s.get("mean_step_tokens") if s else None
            if not s or s.get("mean_steps") is None:
                cells.append("-")
            else:
                cells.append(
                    f"{s['mean_steps']:.2f} / " + (f"{tok:.1f}" if tok else fmt(s.get("mean_step_chars"), ".0f") + "c")
                )
        rows.append([label(name, m), *cells])
    return markdown_table(["model", *(f"{b} steps / len" for b in benches)], rows)


def table_tts(models: dict) -> str | None:
    """Tables 5/9: greedy vs test-time search with the model's own step judging, per benchmark and over all, the
    compute each spent, and the rules the search followed (inference: a tie takes its step; training: rollback)."""
    rows = []
    for name, m in models.items():
        t = m.get("tts")
        if not t:
            continue
        rules = t.get("rules") or {}
        how = "training" if rules.get("ties", "rollback") == "rollback" else "inference"
        parts = {**(t.get("benchmarks") or {}), "all": t} if t.get("benchmarks") else {t.get("benchmark", "-"): t}
        for bench, b in parts.items():
            g, s = b["greedy"], b["tts"]
            rows.append([name, bench, how, str(b["n"]), fmt(g["accuracy"]), fmt(s["accuracy"]),
                         f"{g['tokens_per_problem']:.0f}", f"{s['tokens_per_problem']:.0f}",
                         f"{s['judge_calls_per_problem']:.1f}", f"{b['time_ratio']:.1f}×"])  # fmt: skip
    if not rows:
        return None
    head = ["model", "benchmark", "search rules", "problems", "greedy acc", "TTS acc", "greedy tokens/problem",
            "TTS tokens/problem", "judge calls/problem", "TTS time / greedy time"]  # fmt: skip
    return markdown_table(head, rows)


def table_appendix_b(ab: dict | None) -> str | None:
    if not ab:
        return None
    names = {"pairwise": "pairwise, generated verdict", "pairwise_soft": "pairwise, verdict from logits",
             "scoring": "solution scoring"}  # fmt: skip
    rows = [[names[kind], fmt(ab[kind]["agreement"]), fmt(ab[kind]["consistency"]), fmt(ab[kind]["no_preference_rate"])]
            for kind in names if ab.get(kind)]  # fmt: skip
    both = (ab.get("pairwise_soft") or {}).get("both_orders_agreement")
    summed = (
        ""
        if both is None
        else f" Logit verdicts summed over both orders (how the soft search reads them): {both:.3f}."
    )
    return (
        f"{ab['n']} EFT test items; pairwise judge {Path(ab['pair_judge']).name}, scorer {Path(ab['scorer']).name}. "
        f"Consistency: pairwise under the A/B swap, scoring under resampling.{summed}\n\n"
        + markdown_table(["judging", "agreement with ground truth", "consistency", "no preference"], rows)
    )


def table_pairs(models: dict) -> str | None:
    """Preference pairs each iteration trained on. Oracle columns (arith): precision = chosen right and rejected
    wrong; both wrong = neither step right; own-pair judge accuracy = among pairs with exactly one right step, the
    share where the judge chose it (0.5 = chance: the judge cannot tell its own steps apart)."""
    rows = []
    for name, m in models.items():
        man = m.get("manifest") or {}
        search, prec = man.get("search") or {}, man.get("pair_precision") or {}
        if not search:
            continue
        cw, wc, labelled = prec.get("correct_wrong"), prec.get("wrong_correct"), prec.get("labelled")
        own = cw / (cw + wc) if cw is not None and wc is not None and cw + wc else None
        both_wrong = prec["both_wrong"] / labelled if labelled and "both_wrong" in prec else None
        rows.append([model_label(name, man), str(search.get("problems", "-")), str(search.get("pairs", "-")), fmt(prec.get("precision")),
                     fmt(both_wrong), fmt(own), fmt(search.get("tie_rate")), fmt(search.get("rollback_rate")),
                     fmt(search.get("no_verdict_rate"))])  # fmt: skip
    if not rows:
        return None
    head = ["trained model (pairs from its parent)", "questions", "pairs", "pair precision (oracle)", "both wrong",
            "own-pair judge accuracy", "tie rate", "rollback rate", "no-verdict rate"]  # fmt: skip
    return markdown_table(head, rows) + "\n\n" + " ".join(table_pairs.__doc__.split())
