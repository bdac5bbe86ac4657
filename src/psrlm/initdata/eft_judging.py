"""The teacher's side of EFT as the paper builds it (§3.2, steps 4-5 of eft_pipeline.py): the teacher judges
every candidate pair in both A/B orders, two filters keep a pair only when the verdicts agree with each other
(consistency) and with the PRM's best step (agreement), and the kept judge examples are split by problem.

The teacher is an engine (EngineJudgeTeacher: the Fig. 5 prompt, answers cached by teacher_cache.py) or, on arith,
the oracle (OracleJudgeTeacher: tasks/arith.py's step labels with a templated explanation). eft_pipeline.py drives
these over a run folder.
"""

from __future__ import annotations

import random
from collections import Counter

from psrlm.engines.base import Completion, GenParams
from psrlm.initdata.mcts import CandidatePair
from psrlm.judge import parse_verdict
from psrlm.prompts import Prompts
from psrlm.records import JudgeExample, Problem

TEACHER_FAILURES = ("error", "empty", "truncated", "no_verdict", "no_explanation")


# --------------------------------------------------------------------------------------------- teachers


class EngineJudgeTeacher:
    """A model teacher (CachedTeacher) asked with the judge prompt, greedy."""

    def __init__(self, teacher, prompts: Prompts, max_tokens: int):
        self.teacher, self.prompts, self.max_tokens = teacher, prompts, max_tokens
        self.name = teacher.model

    def judge(self, asks: list[tuple[CandidatePair, str, str]]) -> list[Completion]:
        texts = [self.prompts.judge_prompt(p.question, p.prev_steps, a, b) for p, a, b in asks]
        return self.teacher.ask(texts, GenParams(max_new_tokens=self.max_tokens), desc="judge")


class OracleJudgeTeacher:
    """The arith oracle as the teacher: label_step decides, a template explains. Never a model; labelled so."""

    name = "oracle"

    def __init__(self, problems: dict[str, Problem]):
        self.problems = problems

    def judge(self, asks: list[tuple[CandidatePair, str, str]]) -> list[Completion]:
        return [Completion(self._one(p, a, b), 0, "stop") for p, a, b in asks]

    def _one(self, pair: CandidatePair, a: str, b: str) -> str:
        from psrlm.tasks.arith import label_step

        problem = self.problems[pair.meta["problem_id"]]
        la, lb = (label_step(problem, pair.prev_steps, s) for s in (a, b))
        if la.correct and not lb.correct:
            return f"{oracle_explanation(lb.reason, b, 'B')} [[A]]"
        if lb.correct and not la.correct:
            return f"{oracle_explanation(la.reason, a, 'A')} [[B]]"
        return f"Both steps are {'correct' if la.correct else 'wrong'}. [[A]]"


def oracle_explanation(reason: str, wrong: str, label: str) -> str:
    """A short explanation naming what is wrong, evidence first (the style of tasks/arith.explain)."""
    from psrlm.tasks.arith import OPS, parse_equations

    if reason.startswith("arithmetic"):
        for e in parse_equations(wrong):
            if e.op == "/" and (not e.b or e.a % e.b):
                return f"{e.a} / {e.b} is not a whole number, so Step {label} is wrong."
            if OPS[e.op](e.a, e.b) != e.c:
                return f"{e.a} {e.op} {e.b} is {OPS[e.op](e.a, e.b)}, so Step {label} is wrong."
        return f"Step {label} has an arithmetic error."
    if reason.startswith("boxed") or reason.startswith("boxes"):
        return f"Step {label} gives an answer before the problem is finished."
    if reason.startswith("uses a value"):
        return f"Step {label} uses a number that is not in the problem or the previous steps."
    if reason.startswith("computes a quantity"):
        return f"Step {label} computes something the problem does not ask for."
    if reason.startswith("repeats"):
        return f"Step {label} repeats an earlier step."
    return f"Step {label} does not compute anything new."


# ---------------------------------------------------------------------------------------------- filters


