"""How well a model judges steps: judge accuracy on the EFT test split in both A/B orders, with consistency under
the swap (Table 3), the judge read from its logits as `search.verdict: soft` reads it, accuracy by EFT error kind,
and Appendix B: step-wise pairwise judging vs solution scoring on the same items.

    psrlm eval --config configs/demo.yaml --model runs/demo/models/psrlm-M4 --appendix-b

(judge accuracy is measured by default, --no-judge skips it; --appendix-b adds the comparison.)
"""

from __future__ import annotations

from psrlm.engines.base import Engine, GenParams
from psrlm.evaluate import FEW_SHOT_SEP
from psrlm.judge import parse_verdict
from psrlm.prompts import Prompts
from psrlm.records import JudgeExample
from psrlm.steps import render_steps


def judge_accuracy(
    examples: list[JudgeExample],
    engine: Engine,
    prompts: Prompts,
    max_tokens: int = 48,
    few_shot: list[JudgeExample] | None = None,
) -> dict:
    """Accuracy over both A/B orders, consistency under the swap, and the no-verdict rate.

    `few_shot` examples are prepended as solved demonstrations (the paper's 3-shot M0 judge). A judge prompt
    longer than the model's context is never cut: it counts as a wrong judgment with no verdict, and
    `context_skipped` says how many of the 2n judgments that was (a 3-shot prefix can push items past the context)."""

    prefix = "".join(
        prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b)
        + prompts.judge_completion(e.explanation, e.verdict)
        + FEW_SHOT_SEP
        for e in few_shot or []
    )
    asks = []
    for e in examples:
        asks.append(prefix + prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b))
        asks.append(prefix + prompts.judge_prompt(e.question, e.prev_steps, e.step_b, e.step_a))
    # a few-shot judge stops where it would start another example (or it parses the next example's verdict)
    stop = (FEW_SHOT_SEP,) if few_shot else ()
    outs = engine.generate(asks, GenParams(n=1, temperature=0.0, max_new_tokens=max_tokens, stop=stop))
    verdicts = [parse_verdict(o[0].text) for o in outs]
    consistent = missing = 0
    scores = []  # per item: the share of its two orders judged right
    for i, e in enumerate(examples):
        v1, v2 = verdicts[2 * i], verdicts[2 * i + 1]
        swapped = {"A": "B", "B": "A"}[e.verdict]
        scores.append(((v1 == e.verdict) + (v2 == swapped)) / 2)
        missing += (v1 is None) + (v2 is None)
        consistent += v1 is not None and v2 is not None and v1 != v2
    n = len(examples)  # of no items every rate is None (null): nothing was measured, which is not 0
    return {
        "n": n,
        "judge_accuracy": sum(scores) / n if n else None,
        "consistency": consistent / n if n else None,
        "no_verdict_rate": missing / (2 * n) if n else None,
        "context_skipped": sum(o[0].finish_reason == "context" for o in outs),
        **by_error_kind(examples, scores),
    }


def by_error_kind(examples: list[JudgeExample], scores: list[float]) -> dict:
    """{"by_kind": {kind: {"n", "accuracy"}}} over the items' meta.error_kind (arith EFT: arithmetic_slip,
    wrong_operand, ...; policy EFT: "policy"), or {} when the items name none. A judge can score well overall on
    the kinds visible on the surface (an answer boxed too early) and at chance on those it must recompute."""
    groups: dict[str, list[float]] = {}
    for e, s in zip(examples, scores, strict=True):
        if (e.meta or {}).get("error_kind"):
            groups.setdefault(str(e.meta["error_kind"]), []).append(s)
    if not groups:
        return {}
    return {"by_kind": {k: {"n": len(v), "accuracy": sum(v) / len(v)} for k, v in sorted(groups.items())}}


def judge_accuracy_soft(examples: list[JudgeExample], engine, prompts: Prompts) -> dict:
    """The judge as `search.verdict: soft` uses it: P(A) from logits in both orders, scores summed (bias cancels).

    accuracy: the de-biased pick matches the oracle; single_order_accuracy: P(A) > 0.5 in the shown order alone;
    per_order_accuracy: each order's own pick, over both orders; swap_consistency: both orders name the same step;
    position_bias: mean P(first step better) over all asks (0.5 = none)."""
    from psrlm.search import sigmoid, verdict_log_odds

    ab = [prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b) for e in examples]
    ba = [prompts.judge_prompt(e.question, e.prev_steps, e.step_b, e.step_a) for e in examples]
    odds = verdict_log_odds(engine, ab + ba)
    m = len(examples)
    fits = [i for i in range(m) if odds[i] is not None and odds[m + i] is not None]  # others exceed the context
    p_first = [None if d is None else sigmoid(d) for d in odds]
    examples = [examples[i] for i in fits]
    p_first = [p_first[i] for i in fits] + [p_first[m + i] for i in fits]
    skipped, m = m - len(fits), len(fits)
    n = 2 * m
    single = per_order = consistent = 0
    picks = []  # per item: 1.0 where the de-biased pick is right
    for i, e in enumerate(examples):
        score_a = p_first[i] + (1.0 - p_first[m + i])
        picks.append(float(("A" if score_a > 1.0 else "B") == e.verdict))
        in_ab, in_ba = ("A" if p_first[i] > 0.5 else "B"), ("B" if p_first[m + i] > 0.5 else "A")  # step named
        single += in_ab == e.verdict
        per_order += (in_ab == e.verdict) + (in_ba == e.verdict)
        consistent += in_ab == in_ba
    return {
        "n": m,
        "accuracy": sum(picks) / m if m else None,
        "single_order_accuracy": single / m if m else None,
        "per_order_accuracy": per_order / n if n else None,
        "swap_consistency": consistent / m if m else None,
        "position_bias": sum(p_first) / n if n else None,
        "skipped_context": skipped,
        **by_error_kind(examples, picks),
    }


