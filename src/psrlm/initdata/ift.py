"""IFT data: worked solutions in "Step n:" form (paper §3.2).

    psrlm data ift --config configs/demo.yaml

Arith gold solutions are already one equation per step. GSM8K train solutions are one reasoning step per line:
calculator annotations `<<a*b=c>>` are removed and `#### x` becomes a final `\\boxed{x}`, with no teacher.
Free-form solutions (MATH) need the teacher segmentation of initdata/segment.py.

`build_ift` is `psrlm data ift` for a real run: the rows are the split's IFT block when `data.split_ift` is set
and IFT reads the split's source (initdata/pool.py), else the input file (first `initdata.ift_limit` rows); a row
whose question is in a test set the run evaluates is left out and counted (`test_overlap` in ift_counts.json).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from psrlm.records import Problem, RecordError, StepSolution, iter_json_rows, require
from psrlm.run_layout import RunLayout

log = logging.getLogger(__name__)

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


def ift_input_path(cfg) -> Path:
    """The file `psrlm data ift` reads: initdata.ift_input, else the shared MATH / GSM8K train file."""
    ic = cfg.initdata
    if ic.ift_input:
        return Path(ic.ift_input)
    name = "gsm8k" if ic.ift_source == "gsm8k" else "math"
    return cfg.paths.resolved_data_dir() / "train" / name / "train.jsonl"


def _ift_block(cfg, tests) -> tuple[dict[str, int] | None, dict]:
    """{normalised question: position} of the split's IFT block when IFT reads the split's source, else None."""
    from psrlm.initdata.pool import normalise_question, pool_path, split_active, split_source

    if not (split_active(cfg) and cfg.data.split_ift):
        return None, {}
    source = pool_path(cfg)
    if ift_input_path(cfg).resolve() != source.resolve():
        log.warning("IFT reads %s, not the split's source %s: the split's %d IFT rows stay unused (data.split_ift)",
                    ift_input_path(cfg), source, cfg.data.split_ift)  # fmt: skip
        return None, {}
    split = split_source(cfg, tests)
    order = {normalise_question(p.question): i for i, p in enumerate(split.ift)}
    return order, split.counts


def build_ift(cfg, progress: bool = True) -> dict:
    """`psrlm data ift`: IFT solutions under <run>/initdata/ (ift_gsm8k.jsonl, or ift_segmented.jsonl by the
    teacher), and ift_counts.json: rows, what the split and the test sets took, what the teacher's checks rejected."""
    from psrlm.initdata.pool import evaluated_test_sets, normalise_question
    from psrlm.records import write_json, write_jsonl

    ic = cfg.initdata
    out = RunLayout(cfg.paths.run_dir).initdata
    tests = evaluated_test_sets(cfg)
    block, split_counts = _ift_block(cfg, tests)
    test_text = {name: {normalise_question(p.question) for p in ps} for name, ps in tests.items()}
    overlap = dict.fromkeys(tests, 0)

    def usable(question: str) -> bool:
        key = normalise_question(question)
        hit = next((name for name, texts in test_text.items() if key in texts), None)
        if hit is not None:
            overlap[hit] += 1
        return hit is None and (block is None or key in block)

    def cut(items: list, question) -> list:
        items = [x for x in items if usable(question(x))]
        if block is not None:
            items.sort(key=lambda x: block[normalise_question(question(x))])
        return items[: ic.ift_limit] if ic.ift_limit else items

    extra = {"test_overlap": overlap, **({"split": split_counts["split"]} if block is not None else {})}
    path = ift_input_path(cfg)
    if ic.ift_source == "gsm8k":
        problems, sols = gsm8k_ift(path)
        pairs = cut(list(zip(problems, sols, strict=True)), lambda x: x[0].question)
        for prob, sol in pairs:
            sol.meta["question"] = prob.question
        write_jsonl(out / "ift_gsm8k.jsonl", [sol for _, sol in pairs])
        counts = {"rows": len(pairs), "accepted": len(pairs), "teacher": None, **extra}
        write_json(out / "ift_counts.json", counts)
        return counts
    from psrlm.initdata.segment import read_rows, segment_rows
    from psrlm.initdata.teacher_cache import make_teacher
    from psrlm.prompts import prompts_of

    if ic.teacher != "engine":
        raise ValueError("segmentation needs a model teacher: set initdata.teacher=engine")
    rows = read_rows(path, ic.ift_source, ic.question_field, ic.solution_field, ic.answer_field, ic.id_field)
    rows = cut(rows, lambda r: r.question)
    with make_teacher(cfg, cfg.paths.run_dir, progress) as teacher:
        counts = segment_rows(
            rows, teacher, prompts_of(cfg), out, max_tokens=ic.segment_max_tokens, retries=ic.segment_retries,
            retry_temperature=ic.segment_retry_temperature, seed=ic.seed, chunk_size=ic.chunk_size,
            source=ic.ift_source,
        )  # fmt: skip
    counts.update(extra)
    write_json(out / "ift_counts.json", counts)
    return counts
