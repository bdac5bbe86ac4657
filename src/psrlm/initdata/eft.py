"""EFT data for the embedded domain: step-pair judgments built with the oracle (paper §3.2, Fig. 5 format).

    psrlm data eft --config configs/demo.yaml

Each item is (question, previous steps, step A, step B) -> short explanation + `[[A]]`/`[[B]]`, where one
candidate is the gold next step and the other the same step with a realistic error (arithmetic slip, wrong
operand, wrong operation, skipped quantity, premature answer). Positions alternate exactly, so a judge that
always says A scores 50 %. On arith the oracle plays the part the paper gives the PRM + teacher; for real models
see initdata/ (PRM-scored tree search and teacher judgments).
"""

from __future__ import annotations

import random

from psrlm.records import JudgeExample, Problem, ScoreExample
from psrlm.steps import render_steps
from psrlm.tasks.arith import ERROR_KINDS, corrupt_step, explain, label_step


def build_eft(problems: list[Problem], n: int, seed: int) -> list[JudgeExample]:
    """`n` judge examples from `problems` (cycled), error kinds as even as each step allows."""
    if not problems:
        raise ValueError("build_eft needs at least one problem")
    rng = random.Random(f"eft:{seed}")
    out: list[JudgeExample] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise RuntimeError(f"could only build {len(out)} of {n} EFT examples")
        p = problems[attempts % len(problems)] if attempts <= len(problems) else rng.choice(problems)
        gold = p.meta["steps"]
        index = rng.randrange(len(gold))
        kind = ERROR_KINDS[len(out) % len(ERROR_KINDS)] if rng.random() < 0.7 else rng.choice(ERROR_KINDS)
        wrong = corrupt_step(p, index, kind, rng)
        if wrong is None:
            continue
        correct_first = len(out) % 2 == 0  # exact A/B balance
        verdict, wrong_label = ("A", "B") if correct_first else ("B", "A")
        step_a, step_b = (gold[index], wrong) if correct_first else (wrong, gold[index])
        out.append(
            JudgeExample(
                question=p.question,
                prev_steps=list(gold[:index]),
                step_a=step_a,
                step_b=step_b,
                explanation=explain(p, gold[:index], wrong, kind, wrong_label),
                verdict=verdict,
                meta={"problem_id": p.id, "step_index": index, "error_kind": kind},
            )
        )
    return out


def build_srlm_eft(problems: list[Problem], n: int, seed: int) -> list[ScoreExample]:
    """Solution-scoring examples for the SRLM baseline's M1: half gold solutions (5 points), half with one
    realistic error; a wrong solution earns 1 point plus one per 25 % of its steps before the first error (1-4).
    The score follows the additive scale's spirit (relevant, partial, ...) with the oracle as ground truth."""
    rng = random.Random(f"srlm-eft:{seed}")
    out: list[ScoreExample] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 50 * n + 100:
            raise RuntimeError(f"could only build {len(out)} of {n} SRLM EFT examples")
        p = problems[attempts % len(problems)]
        gold = list(p.meta["steps"])
        if len(out) % 2 == 0:
            out.append(
                ScoreExample(p.question, render_steps(gold), "The solution is correct.", 5, {"problem_id": p.id})
            )
            continue
        index = rng.randrange(len(gold))
        kind = rng.choice(ERROR_KINDS)
        wrong = corrupt_step(p, index, kind, rng)
        if wrong is None:
            continue
        steps = gold[:index] + [wrong]
        if label_step(p, gold[:index], wrong).correct:  # never: corrupt_step checks, but the score depends on it
            continue
        score = 1 + min(3, int(4 * index / len(gold)))
        explanation = f"Step {index + 1} is wrong."
        out.append(
            ScoreExample(p.question, render_steps(steps), explanation, score, {"problem_id": p.id, "error_kind": kind})
        )
    return out


def build_policy_eft(
    problems: list[Problem],
    engine,
    prompts,
    n: int,
    seed: int,
    width: int,
    temperature: float,
    top_p: float,
    max_step_tokens: int,
    batch: int = 256,
) -> tuple[list[JudgeExample], dict]:
    """EFT from the policy's own candidate steps (the paper's way, with the oracle for PRM + teacher): at a gold
    prefix of a problem, sample `width` next steps from the policy (M0 after IFT) at the search temperature; when
    the oracle calls at least one right and one wrong, the item is (a right one, a wrong one), A/B positions
    alternating exactly, explained from the oracle's reason. Returns the items and counts (rounds sampled, rounds
    with no right or no wrong candidate). Errors are the ones the model itself makes, not synthetic corruptions."""
    from psrlm.engines.base import GenParams, seed_of
    from psrlm.steps import STEP_STOP, clean_candidate
    from psrlm.tasks.arith import explain_label

    if not problems:
        raise ValueError("build_policy_eft needs at least one problem")
    rng = random.Random(f"policy-eft:{seed}")
    out: list[JudgeExample] = []
    counts = {"rounds": 0, "all_right": 0, "all_wrong": 0, "cut_or_empty": 0}
    queue = [p for _ in range(50) for p in problems]  # each problem at most 50 times
    rng.shuffle(queue)
    while len(out) < n and queue:
        chunk, queue = queue[:batch], queue[batch:]
        prefixes = [rng.randrange(len(p.meta["steps"])) for p in chunk]
        asks = [prompts.step_prompt(p.question, p.meta["steps"][:k]) for p, k in zip(chunk, prefixes, strict=True)]
        params = GenParams(n=width, temperature=temperature, top_p=top_p, max_new_tokens=max_step_tokens,
                           stop=(STEP_STOP,), seeds=tuple(seed_of(seed, "policy-eft", len(out), i) for i in range(len(asks))))  # fmt: skip
        for p, k, outs in zip(chunk, prefixes, engine.generate(asks, params), strict=True):
            counts["rounds"] += 1
            prev = list(p.meta["steps"][:k])
            cands = list(dict.fromkeys(clean_candidate(o.text) for o in outs if o.finish_reason == "stop"))
            cands = [c for c in cands if c]
            if not cands:
                counts["cut_or_empty"] += 1
                continue
            labels = {c: label_step(p, prev, c) for c in cands}
            right = [c for c in cands if labels[c].correct]
            wrong = [c for c in cands if not labels[c].correct]
            if not right or not wrong:
                counts["all_right" if right else "all_wrong"] += 1
                continue
            good, bad = rng.choice(right), rng.choice(wrong)
            correct_first = len(out) % 2 == 0  # exact A/B balance
            verdict, wrong_label = ("A", "B") if correct_first else ("B", "A")
            step_a, step_b = (good, bad) if correct_first else (bad, good)
            out.append(JudgeExample(p.question, prev, step_a, step_b, explain_label(bad, labels[bad], wrong_label),
                                    verdict, {"problem_id": p.id, "step_index": k, "error_kind": "policy",
                                              "reason": labels[bad].reason}))  # fmt: skip
            if len(out) >= n:
                break
    return out, {**counts, "items": len(out)}
