"""IFT data: worked solutions in "Step n:" form (paper §3.2).

    psrlm data ift --config configs/demo.yaml

Arith gold solutions are already one equation per step. GSM8K train solutions are one reasoning step per line:
calculator annotations `<<a*b=c>>` are removed and `#### x` becomes a final `\\boxed{x}`, with no teacher.
Free-form solutions (MATH) need the teacher segmentation of initdata/segment.py.
"""

from __future__ import annotations

import re
from pathlib import Path

from psrlm.records import Problem, RecordError, StepSolution, iter_json_rows, require

_CALC = re.compile(r"<<[^>]*>>")


def arith_ift(problems: list[Problem]) -> list[StepSolution]:
    return [
        StepSolution(problem_id=p.id, steps=list(p.meta["steps"]), final_answer=p.answer, meta={"source": p.source})
        for p in problems
    ]


def gsm8k_solution_steps(answer: str, where: str) -> tuple[list[str], str]:
    """GSM8K `answer` text -> (steps, gold). Raises RecordError when there is no `####` line."""
    if "####" not in answer:
        raise RecordError(f"{where}: GSM8K answer has no '#### <answer>' line")
    body, gold = answer.rsplit("####", 1)
    gold = gold.strip().replace(",", "")
    steps = [_CALC.sub("", line).strip() for line in body.strip().splitlines()]
    steps = [s for s in steps if s]
    if not steps:
        raise RecordError(f"{where}: GSM8K answer has no solution lines before '####'")
    steps[-1] = f"{steps[-1]} The answer is \\boxed{{{gold}}}."
    return steps, gold


def gsm8k_ift(path: Path, limit: int = -1) -> tuple[list[Problem], list[StepSolution]]:
    """Problems and step solutions from a GSM8K-format JSONL file (`question`, `answer`)."""
    problems, solutions = [], []
    for lineno, row in iter_json_rows(path):
        if 0 <= limit <= len(problems):
            break
        where = f"{path}:{lineno}"
        question = require(row, "question", where)
        steps, gold = gsm8k_solution_steps(require(row, "answer", where), where)
        pid = f"gsm8k-train-{lineno - 1:05d}"
        problems.append(Problem(id=pid, question=question, answer=gold, source="gsm8k-train"))
        solutions.append(StepSolution(problem_id=pid, steps=steps, final_answer=gold, meta={"source": "gsm8k"}))
    return problems, solutions
