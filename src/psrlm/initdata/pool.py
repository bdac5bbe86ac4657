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

The paper's data flow from one source (`data.split_ift`, `data.split_eft`; `split_source`): the source, cleaned of
test-set overlaps and repeats and shuffled with `data.seed`, is cut once into the rows IFT segments, the problems
EFT's tree search explores, and the pool, in that order: disjoint by construction, so a row the teacher fails to
segment is spent, never handed back to the pool, and every block samples every subject (MATH train is sorted by
subject). `psrlm plan` and `psrlm iterate --dry-run` print the sizes (`data_lines`); a source too small for them
stops with one line before any work.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from psrlm.configs import ConfigError
from psrlm.records import Problem, RecordError, iter_json_rows, nonempty, read_problems, require
from psrlm.run_layout import RunLayout

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
    from psrlm.answers import gold_answer
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


def test_overlap(questions: list[str], test_sets: dict[str, list[Problem]]) -> dict[str, int]:
    """How many of `questions` are in each test set (normalised text); only the sets that hold some."""
    keys = [normalise_question(q) for q in questions]
    out = {}
    for name, ps in test_sets.items():
        texts = {normalise_question(p.question) for p in ps}
        if hits := sum(k in texts for k in keys):
            out[name] = hits
    return out


def evaluated_test_sets(cfg) -> dict[str, list[Problem]]:
    """Every test set the run evaluates (`iterate.eval_benchmarks`), whole files: what no training data may hold."""
    from psrlm.benchmark_names import parse_benchmarks
    from psrlm.tasks.benchmarks import load_benchmark

    run_data = RunLayout(cfg.paths.run_dir).data
    data_dir = cfg.paths.resolved_data_dir()
    return {b: load_benchmark(b, data_dir, run_data=run_data) for b in parse_benchmarks(cfg.iterate.eval_benchmarks)}


# ----------------------------------------------------------------------------------- the split of one source


def split_active(cfg) -> bool:
    return cfg.data.source == "files" and bool(cfg.data.split_ift or cfg.data.split_eft)


@dataclass
class SourceSplit:
    """The source's IFT rows, EFT problems and pool, disjoint, in the order drawn; `counts` says what was lost."""

    source: Path
    ift: list[Problem]
    eft: list[Problem]
    pool: list[Problem]
    counts: dict

    def questions(self, block: str) -> set[str]:
        """The normalised questions of a block: how a reader of the source's own file finds its rows."""
        return {normalise_question(p.question) for p in getattr(self, block)}


def split_source(cfg, test_sets: dict[str, list[Problem]] | None = None) -> SourceSplit:
    """`data.questions` cleaned (test-set overlaps, repeats), shuffled with `data.seed` and cut into IFT
    (`data.split_ift`), EFT (`data.split_eft`) and the pool (the rest). Too small a source for the sizes and
    `iterate.questions` is a ConfigError in one line, naming the keys and the numbers."""
    d = cfg.data
    problems, read = read_pool(cfg)
    tests = evaluated_test_sets(cfg) if test_sets is None else test_sets
    kept, counts = clean_pool(problems, tests, [], seed=d.seed)
    iterations = sum(cfg.iterate.questions) if cfg.iterate.schedule == "fixed" else 0
    need = d.split_ift + d.split_eft + iterations
    lost = (f"{read['read']} read, {read['no_answer']} without an answer, {sum(counts['test_overlap'].values())} in "
            f"evaluated test sets, {counts['repeats']} repeats")  # fmt: skip
    if need > len(kept):
        raise ConfigError(f"data.split_ift={d.split_ift} + data.split_eft={d.split_eft} + iterate.questions="
                          f"{cfg.iterate.questions} ({iterations}) need {need} questions, but data.questions="
                          f"{d.questions} has {len(kept)} ({lost}): lower the sizes or use a larger source")  # fmt: skip
    a, b = d.split_ift, d.split_ift + d.split_eft
    out = {**read, "test_overlap": counts["test_overlap"], "repeats": counts["repeats"], "usable": len(kept),
           "split": {"seed": d.seed, "ift": a, "eft": d.split_eft, "pool": len(kept) - b}}  # fmt: skip
    return SourceSplit(pool_path(cfg), kept[:a], kept[a:b], kept[b:], out)


def data_lines(cfg) -> list[str]:
    """What a real run's data will be, before any of it is built: the source, what it loses, and the IFT / EFT /
    pool sizes (`psrlm iterate --dry-run`, `psrlm plan`). A source too small stops here (split_source)."""
    d, ic, it = cfg.data, cfg.initdata, cfg.iterate
    if d.source != "files":
        return []
    iterations = " + ".join(f"{n:,}" for n in it.questions)
    need = f"iterations of {iterations} = {sum(it.questions):,} questions"
    if not split_active(cfg):
        problems, read = read_pool(cfg)
        kept, counts = clean_pool(problems, evaluated_test_sets(cfg), [], seed=None)
        return [f"data: pool {d.questions} ({pool_path(cfg)}): {read['read']:,} rows, {read['no_answer']} without an "
                f"answer, {sum(counts['test_overlap'].values())} in evaluated test sets, {counts['repeats']} repeats "
                f"-> {len(kept):,}, less the questions of the IFT/EFT files, for {need}; IFT and EFT from their own "
                "files (data.split_ift / split_eft = 0)"]  # fmt: skip
    sp = split_source(cfg)
    c = sp.counts
    pairs = len(sp.eft) * ic.pairs_per_problem
    return [
        f"data: one source, {d.questions} ({sp.source}): {c['read']:,} rows, {c['no_answer']} without an answer, "
        f"{sum(c['test_overlap'].values())} in evaluated test sets, {c['repeats']} repeats -> {c['usable']:,}, "
        f"shuffled (data.seed {d.seed}) and split into disjoint blocks:",
        f"  IFT   {len(sp.ift):>7,} rows segmented by the teacher (data.split_ift; paper: 28,889 solutions)",
        f"  EFT   {len(sp.eft):>7,} problems searched by MCTS, up to {ic.pairs_per_problem} pairs each = {pairs:,} "
        f"candidate pairs before the teacher's filters, {ic.eft_test} held out (data.split_eft; paper: 4,679 items, "
        "500 held out)",
        f"  pool  {len(sp.pool):>7,} questions for {need} (paper: 400 + 800 + 1,200)",
    ]
