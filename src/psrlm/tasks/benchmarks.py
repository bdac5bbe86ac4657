"""The paper's evaluation sets as `Problem` records: GSM8K, MATH, MATH500, Gaokao2023En, OlympiadBench, AIME2024,
AMC2023 (Qwen2.5-Math evaluation format), plus the embedded arith splits of a run.

    load_benchmark("math500", data_dir)            # <data_dir>/benchmarks/math500/test.jsonl
    load_benchmark("arith_test", run_data=...)     # <run>/data/arith_test.jsonl
    load_hf_benchmark("HuggingFaceH4/MATH-500", "test", "problem", "answer")

The gold answer is read as Qwen2.5-Math's `parse_ground_truth` reads it (`answers.gold_answer`), so a model's
`\\boxed{}` answer is graded exactly as the paper's numbers were. A line that is not a JSON object raises
`RecordError`, a row without the question field or with a malformed gold field `BenchmarkError` (a RecordError);
both name the file and line.
"""

from __future__ import annotations

from pathlib import Path

from psrlm.answers import gold_answer
from psrlm.benchmark_names import ALL_BENCHMARKS, BenchmarkError, in_run_data
from psrlm.records import Problem, iter_json_rows, read_jsonl

# which field holds the question in each file (see shared/data/benchmarks/README.md)
QUESTION_FIELD = {
    "gsm8k": "question",
    "math": "problem",
    "math500": "problem",
    "gaokao2023en": "question",
    "olympiadbench": "question",
    "aime24": "problem",
    "amc23": "problem",
}
_META_FIELDS = ("level", "subject", "unique_id", "idx", "id", "answer_type", "subfield")


def benchmark_path(name: str, data_dir: Path) -> Path:
    return Path(data_dir) / "benchmarks" / name / "test.jsonl"


def load_benchmark(
    name: str, data_dir: Path | None = None, limit: int = 0, run_data: Path | None = None
) -> list[Problem]:
    """One benchmark's problems in file order (the first `limit` when > 0)."""
    if in_run_data(name):
        if run_data is None:
            raise BenchmarkError(f"{name} lives in a run's data folder: pass run_data (e.g. runs/demo/data)")
        path = Path(run_data) / f"{name}.jsonl"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `psrlm data arith` with this config first")
        problems = read_jsonl(path, Problem)
        return problems[:limit] if limit > 0 else problems
    if name not in QUESTION_FIELD:
        raise BenchmarkError(f"unknown benchmark {name!r}; known: {', '.join(ALL_BENCHMARKS)}")
    if data_dir is None:
        raise BenchmarkError(f"{name}: no data directory given (paths.data_dir)")
    path = benchmark_path(name, data_dir)
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: point paths.data_dir (or $PSRLM_DATA) at a folder holding benchmarks/{name}/test.jsonl"
        )
    problems = []
    for lineno, row in iter_json_rows(path):  # a line that is not a JSON object fails there, naming file:line
        problems.append(_row_to_problem(name, row, f"{path}:{lineno}", len(problems)))
        if 0 < limit <= len(problems):
            break
    if not problems:
        raise BenchmarkError(f"{path}: no rows")
    return problems


def _row_to_problem(name: str, row: dict, where: str, index: int) -> Problem:
    qfield = QUESTION_FIELD[name]
    question = row.get(qfield)
    if not isinstance(question, str) or not question.strip():
        raise BenchmarkError(f"{where}: {name} rows need a non-empty string {qfield!r} (keys: {sorted(row)})")
    try:
        gold = gold_answer(row, name)
    except (KeyError, ValueError) as e:
        raise BenchmarkError(f"{where}: {e.args[0] if e.args else e}") from None
    meta = {k: row[k] for k in _META_FIELDS if k in row}
    return Problem(id=f"{name}-{index:05d}", question=question, answer=gold, source=name, meta=meta)


def load_hf_benchmark(
    dataset_id: str, split: str, question_field: str, answer_field: str, limit: int = 0, name: str | None = None
) -> list[Problem]:
    """A Hugging Face dataset through `datasets.load_dataset`, for users with internet access.

    Kept deliberately thin: the answer field is used as the gold answer as it stands (no benchmark-specific
    parsing), and it cannot be exercised on the offline machines this project is tested on. Prefer the JSONL
    files (`paths.data_dir`) where the gold parsing matters.
    """
    from datasets import load_dataset

    ds = load_dataset(dataset_id, split=split)
    name = name or dataset_id.rsplit("/", 1)[-1]
    problems = []
    for i, row in enumerate(ds):
        if question_field not in row or answer_field not in row:
            raise BenchmarkError(f"{dataset_id}[{split}] row {i}: needs {question_field!r} and {answer_field!r}")
        problems.append(Problem(f"{name}-{i:05d}", str(row[question_field]), str(row[answer_field]).strip(), name))
        if 0 < limit <= len(problems):
            break
    return problems
