import json
import logging

import pytest

from psrlm.records import (
    JsonlAppender,
    JudgeExample,
    Manifest,
    PreferencePair,
    Problem,
    RecordError,
    SearchTrace,
    StepSolution,
    read_jsonl,
    write_jsonl,
)

EXAMPLES = [
    Problem(id="p1", question="1+1?", answer="2", source="t"),
    StepSolution(problem_id="p1", steps=["1 + 1 = 2. \\boxed{2}"], final_answer="2"),
    JudgeExample(question="q", prev_steps=[], step_a="a", step_b="b", explanation="e", verdict="A"),
    PreferencePair(prompt="p", chosen="c", rejected="r", meta={"step": 1}),
    SearchTrace(problem_id="p1", steps=["s"], rollbacks=1),
    Manifest(iteration=1, method="psrlm", parent_model=None, model_path="m"),
]


@pytest.mark.parametrize("record", EXAMPLES, ids=lambda r: type(r).__name__)
def test_round_trip(tmp_path, record):
    path = tmp_path / "r.jsonl"
    write_jsonl(path, [record, record])
    assert read_jsonl(path, type(record)) == [record, record]


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"id": "p", "question": "q", "answer": "a"', "malformed JSON"),
        ('{"id": "p", "question": "q", "answer": "a"}', "missing required field 'source'"),
        ('{"id": 3, "question": "q", "answer": "a", "source": "s"}', "Problem.id should be"),
        ('{"id": "p", "question": "q", "answer": "a", "source": "s", "extra": 1}', "unknown field"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "problems.jsonl"
    good = json.dumps({"id": "p", "question": "q", "answer": "a", "source": "s"})
    path.write_text(f"{good}\n{line}\n{good}\n")
    before = path.read_bytes()
    with pytest.raises(RecordError, match=rf"problems\.jsonl:2: .*{message}"):
        read_jsonl(path, Problem)
    assert path.read_bytes() == before  # reading bad input changes nothing on disk


def test_torn_last_line_is_dropped_with_warning(tmp_path, caplog):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, EXAMPLES[3:4] * 3)
    with open(path, "a") as fh:
        fh.write('{"prompt": "p", "cho')
    with caplog.at_level(logging.WARNING):
        got = read_jsonl(path, PreferencePair)
    assert len(got) == 3
    assert "half-written" in caplog.text


def test_appender_repairs_torn_tail_and_resumes(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with JsonlAppender(path, PreferencePair) as out:
        out.append(*EXAMPLES[3:4] * 2)
    with open(path, "a") as fh:
        fh.write('{"prompt": "half')
    with JsonlAppender(path, PreferencePair) as out:
        assert len(out.existing()) == 2
        out.append(EXAMPLES[3])
    assert len(read_jsonl(path, PreferencePair)) == 3


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", EXAMPLES[:1])
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "a.jsonl"
    write_jsonl(path, EXAMPLES[:1])
    before = path.read_bytes()

    def broken():
        yield EXAMPLES[0]
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]