def judge_metrics(examples: list[JudgeExample], engine, prompts: Prompts, max_tokens: int, few_shot=None) -> dict:
    """Table 3 for one model: generated verdicts in both orders ("judge") and, with the in-process engine and no
    few-shot prefix, the judge read from its logits ("judge_soft")."""
    out = {"judge": judge_accuracy(examples, engine, prompts, max_tokens, few_shot=few_shot)}
    if hasattr(engine, "tokenizer") and not few_shot:
        out["judge_soft"] = judge_accuracy_soft(examples, engine, prompts)
    return out


# ------------------------------------------------------------------------------------------ Appendix B


def compare_judging(
    examples: list[JudgeExample],
    pair_engine: Engine,
    score_engine: Engine,
    prompts: Prompts,
    judge_max_tokens: int = 48,
    score_max_tokens: int = 64,
    score_temperature: float = 0.7,
    seed: int = 0,
) -> dict:
    """Appendix B: is a step easier to judge pairwise than a solution is to score?

    Both judges see the same items (question, previous steps, a right and a wrong next step; the oracle or the
    EFT builder knows which is right):
    - pairwise: the Fig. 5 prompt in both A/B orders. agreement = judgments naming the right step;
      consistency = items whose two verdicts name the same step.
    - pairwise_soft (in-process engine): the same judge read from the logits, as `search.verdict: soft` reads
      it; both_orders_agreement = the right step wins once P([[A]]) is summed over both orders.
    - scoring: the solution-scoring prompt on "previous steps + step A" and "previous steps + step B", each
      scored twice at `score_temperature`. A scoring round prefers the higher score (equal or unparsed scores:
      no preference). agreement = rounds preferring the right step; consistency = items whose two rounds state
      the same preference. Scoring has no A/B order to swap, so its consistency is under resampling instead.
    """
    judged = judge_metrics(examples, pair_engine, prompts, judge_max_tokens)
    scored = score_preferences(examples, score_engine, prompts, score_max_tokens, score_temperature, seed)
    return appendix_b_result(examples, judged, scored)


def score_preferences(
    examples: list[JudgeExample],
    score_engine: Engine,
    prompts: Prompts,
    score_max_tokens: int = 64,
    score_temperature: float = 0.7,
    seed: int = 0,
) -> dict:
    """Appendix B's scoring side (compare_judging): two scoring rounds per item, preferences and their counts."""
    from psrlm.srlm import parse_score

    asks = []
    for e in examples:
        for step in (e.step_a, e.step_b):
            asks.append(prompts.score_prompt(e.question, render_steps([*e.prev_steps, step])))
    params = GenParams(n=2, temperature=score_temperature, max_new_tokens=score_max_tokens, seed=seed)
    outs = score_engine.generate(asks, params)
    agree = consistent = ties = unparsed = 0
    for i, e in enumerate(examples):
        prefs = []
        for k in range(2):
            sa, sb = parse_score(outs[2 * i][k].text), parse_score(outs[2 * i + 1][k].text)
            unparsed += (sa is None) + (sb is None)
            pref = None if sa is None or sb is None or sa == sb else ("A" if sa > sb else "B")
            ties += pref is None
            agree += pref == e.verdict
            prefs.append(pref)
        consistent += prefs[0] is not None and prefs[0] == prefs[1]
    return {"agree": agree, "consistent": consistent, "ties": ties, "unparsed": unparsed}


def appendix_b_result(examples: list[JudgeExample], judged: dict, scored: dict) -> dict:
    """Both sides of Appendix B in one record (the two sides can run on different engines, one after the other)."""
    agree, consistent, ties, unparsed = (scored[k] for k in ("agree", "consistent", "ties", "unparsed"))
    n = max(1, len(examples))
    pair, soft = judged["judge"], judged.get("judge_soft")
    if soft is not None:  # the judge as `search.verdict: soft` reads it: P([[A]]) from the logits
        soft = {"agreement": soft["per_order_accuracy"], "consistency": soft["swap_consistency"],
                "both_orders_agreement": soft["accuracy"], "no_preference_rate": 0.0}  # fmt: skip
    return {
        "n": len(examples),
        "pairwise": {"agreement": pair["judge_accuracy"], "consistency": pair["consistency"],
                     "no_preference_rate": pair["no_verdict_rate"]},
        "pairwise_soft": soft,
        "scoring": {"agreement": agree / (2 * n), "consistency": consistent / n, "no_preference_rate": ties / (2 * n),
                    "unparsed_rate": unparsed / (4 * n)},
    }  # fmt: skip
