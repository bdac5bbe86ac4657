"""Tests for psrlm.grading: box/answer extraction, normalisation, equivalence, the bounded-time Grader, and a
round trip of every gold answer in the evaluation benchmarks (shared/data/benchmarks) through the grader."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from psrlm.answers import BENCHMARKS, extract_answer, gold_answer, last_boxed
from psrlm.grading import (
    TEST_SLEEP_SENTINEL,
    Grader,
    grade_responses,
    is_equiv,
    strip_answer,
)

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("PSRLM_DATA", REPO.parent / "shared" / "data")) / "benchmarks"

# Rows whose gold answer is empty in the data itself (the answer sits inside the question text); no prediction can
# match them, in Qwen's evaluation too. Listed by (benchmark, id) so that any new unmatchable row fails the test.
EMPTY_GOLD_ROWS = {("gaokao2023en", "HMMT2023General_9"), ("gaokao2023en", "052023SATS4_11")}


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2, timeout_s=5.0) as g:
        yield g


def _rows(benchmark: str) -> list[dict]:
    if not DATA_DIR.is_dir():
        pytest.skip(
            f"benchmark data directory {DATA_DIR} not found (set PSRLM_DATA to the folder holding benchmarks/)"
        )
    path = DATA_DIR / benchmark / "test.jsonl"
    assert path.is_file(), f"{path} missing although {DATA_DIR} exists"
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# --------------------------------------------------------------------------------------------------------------
# last_boxed / extract_answer
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"first \boxed{1}, then \boxed{2}, finally \boxed{\sqrt{3}}", r"\sqrt{3}"),
        (r"\boxed{\left( 3, \frac{\pi}{2} \right)}", r"\left( 3, \frac{\pi}{2} \right)"),
        (r"\fbox{7}", "7"),
        (r"\boxed{1} and \fbox{2}", "2"),
        (r"The answer is $\boxed 5$.", "5"),
        (r"\boxed{\boxed{4}}", "4"),
        (r"\boxed{3} then a truncated \boxed{\frac{1}{2}", "3"),  # the unclosed trailing box is skipped
        (r"\boxed{}", ""),
        ("no box here, just 42", None),
        ("", None),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # priority: boxed > "the answer is" > last number
        (r"The answer is 3. Actually 4 is \boxed{5}, and 6.", "5"),
        ("We get 12 apples, so the answer is 10.", "10"),
        ("7 and 8 and 9", "9"),
        ("The final answer is $\\frac{3}{4}$.", r"\frac{3}{4}"),
        ("THE ANSWER IS: 2.5\nand more 99", "2.5"),
        ("The answer is 1. The answer is 2.", "2"),  # the last "the answer is" wins
        ("the answer is:\n\n$$17$$", "17"),
        ("So the answer is 5 apples. Bye", "5 apples"),
        # last-number fallback: commas, negatives, decimals, fractions
        ("They paid 1,234 dollars", "1234"),
        ("Total: 1,234,567.5 units", "1234567.5"),
        ("The temperature fell to -15 degrees", "-15"),
        ("from 3-5 people", "5"),
        ("half is 3/4 of it", "3/4"),
        ("about 0.25 left", "0.25"),
        ("no numbers at all", None),
        ("", None),
        (r"\boxed{}", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("$5$", "5"),
        (r"5 \text{ cm}", "5"),
        (r"5\text{ cm}^2", "5"),
        ("18 dollars", "18"),
        (r"\$1,234.00", "1234"),
        (r"10,\!000", "10000"),
        ("27.0", "27"),
        (r"\dfrac{3}{4}", r"\frac{3}{4}"),
        (r"\tfrac12", r"\frac{1}{2}"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        ("x = 3", "3"),
        (r"\theta=\frac{\pi}{2}", r"\frac{\pi}{2}"),
        (r"30^\circ", "30"),
        (r"30^{\circ}", "30"),
        (r"50\%", "50"),
        (r"\sqrt2", r"\sqrt{2}"),
        (r"\text{(C)}", "C"),
        (r"\text{Evelyn}", "Evelyn"),  # a text answer is not mistaken for a unit
        (r"\pi r^2", r"\pi r^2"),  # the space after a command is kept
        ("a+b", "a+b"),  # no single-letter "units" removed
        ("1,2,3", "1,2,3"),  # not a thousands-grouped number
        (".5", "0.5"),
        ("5.", "5"),
    ],
)
def test_strip_answer(raw, expected):
    assert strip_answer(raw) == expected


# --------------------------------------------------------------------------------------------------------------
# is_equiv
# --------------------------------------------------------------------------------------------------------------

EQUIV_TABLE = [
    # fractions, decimals, frac forms
    (r"\frac{1}{2}", "0.5", True),
    ("0.5", r"\frac12", True),
    (r"\dfrac{3}{4}", r"\frac34", True),
    (r"-\frac{1}{2}", "-0.5", True),
    (r"\frac{1}{2}", "1/2", True),
    # units, money, degrees
    (r"5 \text{ cm}", "5", True),
    (r"\$18.90", "18.9", True),
    ("18", "18 dollars", True),
    (r"30^\circ", "30", True),
    (r"90\text{ square units}", "90", True),
    # intervals, tuples, sets
    ("[1,3)", "[1, 3)", True),
    ("(1,3)", "[1,3]", False),
    ("[1,3]", "[1,4]", False),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})", True),
    (r"\{1,2\}", r"\{2,1\}", True),
    (r"\{1,2\}", r"\{1,3\}", False),
    (r"(-\infty, \infty)", r"\mathbb{R}", True),
    # assignments
    ("x=2", "2", True),
    ("2", "x = 2", True),
    ("y=2x+3", "2x+3", True),
    (r"x \in [1,2]", "[1,2]", True),
    # thousands, trailing zeros, leading zeros
    ("1,234", "1234", True),
    ("1,234", "1235", False),
    ("27.0", "27", True),
    ("025", "25", True),
    ("70000", "70001", False),  # integers compare exactly, not within the 1e-4 relative tolerance
    ("0.33333", r"\frac{1}{3}", True),  # decimals do get the tolerance
    # percentages (Qwen's include_percentage: gold, gold/100 and gold*100 all count)
    (r"50\%", "50", True),
    ("50%", "0.5", True),
    ("0.5", r"50\%", True),
    # symbolic, via math-verify
    (r"\sqrt{2}/2", r"\frac{\sqrt{2}}{2}", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True),
    ("x+1", "1+x", True),
    # multiple choice
    (r"\text{(C)}", "C", True),
    (r"\text{(C)}", "D", False),
    # wrong answers
    ("2", "3", False),
    (r"\frac{1}{3}", "0.33", False),
    ("-5", "5", False),
    (r"\sqrt{2}", "2", False),
    ("x+1", "x-1", False),
    ("a+b", "c+b", False),
    (r"\frac{\pi}{2}", r"\frac{\pi}{3}", False),
    # missing / empty
    ("5", None, False),
    ("5", "", False),
    ("", "5", False),
]


@pytest.mark.parametrize(("gold", "pred", "expected"), EQUIV_TABLE)
def test_is_equiv(gold, pred, expected):
    assert is_equiv(gold, pred) is expected


def test_grader_matches_is_equiv(grader):
    """The same table through the process pool (the math-verify rows need it) gives the same verdicts."""
    got = grader.grade([(g, p) for g, p, _ in EQUIV_TABLE])
    assert got == [e for _, _, e in EQUIV_TABLE]
    assert grader.grade_one(r"\{1,2\}", r"\{2,1\}") is True
    assert grader.grade([]) == []


def test_grade_responses(grader):
    golds = ["5", r"\frac{1}{2}", "1234", "7"]
    responses = [r"so \boxed{5}.", "The answer is $0.5$.", "we got 1,234 in total", "no idea"]
    assert grade_responses(golds, responses, grader) == [True, True, True, False]
    with pytest.raises(ValueError, match="length"):
        grade_responses(["1"], [], grader)


def test_grader_timeout_counts_false_and_recovers():
    """A hung item counts False, is counted in `timeouts`, and the items after it still grade correctly."""
    pairs = [
        (r"\{1,2\}", r"\{2,1\}"),  # needs math-verify, so goes to the pool in the same chunk as the hang
        ("1", TEST_SLEEP_SENTINEL),
        ("x+1", "1+x"),
        ("x+1", "x-1"),
        ("2", "2"),
    ]
    start = time.monotonic()
    with Grader(workers=2, timeout_s=1.0) as g:
        got = g.grade(pairs)
        assert g.timeouts == 1
        assert g.grade_one(r"2\sqrt{2}", r"\sqrt{8}") is True  # the replacement pool works
    elapsed = time.monotonic() - start
    assert got == [True, False, True, False, True]
    assert elapsed < 20, f"timeout handling took {elapsed:.1f} s"


# --------------------------------------------------------------------------------------------------------------
# gold_answer
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "benchmark", "expected"),
    [
        ({"answer": "She sells 16 - 3 = <<16-3=13>>13 eggs.\n#### 18"}, "gsm8k", "18"),
        ({"answer": "work\n#### 1,234"}, "gsm8k", "1234"),
        ({"answer": r"\frac{1}{2}"}, "math", r"\frac{1}{2}"),
        ({"answer": r"\left( 3, \frac{\pi}{2} \right)"}, "math500", r"\left( 3, \frac{\pi}{2} \right)"),
        ({"answer": r"$\{x|-2\leq x < 1\}$"}, "gaokao2023en", r"\{x|-2\leq x < 1\}"),
        ({"final_answer": ["$2^{1009}$"]}, "olympiadbench", "2^{1009}"),
        ({"final_answer": ["2"]}, "olympiadbench", "2"),
        ({"answer": "025"}, "aime24", "025"),
        ({"answer": 27.0}, "amc23", "27"),
        ({"answer": 2.5}, "amc23", "2.5"),
    ],
)
def test_gold_answer(row, benchmark, expected):
    assert gold_answer(row, benchmark) == expected


def test_gold_answer_errors():
    with pytest.raises(ValueError, match="unknown benchmark 'svamp'"):
        gold_answer({"answer": "1"}, "svamp")
    with pytest.raises(KeyError, match="olympiadbench.*final_answer"):
        gold_answer({"answer": "1"}, "olympiadbench")
    with pytest.raises(ValueError, match="gsm8k.*####"):
        gold_answer({"answer": "no marker"}, "gsm8k")
    with pytest.raises(ValueError, match="olympiadbench.*non-empty list"):
        gold_answer({"final_answer": []}, "olympiadbench")


# --------------------------------------------------------------------------------------------------------------
# Every benchmark gold answer round-trips through extraction and grading
# --------------------------------------------------------------------------------------------------------------


def test_benchmark_folders_are_known():
    if not DATA_DIR.is_dir():
        pytest.skip(
            f"benchmark data directory {DATA_DIR} not found (set PSRLM_DATA to the folder holding benchmarks/)"
        )
    files = {p.relative_to(DATA_DIR).as_posix() for p in DATA_DIR.rglob("*.jsonl")}
    assert files == {f"{b}/test.jsonl" for b in BENCHMARKS}


def _row_id(row: dict, index: int) -> str:
    return str(row.get("id", row.get("unique_id", row.get("idx", index))))


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_gold_answers_self_grade(benchmark, grader):
    """Through the loader the evaluation uses (tasks/benchmarks.py), so this also reads every shipped file."""
    from psrlm.tasks.benchmarks import load_benchmark

    _rows(benchmark)  # skips when the data folder is absent
    rows = [p.meta for p in load_benchmark(benchmark, DATA_DIR.parent)]
    golds = [p.answer for p in load_benchmark(benchmark, DATA_DIR.parent)]
    empty = {(benchmark, _row_id(row, i)) for i, (row, gold) in enumerate(zip(rows, golds, strict=True)) if not gold}
    assert empty == {key for key in EMPTY_GOLD_ROWS if key[0] == benchmark}

    keep = [i for i, gold in enumerate(golds) if gold]
    responses = [f"Adding the two parts gives 3 + 4 = 7.\nSo the answer is $\\boxed{{{golds[i]}}}$." for i in keep]
    start = time.monotonic()
    verdicts = grade_responses([golds[i] for i in keep], responses, grader)
    elapsed = time.monotonic() - start

    wrong = [(_row_id(rows[i], i), golds[i]) for i, ok in zip(keep, verdicts, strict=True) if not ok]
    print(
        f"\n{benchmark}: {sum(verdicts)}/{len(keep)} gold answers self-grade correct "
        f"({len(rows)} rows, {len(empty)} without a gold answer) in {elapsed:.2f} s"
    )
    assert not wrong, f"{len(wrong)} {benchmark} gold answers fail to self-grade, e.g. {wrong[:5]}"
    assert elapsed < 30, f"{benchmark}: grading {len(keep)} rows took {elapsed:.1f} s"


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_perturbed_numeric_answers_grade_wrong(benchmark, grader):
    rows = _rows(benchmark)
    pairs = []
    for row in rows:
        gold = gold_answer(row, benchmark)
        try:
            value = float(gold.replace(",", ""))
        except ValueError:
            continue
        wrong = value + 1
        pairs.append((gold, str(int(wrong)) if wrong.is_integer() else repr(wrong)))
        if len(pairs) == 50:
            break
    assert pairs, f"no plain-number gold answers in {benchmark}"
    verdicts = grader.grade(pairs)
    assert not any(verdicts), [p for p, v in zip(pairs, verdicts, strict=True) if v]


PERCENT_RULE = [  # (gold, pred, with Qwen's 100x rule, strict)
    ("25", "2500", True, False),  # the rule also passes this wrong answer
    ("1", "100", True, False),
    ("1", r"\$100", True, False),
    ("50", "0.5", True, False),
    (r"50\%", "50", True, True),  # a percent sign is read as the number either way
    ("25", "25", True, True),
    ("25", "26", False, False),
]


@pytest.mark.parametrize(("gold", "pred", "loose", "strict"), PERCENT_RULE)
def test_the_percentage_rule_is_a_named_switch(gold, pred, loose, strict):
    from psrlm.grading import Grader

    assert is_equiv(gold, pred, include_percentage=True) is loose
    assert is_equiv(gold, pred, include_percentage=False) is strict
    with Grader(include_percentage=False) as g:
        assert g.grade_one(gold, pred) is strict
