"""The question pool the self-rewarding iterations draw their fresh questions from, for real runs.

    data:
      source: files
      questions: math          # MATH train; or gsm8k, or a JSONL path (Problem records or question/answer rows)

The pool is read, cleaned and written once to `<run>/data/fresh_questions.jsonl` (Problem records), with what was
removed in `<run>/data/questions.json`:
  - questions whose normalised text (lower case, no whitespace or `$`) is in any test set the run evaluates
    (`iterate.eval_benchmarks`, whole files, not just the evaluated prefix): a question seen at test time must
    never be trained on;
  - questions already used for initialisation (the IFT and EFT files): "fresh" means new to the model;
  - repeats within the pool.
Then it is shuffled with `data.seed` (MATH train is sorted by subject) and `iterate.questions` cuts it into
disjoint blocks, one per iteration.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from psrlm.records import Problem, RecordError, iter_json_rows, nonempty, read_problems, require

_LAYOUT = re.compile(r"[\s$]+")


def normalise_question(text: str) -> str:
    """What makes two questions the same question: the text in lower case without whitespace or `$` (how a
    question is laid out, not what it asks). Signs and symbols stay: "z^4 - z^2 + 1" and "z^4 + z^2 + 1" are two
    questions (a letters-and-digits key would merge them: MATH train and MATH500 hold such a pair)."""
    return _LAYOUT.sub("", text.lower())


def pool_path(cfg) -> Path:
    """Where `data.questions` points: the shared MATH / GSM8K train files, or a path of the user's."""
    q = cfg.data.questions
    train = cfg.paths.resolved_data_dir() / "train"
    return {"math": train / "math" / "train.jsonl", "gsm8k": train / "gsm8k" / "train.jsonl"}.get(q, Path(q))


def read_pool(cfg) -> tuple[list[Problem], dict]:
    """The raw pool as Problems (in file order) and what was skipped while reading it."""
    from psrlm.grading import gold_answer
    from psrlm.steps import find_boxed

    d = cfg.data
    path = pool_path(cfg)
    skipped = 0
    problems: list[Problem] = []
    if d.questions == "math":  # fields problem / solution / answer; `answer` is null in 2 rows of MATH train
        for lineno, row in iter_json_rows(path):
            where = f"{path}:{lineno}"
            answer = row.get("answer") or (find_boxed(require(row, "solution", where)) or [None])[-1]
            if (
                answer is None or not str(answer).strip()
            ):  # no gold anywhere in the row (or \boxed{}): left out, counted
                skipped += 1
                continue
            question = nonempty(require(row, "problem", where), where, "problem")
            problems.append(Problem(str(row.get("unique_id") or f"math-{lineno:05d}"), question, str(answer),
                                    "math-train"))  # fmt: skip
    elif d.questions == "gsm8k":
        for lineno, row in iter_json_rows(path):
            where = f"{path}:{lineno}"
            try:
                answer = gold_answer(row, "gsm8k")
            except (KeyError, ValueError) as e:
                raise RecordError(f"{where}: {e}") from None
            question = nonempty(require(row, "question", where), where, "question")
            problems.append(Problem(f"gsm8k-train-{lineno:05d}", question, answer, "gsm8k-train"))
    else:
        rows = list(iter_json_rows(path))
        if rows and {"id", "question", "answer", "source"} <= set(rows[0][1]):  # psrlm Problem records
            problems = read_problems(path)
        else:
            for lineno, row in rows:
                where = f"{path}:{lineno}"
                answer = row.get(d.answer_field)
                if answer is None or (isinstance(answer, str) and not answer.strip()):
                    raise RecordError(f"{where}: no answer: the row needs a non-empty {d.answer_field!r} "
                                      f"(data.answer_field; fields present: {sorted(row)})")  # fmt: skip
                pid = str(row.get(d.id_field) or f"{path.stem}-{lineno:06d}")
                question = nonempty(require(row, d.question_field, where), where, d.question_field)
                problems.append(Problem(pid, question, str(answer), path.stem))
    if not problems:
        raise RecordError(f"{path}: no questions (data.questions)")
    return problems, {"read": len(problems) + skipped, "no_answer": skipped}


def clean_pool(
    problems: list[Problem], test_sets: dict[str, list[Problem]], used: list[str], seed: int | None
) -> tuple[list[Problem], dict]:
    """(pool, counts): test-set overlaps, questions used for initialisation and repeats removed; shuffled with
    `seed` (None: kept in order)."""
    test_text = {name: {normalise_question(p.question) for p in ps} for name, ps in test_sets.items()}
    used_text = {normalise_question(q) for q in used}
    seen: set[str] = set()
    kept: list[Problem] = []
    counts: dict = {"test_overlap": dict.fromkeys(test_sets, 0), "used_for_init": 0, "repeats": 0}
    for p in problems:
        key = normalise_question(p.question)
        hit = next((name for name, texts in test_text.items() if key in texts), None)
        if hit is not None:
            counts["test_overlap"][hit] += 1
        elif key in used_text:
            counts["used_for_init"] += 1
        elif key in seen:
            counts["repeats"] += 1
        else:
            seen.add(key)
            kept.append(p)
    if seed is not None:
        random.Random(f"pool:{seed}").shuffle(kept)
    counts["kept"] = len(kept)
    return kept, counts
