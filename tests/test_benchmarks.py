"""Benchmark loaders (tasks/benchmarks.py): every shipped file reads with the documented row counts, and a file of
the wrong shape fails with its file and line. The gold-answer round trip through the grader is in test_grading."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from psrlm.benchmark_names import BenchmarkError, parse_benchmarks
from psrlm.records import RecordError
from psrlm.tasks.benchmarks import load_benchmark

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PSRLM_DATA", REPO.parent / "shared" / "data"))
ROWS = {
    "gsm8k": 1319,
    "math": 5000,
    "math500": 500,
    "gaokao2023en": 385,
    "olympiadbench": 675,
    "aime24": 30,
    "amc23": 40,
}  # fmt: skip  (shared/data/benchmarks/README.md)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_every_shipped_file_loads(name):
    if not (DATA_DIR / "benchmarks").is_dir():
        pytest.skip(f"{DATA_DIR}/benchmarks not found (set PSRLM_DATA)")
    problems = load_benchmark(name, DATA_DIR)
    assert len(problems) == ROWS[name]
    assert len({p.id for p in problems}) == len(problems)
    assert all(p.question.strip() and p.source == name for p in problems)
    assert sum(bool(p.answer) for p in problems) >= len(problems) - 2  # two gaokao rows have no gold in the data
    assert len(load_benchmark(name, DATA_DIR, limit=3)) == 3


def test_gold_parsing_per_benchmark():
    if not (DATA_DIR / "benchmarks").is_dir():
        pytest.skip(f"{DATA_DIR}/benchmarks not found (set PSRLM_DATA)")
    assert load_benchmark("gsm8k", DATA_DIR, limit=1)[0].answer == "18"  # after "####"
    assert load_benchmark("amc23", DATA_DIR, limit=1)[0].answer.isdigit()  # 27.0 -> "27"
    olympiad = [p.answer for p in load_benchmark("olympiadbench", DATA_DIR, limit=50)]
    assert not any(a.startswith("$") or a.endswith("$") for a in olympiad)  # Qwen strips the outer `$` only


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    path = tmp_path / "benchmarks" / name / "test.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("".join(line + "\n" for line in lines))
    return tmp_path


@pytest.mark.parametrize(
    ("name", "lines", "error", "message"),
    [
        ("math500", ['{"problem": "1+1?", "answer": "2"}', "{not json"], RecordError, "test.jsonl:2: malformed JSON"),
        ("math500", ['["a", "list"]'], RecordError, "test.jsonl:1: expected a JSON object"),
        ("gsm8k", ['{"problem": "q", "answer": "#### 3"}'], BenchmarkError, "test.jsonl:1: gsm8k rows need a non-empty string 'question'"),
        ("gsm8k", ['{"question": "q", "answer": "no marker"}'], BenchmarkError, "test.jsonl:1: gsm8k 'answer' field has no '####'"),
        ("olympiadbench", ['{"question": "q", "final_answer": []}'], BenchmarkError, "test.jsonl:1: olympiadbench 'final_answer'"),
        ("aime24", ['{"problem": "q"}'], BenchmarkError, "test.jsonl:1: aime24 row has no 'answer' field"),
        ("amc23", [""], BenchmarkError, "no rows"),
    ],
)  # fmt: skip
def test_bad_shape_names_file_and_line(tmp_path, name, lines, error, message):
    data = _write(tmp_path, name, lines)
    with pytest.raises(error) as err:
        load_benchmark(name, data)
    assert type(err.value) is error and message in str(err.value)


def test_missing_file_and_unknown_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="paths.data_dir"):
        load_benchmark("gsm8k", tmp_path)
    with pytest.raises(BenchmarkError, match="unknown benchmark 'svamp'"):
        parse_benchmarks("gsm8k,svamp")
    with pytest.raises(BenchmarkError, match="run_data"):
        load_benchmark("arith_test", tmp_path)


def test_parse_benchmarks_groups():
    assert parse_benchmarks("arith") == ["arith_test", "arith_hard"]
    assert parse_benchmarks("paper") == ["gsm8k", "math", "gaokao2023en", "olympiadbench", "aime24", "amc23"]
    assert parse_benchmarks(["gsm8k", "all"])[:2] == ["gsm8k", "math"] and len(parse_benchmarks("all")) == 7


def test_arith_splits_come_from_the_run(tmp_path):
    from psrlm.records import Problem, write_jsonl

    write_jsonl(tmp_path / "arith_test.jsonl", [Problem(f"t{i}", "q", str(i), "arith") for i in range(5)])
    assert [p.id for p in load_benchmark("arith_test", run_data=tmp_path, limit=2)] == ["t0", "t1"]
    json.loads((tmp_path / "arith_test.jsonl").read_text().splitlines()[0])
