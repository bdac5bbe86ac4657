"""Evaluation: greedy accuracy, judge accuracy (with A/B-swap consistency), step statistics.

    psrlm eval --config configs/demo.yaml --model runs/demo/models/M1

Greedy accuracy uses the solve prompt (Fig. 4) and grading.py. Judge accuracy asks each EFT test item in both
A/B orders: accuracy counts every judgment, consistency the items whose two verdicts agree (Table 3). On arith
the oracle also labels each generated step, giving step precision.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from psrlm.engines.base import Engine, GenParams
from psrlm.grading import extract_answer, is_equiv
from psrlm.judge import parse_verdict
from psrlm.prompts import Prompts
from psrlm.records import JudgeExample, Problem, StepSolution
from psrlm.steps import render_steps, split_steps


@dataclass
class SolveResult:
    problem_id: str
    prompt: str
    response: str
    extracted: str | None
    gold: str
    correct: bool
    steps: int
    step_chars: float


FEW_SHOT_SEP = "\n\n\n"


def solve_greedy(
    problems: list[Problem],
    engine: Engine,
    prompts: Prompts,
    max_tokens: int = 256,
    grader=None,
    few_shot: list[StepSolution] | None = None,
) -> list[SolveResult]:
    """Greedy solutions. `few_shot` solved examples are prepended (how a base model that never saw the format is
    measured); generation then also stops at the separator that would start another example."""
    prefix = "".join(
        prompts.solve_prompt(s.meta["question"]) + render_steps(s.steps) + FEW_SHOT_SEP for s in few_shot or []
    )
    texts = [prompts.solve_prompt(p.question) for p in problems]
    stop = (FEW_SHOT_SEP,) if few_shot else ()
    outs = engine.generate([prefix + t for t in texts], GenParams(n=1, max_new_tokens=max_tokens, stop=stop))
    responses = [o[0].text for o in outs]
    extracted = [extract_answer(r) for r in responses]
    if grader is not None:
        correct = grader.grade([(p.answer, e) for p, e in zip(problems, extracted, strict=True)])
    else:
        correct = [is_equiv(p.answer, e) for p, e in zip(problems, extracted, strict=True)]
    results = []
    for p, prompt, r, e, ok in zip(problems, texts, responses, extracted, correct, strict=True):
        steps = split_steps(r)
        mean_len = statistics.mean(len(s) for s in steps) if steps else 0.0
        results.append(SolveResult(p.id, prompt, r, e, p.answer, bool(ok), len(steps), mean_len))
    return results


def accuracy_summary(results: list[SolveResult]) -> dict:
    n = max(1, len(results))
    return {
        "n": len(results),
        "accuracy": sum(r.correct for r in results) / n,
        "mean_steps": statistics.mean(r.steps for r in results) if results else 0.0,
        "mean_step_chars": statistics.mean(r.step_chars for r in results) if results else 0.0,
        "no_answer_rate": sum(r.extracted is None for r in results) / n,
    }


def judge_accuracy(
    examples: list[JudgeExample],
    engine: Engine,
    prompts: Prompts,
    max_tokens: int = 48,
    few_shot: list[JudgeExample] | None = None,
) -> dict:
    """Accuracy over both A/B orders, consistency under the swap, and the no-verdict rate.

    `few_shot` examples are prepended as solved demonstrations (the paper's 3-shot M0 judge)."""
    from psrlm.prompts import judge_target

    prefix = "".join(
        prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b)
        + judge_target(e.explanation, e.verdict)
        + FEW_SHOT_SEP
        for e in few_shot or []
    )
    asks = []
    for e in examples:
        asks.append(prefix + prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b))
        asks.append(prefix + prompts.judge_prompt(e.question, e.prev_steps, e.step_b, e.step_a))
    outs = engine.generate(asks, GenParams(n=1, temperature=0.0, max_new_tokens=max_tokens))
    verdicts = [parse_verdict(o[0].text) for o in outs]
    right = consistent = missing = 0
    for i, e in enumerate(examples):
        v1, v2 = verdicts[2 * i], verdicts[2 * i + 1]
        swapped = {"A": "B", "B": "A"}[e.verdict]
        right += (v1 == e.verdict) + (v2 == swapped)
        missing += (v1 is None) + (v2 is None)
        consistent += v1 is not None and v2 is not None and v1 != v2
    n = max(1, len(examples))
    return {
        "n": len(examples),
        "judge_accuracy": right / (2 * n),
        "consistency": consistent / n,
        "no_verdict_rate": missing / (2 * n),
    }


def judge_accuracy_soft(examples: list[JudgeExample], engine, prompts: Prompts) -> dict:
    """The judge as `search.verdict: soft` uses it: P(A) from logits in both orders, scores summed (bias cancels).

    accuracy: the de-biased pick matches the oracle; single_order_accuracy: P(A) > 0.5 in the shown order alone;
    position_bias: mean P(first step better) over all asks (0.5 = none)."""
    from psrlm.search import sigmoid, verdict_log_odds

    ab = [prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b) for e in examples]
    ba = [prompts.judge_prompt(e.question, e.prev_steps, e.step_b, e.step_a) for e in examples]
    asks = ab + ba
    n = len(asks)
    p_first = [sigmoid(d) for d in verdict_log_odds(engine, asks)]
    m = len(examples)
    right = single = 0
    for i, e in enumerate(examples):
        score_a = p_first[i] + (1.0 - p_first[m + i])
        right += ("A" if score_a > 1.0 else "B") == e.verdict
        single += ("A" if p_first[i] > 0.5 else "B") == e.verdict
    return {
        "n": m,
        "accuracy": right / max(1, m),
        "single_order_accuracy": single / max(1, m),
        "position_bias": sum(p_first) / max(1, n),
    }
