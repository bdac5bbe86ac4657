"""IFT by teacher segmentation (paper §3.2, Fig. 3): a worked solution split into "Step n:" steps, content unchanged.

    psrlm data ift --config configs/paper-7b.yaml --set initdata.teacher_model=Qwen/Qwen2.5-72B-Instruct

Each (question, solution) goes to the teacher with the segment prompt. The answer is accepted only if it is a
list of "Step n:" steps whose concatenation, with the step markers and all whitespace removed, equals the
original solution: the teacher may only decide where steps begin. Everything else is rejected and counted by
reason (a teacher that fails, says nothing, stops mid-output, writes no steps, or changes the text), and,
with `initdata.segment_retries`, asked again at a sampling temperature with a fresh seed first.

Output under `<run_dir>/initdata/`: `ift_segmented.jsonl` (StepSolution, `meta.question` set, ready for SFT),
`ift_rejects.jsonl` (id, reason, the teacher's text) and `ift_counts.json`. Both JSONL files are appended per
batch; a rerun skips every row already accepted or rejected (except rejections for a failed request, which are
asked again) and the teacher's cache answers every prompt it has seen.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from psrlm.engines.base import Completion, GenParams
from psrlm.prompts import Prompts
from psrlm.records import JsonlAppender, StepSolution, iter_json_rows, read_jsonl, require, write_json, write_jsonl
from psrlm.steps import find_boxed

# A teacher's step marker: "Step 3:" at the start of a line (a solution may say "step 3." in prose).
_TEACHER_MARKER = re.compile(r"^[ \t]*Step[ \t]*(\d+)[ \t]*:[ \t]?", re.MULTILINE)
_SPACE = re.compile(r"\s+")
REASONS = ("error", "empty", "truncated", "no_steps", "altered")


@dataclass
class SolutionRow:
    id: str
    question: str
    solution: str
    answer: str | None


def normalise(text: str) -> str:
    """The content a segmentation must keep: the text with all whitespace removed."""
    return _SPACE.sub("", text)


def parse_teacher_steps(text: str) -> list[str]:
    """Step bodies of a "Step n:" answer (text before the first marker is dropped); [] when there is no marker."""
    marks = list(_TEACHER_MARKER.finditer(text))
    if not marks:
        return []
    steps = []
    for m, nxt in zip(marks, marks[1:] + [None], strict=True):
        body = text[m.end() : nxt.start() if nxt else len(text)].strip()
        if body:
            steps.append(body)
    return steps


def check_segmentation(solution: str, completion: Completion) -> tuple[list[str] | None, str]:
    """(steps, "ok") for a faithful segmentation, else (None, reason) with reason one of REASONS."""
    if completion.finish_reason == "error":
        return None, "error"
    if not completion.text.strip():
        return None, "empty"
    if completion.finish_reason == "length":
        return None, "truncated"
    steps = parse_teacher_steps(completion.text)
    if not steps:
        return None, "no_steps"
    if normalise("".join(steps)) != normalise(solution):
        return None, "altered"
    return steps, "ok"


def with_boxed_answer(steps: list[str], answer: str | None) -> list[str]:
    """Keep the final answer in `\\boxed{}`: a solution that never boxed its answer gets it in the last step."""
    if any(find_boxed(s) for s in steps) or not answer:
        return steps
    return steps[:-1] + [f"{steps[-1]} The answer is \\boxed{{{answer}}}."]


# ---------------------------------------------------------------------------------------------- inputs


def read_rows(
    path: Path,
    source: str = "math",
    question_field: str = "question",
    solution_field: str = "solution",
    answer_field: str = "answer",
    id_field: str = "id",
    limit: int = 0,
) -> list[SolutionRow]:
    """(id, question, solution, answer) rows of MATH train (problem/solution/answer) or any JSONL with the named
    fields. A missing answer is read from the solution's last `\\boxed{}`; a missing id is the line number."""
    if source == "math":
        question_field, solution_field, answer_field, id_field = "problem", "solution", "answer", "unique_id"
    elif source != "jsonl":
        raise ValueError(f"initdata.ift_source={source!r}: choose math, jsonl or gsm8k")
    rows = []
    stem = Path(path).stem
    for lineno, obj in iter_json_rows(path):
        if limit and len(rows) >= limit:
            break
        where = f"{path}:{lineno}"
        question = require(obj, question_field, where)
        solution = require(obj, solution_field, where)
        answer = obj.get(answer_field)
        if answer is None:
            boxes = find_boxed(solution)
            answer = boxes[-1] if boxes else None
        rid = str(obj.get(id_field) or f"{stem}-{lineno - 1:06d}")
        rows.append(SolutionRow(rid, question, solution, None if answer is None else str(answer)))
    return rows


