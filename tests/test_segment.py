"""IFT segmentation: the content check (table-driven), inputs, the teacher cache, resume and retries."""

import json

import pytest

from psrlm.engines.base import Completion, EngineStats
from psrlm.initdata.segment import (
    check_segmentation,
    normalise,
    parse_teacher_steps,
    read_rows,
    segment_rows,
    with_boxed_answer,
)
from psrlm.initdata.teacher_cache import CachedTeacher
from psrlm.prompts import get_prompts
from psrlm.records import StepSolution, read_jsonl

SOLUTION = "We have $2x+3=7$, so $2x=4$.\nThus $x=\\boxed{2}$."


@pytest.mark.parametrize(
    "text, finish, reason, n_steps",
    [
        ("Step 1: We have $2x+3=7$, so $2x=4$.\nStep 2: Thus $x=\\boxed{2}$.", "stop", "ok", 2),
        (
            "Sure! Here are the steps.\nStep 1: We have $2x+3=7$,\nso $2x=4$.\nStep 2: Thus $x=\\boxed{2}$.",
            "stop",
            "ok",
            2,
        ),
        ("Step 1:We have $2x + 3 = 7$, so $2x=4$.\n\n  Step 2:   Thus $x=\\boxed{2}$.  ", "stop", "ok", 2),
        ("Step 1: We have $2x+3=7$, so $2x=4$. Thus $x=\\boxed{2}$.", "stop", "ok", 1),
        ("Step 1: We have $2x+3=7$, so $2x=5$.\nStep 2: Thus $x=\\boxed{2}$.", "stop", "altered", 0),  # a number
        ("Step 1: We have $2x+3=7$.\nStep 2: Thus $x=\\boxed{2}$.", "stop", "altered", 0),  # text dropped
        ("Step 1: We have $2x+3=7$, so $2x=4$.\nStep 2: Thus $x=\\boxed{2}$.\nStep 3: Done.", "stop", "altered", 0),
        ("Step 1: We have $2x+3=7$, so $2x=4$.\nStep 2: Thus $x=2$.", "stop", "altered", 0),  # box lost
        ("We have $2x+3=7$, so $2x=4$. Thus $x=\\boxed{2}$.", "stop", "no_steps", 0),  # no markers
        ("in step 1: we have", "stop", "no_steps", 0),  # a marker must start a line
        ("   \n ", "stop", "empty", 0),
        ("Step 1: We have $2x+3=7$, so", "length", "truncated", 0),  # stopped mid-output
        ("", "error", "error", 0),
    ],
)
def test_check_segmentation(text, finish, reason, n_steps):
    steps, got = check_segmentation(SOLUTION, Completion(text, 5, finish))
    assert got == reason
    assert (len(steps) if steps else 0) == n_steps
    if steps:
        assert normalise("".join(steps)) == normalise(SOLUTION)


def test_parse_and_boxed_answer():
    assert parse_teacher_steps("x\nStep 1: a\nb\nStep 2: c") == ["a\nb", "c"]
    assert with_boxed_answer(["a", "b"], "7") == ["a", "b The answer is \\boxed{7}."]
    assert with_boxed_answer(["a", "so \\boxed{7}"], "7") == ["a", "so \\boxed{7}"]
    assert with_boxed_answer(["a"], None) == ["a"]


def test_read_rows_math_and_custom_jsonl(tmp_path):
    math = tmp_path / "math.jsonl"
    math.write_text(json.dumps({"problem": "q", "solution": "s \\boxed{3}", "answer": "3", "unique_id": "m/0"}) + "\n")
    [row] = read_rows(math, "math")
    assert (row.id, row.question, row.solution, row.answer) == ("m/0", "q", "s \\boxed{3}", "3")
    custom = tmp_path / "mine.jsonl"
    custom.write_text(json.dumps({"Q": "q1", "S": "so \\boxed{\\frac{1}{2}}"}) + "\n" + json.dumps({"Q": "q2"}) + "\n")
    with pytest.raises(Exception, match=r"mine\.jsonl:2: missing field 'S'"):
        read_rows(custom, "jsonl", question_field="Q", solution_field="S")
    [row] = read_rows(custom, "jsonl", question_field="Q", solution_field="S", limit=1)
    assert row.answer == "\\frac{1}{2}" and row.id == "mine-000000"


class ScriptedTeacherEngine:
    """Answers a segment prompt with `answer(solution, seed)`; counts the prompts it was sent."""

    def __init__(self, answer):
        self.answer, self.sent, self.stats = answer, 0, EngineStats()

    def generate(self, prompts, params):
        self.sent += len(prompts)
        out = []
        for p in prompts:
            # the paper's Fig. 3 layout
            solution = p.split("[The Start of Solution Provided]\n", 1)[1].split("\n[The End of Solution", 1)[0]
            out.append([self.answer(solution, params.seed)])
        return out


def _answer(solution: str, seed):
    """Good for 'good' solutions, altered for 'flaky' ones on the first (greedy) try only, garbage for 'bad'."""
    first, _, rest = solution.partition(". ")
    good = Completion(f"Step 1: {first}.\nStep 2: {rest}", 9)
    if solution.startswith("bad"):
        return Completion("I cannot do that.", 4)
    if solution.startswith("flaky") and seed is None:
        return Completion(f"Step 1: {first}!\nStep 2: {rest}", 9)
    if solution.startswith("down"):
        return Completion("", 0, "error")
    return good


def test_segment_rows_retries_resumes_and_never_pays_twice(tmp_path):
    from psrlm.initdata.segment import SolutionRow

    rows = [SolutionRow(f"r{i}", f"q{i}", f"{kind} one. two \\boxed{{{i}}}", str(i))
            for i, kind in enumerate(["good", "flaky", "bad", "down", "good"])]  # fmt: skip
    engine = ScriptedTeacherEngine(_answer)
    teacher = CachedTeacher(engine, tmp_path / "cache", "t", progress=False)
    counts = segment_rows(rows, teacher, get_prompts("paper"), tmp_path, retries=1, chunk_size=2)
    teacher.close()
    assert counts["accepted"] == 3 and counts["accepted_after_retry"] == 1
    assert counts["rejected_by_reason"]["no_steps"] == 1 and counts["rejected_by_reason"]["error"] == 1
    ok = read_jsonl(tmp_path / "ift_segmented.jsonl", StepSolution)
    assert [s.problem_id for s in ok] == ["r0", "r1", "r4"]
    assert ok[0].steps == ["good one.", "two \\boxed{0}"] and ok[0].meta["question"] == "q0"
    assert engine.sent == 5 + 3  # greedy for all, one retry each for flaky, bad, down

    # Rerun: only the failed request is asked again (errors are never cached, never final).
    engine2 = ScriptedTeacherEngine(_answer)
    with CachedTeacher(engine2, tmp_path / "cache", "t", progress=False) as teacher2:
        counts2 = segment_rows(rows, teacher2, get_prompts("paper"), tmp_path, retries=1, chunk_size=2)
    assert engine2.sent == 2  # 'down', greedy and retry
    assert counts2["accepted"] == 3 and counts2["rejected"] == 2
    assert len(read_jsonl(tmp_path / "ift_rejects.jsonl")) == 2

    # A fresh run over the same cache answers everything from disk except the error.
    engine3 = ScriptedTeacherEngine(_answer)
    with CachedTeacher(engine3, tmp_path / "cache", "t", progress=False) as teacher3:
        segment_rows(rows, teacher3, get_prompts("paper"), tmp_path / "again", retries=1, chunk_size=2)
        assert teacher3.stats.asked == 8 and teacher3.stats.cache_hits == 6 and engine3.sent == 2
