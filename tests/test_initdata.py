import json
import re

import pytest

from psrlm.configs import load_config
from psrlm.initdata.build import build_arith_data
from psrlm.initdata.ift import gsm8k_ift, gsm8k_solution_steps
from psrlm.records import JudgeExample, Problem, RecordError, StepSolution, read_jsonl
from psrlm.tasks.arith import label_step


def test_gsm8k_steps():
    steps, gold = gsm8k_solution_steps(
        "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 1,018", "x"
    )
    assert steps == ["Janet sells 16 - 3 - 4 = 9 eggs.", "She makes 9 * 2 = $18. The answer is \\boxed{1018}."]
    assert gold == "1018"


def test_gsm8k_shared_train_file():
    cfg = load_config(None)
    path = cfg.paths.resolved_data_dir() / "train" / "gsm8k" / "train.jsonl"
    if not path.exists():
        pytest.skip(f"shared data not found at {path}")
    problems, sols = gsm8k_ift(path)
    assert len(problems) == len(sols) == 7473
    assert not any("<<" in s for sol in sols for s in sol.steps)
    assert all(re.search(r"\\boxed\{[^}]+\}\.$", sol.steps[-1]) for sol in sols)


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"question": "q"}', "missing field 'answer'"),
        ('{"question": "q", "answer": "no marker"}', "no '#### <answer>' line"),
        ('{"question": "q", "answer": "x\\n#### 3"', "malformed JSON"),
        ('{"question": 3, "answer": "x\\n#### 3"}', "field 'question' should be"),
    ],
)
def test_gsm8k_bad_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "gsm.jsonl"
    good = json.dumps({"question": "q", "answer": "a = 1\n#### 1"})
    path.write_text(f"{good}\n{line}\n")
    with pytest.raises(RecordError, match=rf"gsm\.jsonl:2: .*{message}"):
        gsm8k_ift(path)


def test_build_arith_data(small_cfg):
    paths = build_arith_data(small_cfg)
    problems = {p.id: p for p in read_jsonl(paths["arith_train"], Problem)}
    eft = read_jsonl(paths["eft_train"], JudgeExample)
    assert len(eft) == small_cfg.data.eft_train
    verdicts = [ex.verdict for ex in eft]
    assert abs(verdicts.count("A") - verdicts.count("B")) <= 1
    assert {ex.meta["error_kind"] for ex in eft} == {
        "arithmetic_slip",
        "wrong_operand",
        "wrong_operation",
        "skipped_quantity",
        "premature_answer",
    }
    for ex in eft:  # the verdict points at the oracle-correct step
        p = problems[ex.meta["problem_id"]]
        good, bad = (ex.step_a, ex.step_b) if ex.verdict == "A" else (ex.step_b, ex.step_a)
        assert label_step(p, ex.prev_steps, good).correct
        assert not label_step(p, ex.prev_steps, bad).correct
    test_ids = {ex.meta["problem_id"] for ex in read_jsonl(paths["eft_test"], JudgeExample)}
    assert not test_ids & {ex.meta["problem_id"] for ex in eft}
    ift = read_jsonl(paths["ift"], StepSolution)
    assert len(ift) == small_cfg.data.ift_problems and all(s.meta["question"] for s in ift)


def test_build_is_deterministic(small_cfg):
    a = build_arith_data(small_cfg)
    first = {k: p.read_bytes() for k, p in a.items()}
    b = build_arith_data(small_cfg)
    assert first == {k: p.read_bytes() for k, p in b.items()}