def teacher_failure(c: Completion) -> str | None:
    """Why a teacher answer is unusable, or None."""
    if c.finish_reason == "error":
        return "error"
    if not c.text.strip():
        return "empty"
    if c.finish_reason == "length":
        return "truncated"
    if parse_verdict(c.text) is None:
        return "no_verdict"
    if not explanation_of(c.text):
        return "no_explanation"
    return None


def explanation_of(text: str) -> str:
    """The teacher's explanation: its text before its verdict (the last tag, as judge.parse_verdict reads it),
    as written (paragraphs, line breaks and the spacing of formulas kept), without the spaces around it."""
    from psrlm.judge import verdict_tags

    tags = verdict_tags(text)
    return (text[: tags[-1].start()] if tags else text).strip()


def judge_and_filter(pairs: list[CandidatePair], teacher) -> tuple[list[JudgeExample], list[dict], dict]:
    """Ask the teacher both orders of every pair; keep the consistent verdicts that agree with the PRM.

    Returns (kept examples, rejected pairs with the reason, counts). The filters run in order: teacher
    failures, then consistency under the A/B swap, then agreement with the PRM; each count is what that filter
    removed from what reached it."""
    asks = []
    for p in pairs:
        asks += [(p, p.best, p.worst), (p, p.worst, p.best)]  # best shown as A, then as B
    answers = teacher.judge(asks) if asks else []
    kept: list[JudgeExample] = []
    rejects: list[dict] = []
    failures: Counter = Counter()
    inconsistent = disagree = 0
    for i, p in enumerate(pairs):
        first, second = answers[2 * i], answers[2 * i + 1]
        why = teacher_failure(first) or teacher_failure(second)
        if why:
            failures[why] += 1
            rejects.append(
                {"reason": f"teacher_{why}", "meta": p.meta, "answers": [first.text[:500], second.text[:500]]}
            )
            continue
        pick_first = "best" if parse_verdict(first.text) == "A" else "worst"
        pick_second = "best" if parse_verdict(second.text) == "B" else "worst"
        if pick_first != pick_second:
            inconsistent += 1
            rejects.append(
                {"reason": "inconsistent", "meta": p.meta, "answers": [first.text[:500], second.text[:500]]}
            )
            continue
        if pick_first != "best":
            disagree += 1
            rejects.append({"reason": "disagrees_with_prm", "meta": p.meta, "answers": [first.text[:500]]})
            continue
        best_is_a = len(kept) % 2 == 0  # exact A/B balance
        text = first.text if best_is_a else second.text
        kept.append(
            JudgeExample(
                question=p.question,
                prev_steps=list(p.prev_steps),
                step_a=p.best if best_is_a else p.worst,
                step_b=p.worst if best_is_a else p.best,
                explanation=explanation_of(text),
                verdict="A" if best_is_a else "B",
                meta={
                    **p.meta,
                    "p_best": round(p.p_best, 4),
                    "p_worst": round(p.p_worst, 4),
                    "teacher": teacher.name,
                    "source": "mcts+prm+teacher",
                },
            )
        )
    counts = {
        "candidate_pairs": len(pairs),
        "teacher_requests": len(asks),
        "removed_teacher_failure": sum(failures.values()),
        "teacher_failures": {k: failures.get(k, 0) for k in TEACHER_FAILURES},
        "removed_inconsistent": inconsistent,
        "removed_disagrees_with_prm": disagree,
        "kept": len(kept),
    }
    return kept, rejects, counts


def split_by_problem(examples: list[JudgeExample], n_test: int, seed: int) -> tuple[list, list]:
    """Whole problems go to the test split (shuffled by `seed`) until it holds `n_test` examples or half of all."""
    ids = sorted({e.meta["problem_id"] for e in examples})
    random.Random(f"eft-split:{seed}").shuffle(ids)
    cap = min(n_test, len(examples) // 2)
    per: Counter = Counter(e.meta["problem_id"] for e in examples)
    test_ids: set[str] = set()
    size = 0
    for pid in ids:
        if size >= cap:
            break
        test_ids.add(pid)
        size += per[pid]
    train = [e for e in examples if e.meta["problem_id"] not in test_ids]
    test = [e for e in examples if e.meta["problem_id"] in test_ids]
    return train, test