# ------------------------------------------------------------------------------------------- the stage


def segment_rows(
    rows: list[SolutionRow],
    teacher,
    prompts: Prompts,
    out_dir: Path,
    *,
    max_tokens: int = 2048,
    retries: int = 1,
    retry_temperature: float = 0.7,
    seed: int = 0,
    chunk_size: int = 64,
    source: str = "math",
) -> dict:
    """Segment every row through `teacher` (a CachedTeacher), resumably; returns the counts (also written)."""
    out_dir = Path(out_dir)
    ok_path, bad_path = out_dir / "ift_segmented.jsonl", out_dir / "ift_rejects.jsonl"
    done = {s.problem_id for s in read_jsonl(ok_path, StepSolution)} if ok_path.exists() else set()
    if bad_path.exists():  # a failed request is asked again; every other rejection is final
        JsonlAppender(bad_path).close()
        bad = read_jsonl(bad_path)
        keep = [r for r in bad if r["reason"] != "error"]
        if len(keep) != len(bad):
            write_jsonl(bad_path, keep)
        done |= {r["id"] for r in keep}
    todo = [r for r in rows if r.id not in done]
    attempt_failures: Counter = Counter()
    with JsonlAppender(ok_path, StepSolution) as ok_out, JsonlAppender(bad_path) as bad_out:
        for b in range(0, len(todo), chunk_size):
            chunk = todo[b : b + chunk_size]
            results: dict[str, tuple] = {}
            pending = chunk
            for attempt in range(retries + 1):
                params = GenParams(
                    temperature=0.0 if attempt == 0 else retry_temperature,
                    top_p=1.0 if attempt == 0 else 0.95,
                    max_new_tokens=max_tokens,
                    seed=None if attempt == 0 else seed + attempt,
                )
                asks = [prompts.segment_prompt(r.question, r.solution) for r in pending]
                outs = teacher.ask(asks, params, desc=f"segment (attempt {attempt + 1})")
                still = []
                for r, c in zip(pending, outs, strict=True):
                    steps, reason = check_segmentation(r.solution, c)
                    results[r.id] = (steps, reason, c.text, attempt)
                    if steps is None:
                        attempt_failures[reason] += 1
                        still.append(r)
                pending = still
                if not pending:
                    break
            accepted, rejected = [], []
            for r in chunk:
                steps, reason, text, attempt = results[r.id]
                if steps is None:
                    rejected.append({"id": r.id, "reason": reason, "attempts": attempt + 1, "text": text[:2000]})
                    continue
                accepted.append(
                    StepSolution(
                        problem_id=r.id,
                        steps=with_boxed_answer(steps, r.answer),
                        final_answer=r.answer,
                        meta={"question": r.question, "source": source, "teacher": teacher.model, "attempt": attempt},
                    )
                )
            ok_out.append(*accepted)
            bad_out.append(*rejected)
    return write_counts(out_dir, len(rows), attempt_failures, teacher)


def write_counts(out_dir: Path, n_rows: int, attempt_failures: Counter, teacher) -> dict:
    """Counts over everything on disk (earlier runs included), plus this run's teacher traffic."""
    ok = read_jsonl(out_dir / "ift_segmented.jsonl", StepSolution)
    bad = read_jsonl(out_dir / "ift_rejects.jsonl") if (out_dir / "ift_rejects.jsonl").exists() else []
    counts = {
        "rows": n_rows,
        "accepted": len(ok),
        "accepted_after_retry": sum(s.meta.get("attempt", 0) > 0 for s in ok),
        "rejected": len(bad),
        "rejected_by_reason": {k: sum(r["reason"] == k for r in bad) for k in REASONS},
        "failed_attempts_this_run": dict(attempt_failures),
        "mean_steps": sum(len(s.steps) for s in ok) / max(1, len(ok)),
        "teacher": {
            "model": teacher.model,
            "asked": teacher.stats.asked,
            "cache_hits": teacher.stats.cache_hits,
            "requests": teacher.stats.requests,
            "request_errors": teacher.stats.errors,
        },
    }
    write_json(out_dir / "ift_counts.json", counts)
    return counts
