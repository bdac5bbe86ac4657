import pytest

from psrlm.steps import (
    clean_candidate,
    continuation_prefix,
    final_answer,
    find_boxed,
    is_final,
    render_steps,
    split_steps,
)

SPLIT_CASES = [
    ("clean", "Step 1: a = 1.\nStep 2: b = 2. \\boxed{2}", ["a = 1.", "b = 2. \\boxed{2}"]),
    ("preamble dropped", "Let's solve it.\nStep 1: x\nStep 2: y", ["x", "y"]),
    ("missing numbers", "Step: x\nStep: y", ["x", "y"]),
    ("duplicated numbers", "Step 1: x\nStep 1: y\nStep 3: z", ["x", "y", "z"]),
    ("skipped numbers", "Step 1: x\nStep 5: y", ["x", "y"]),
    ("extra whitespace", "  Step 1:    x  \n\n\n  Step 2:\ty \n", ["x", "y"]),
    ("one line", "Step 1: x. Step 2: y.", ["x.", "y."]),
    ("lower case and dot", "step 1. x\nstep 2. y", ["x", "y"]),
    ("no markers at all", "  just an answer \\boxed{3} ", ["just an answer \\boxed{3}"]),
    ("empty", "   ", []),
    ("empty step dropped", "Step 1:\nStep 2: y", ["y"]),
    ("prose 'step:' is not a marker", "Step 1: in the next step: add\nStep 2: y", ["in the next step: add", "y"]),
    ("multi-line step", "Step 1: a\ncontinued\nStep 2: b", ["a\ncontinued", "b"]),
    ("windows newlines", "Step 1: a\r\nStep 2: b", ["a", "b"]),
    ("nested boxed braces", "Step 1: \\boxed{\\frac{1}{2}}", ["\\boxed{\\frac{1}{2}}"]),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
def test_split_steps(text, expected):
    assert split_steps(text) == expected


@pytest.mark.parametrize("steps", [["a"], ["a = 1.", "b \\boxed{2}"], ["x\ny", "z"]])
def test_render_split_round_trip(steps):
    assert split_steps(render_steps(steps)) == steps


def test_continuation_prefix():
    assert continuation_prefix([]) == "Step 1:"
    assert continuation_prefix(["a", "b"]) == "Step 1: a\nStep 2: b\nStep 3:"


BOXED_CASES = [
    ("x \\boxed{5}", ["5"]),
    ("\\boxed{\\frac{1}{2}} and \\boxed{3}", ["\\frac{1}{2}", "3"]),
    ("\\boxed{\\{1,2\\}}", ["\\{1,2\\}"]),
    ("\\boxed{a{b{c}}d}", ["a{b{c}}d"]),
    ("\\boxed{unclosed", []),
    ("no box", []),
    ("\\boxed {7}", ["7"]),
]


@pytest.mark.parametrize("text, expected", BOXED_CASES)
def test_find_boxed(text, expected):
    assert find_boxed(text) == expected
    assert is_final(text) == bool(expected)


def test_final_answer_takes_last_boxed_step():
    assert final_answer(["a", "b \\boxed{1}", "c \\boxed{2} \\boxed{3}"]) == "3"
    assert final_answer(["a", "b"]) is None


@pytest.mark.parametrize(
    "completion, expected",
    [(" 2 + 2 = 4.\nStep 3: more", "2 + 2 = 4."), (" 4.  \n", "4."), (" x\nStep ", "x"), ("", "")],
)
def test_clean_candidate(completion, expected):
    assert clean_candidate(completion) == expected
