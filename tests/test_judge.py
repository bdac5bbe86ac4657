import pytest

from psrlm.judge import Judgment, parse_verdict, plan_pairs, score_candidates, unique_candidates

VERDICTS = [
    ("The first is right. [[A]]", "A"),
    ("[[B]]", "B"),
    ("B is wrong: 3 * 4 is 12. [[ a ]]", "A"),
    ("verdict: [[b]]", "B"),
    ("[[A]] ... on reflection [[A]]", "A"),
    ("[[A]] no wait [[B]]", "B"),  # the last tag is the verdict (the paper's note on Fig. 5)
    ('Format: "[[A]]" if A is better, "[[B]]" if B is better. A slips in step 2, so: [[B]]', "B"),
    ('I must answer "[[A]]" or "[[B]]". Step A is right. [[A]]', "A"),
    ("A is better", None),
    ("[A]", None),
    ("[[C]]", None),
    ("", None),
    ("[[AB]]", None),
]


@pytest.mark.parametrize("text, expected", VERDICTS)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) == expected


@pytest.mark.parametrize("w", [2, 3, 6])
def test_plan_pairs_counts(w):
    assert len(plan_pairs(w, "all_ordered")) == w * (w - 1)
    assert len(plan_pairs(w, "one_order")) == w * (w - 1) // 2
    cyc = plan_pairs(w, "cyclic", k=2)
    assert len({frozenset(p) for p in cyc}) == len(cyc)  # each unordered pair at most once
    for mode in ("all_ordered", "one_order", "cyclic"):
        assert all(a != b for a, b in plan_pairs(w, mode))


def test_plan_pairs_one_order_balances_positions():
    pairs = plan_pairs(6, "one_order")
    firsts = [a for a, _ in pairs]
    assert max(firsts.count(i) for i in range(6)) - min(firsts.count(i) for i in range(6)) <= 3


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown judge mode"):
        plan_pairs(3, "swiss")


def test_unique_candidates_merges_whitespace_variants():
    uniques, index = unique_candidates(["a  b", "c", "a b", "c"])
    assert uniques == ["a  b", "c"] and index == [0, 1, 0, 1]


def test_scores_wins_vs_position_a():
    js = [Judgment(0, 1, "A"), Judgment(1, 0, "B"), Judgment(0, 2, "B"), Judgment(2, 0, None)]
    wins = score_candidates(3, js, "wins")
    assert wins.scores == [2, 0, 1] and wins.no_verdicts == 1
    assert wins.best == 0 and wins.worst == 1 and not wins.tie
    literal = score_candidates(3, js, "position_a")
    assert literal.scores == [1, 0, 0]


def test_all_no_verdict_is_a_tie():
    s = score_candidates(3, [Judgment(0, 1, None), Judgment(1, 2, None)])
    assert s.tie and s.no_verdicts == 2


def test_soft_scores_cancel_position_bias():
    # the judge prefers position A strongly (0.9 / 0.8) but s0 a little more than s1: s0 must win
    js = [Judgment(0, 1, "A", p_a=0.9), Judgment(1, 0, "A", p_a=0.8)]
    s = score_candidates(2, js, "wins")
    assert s.best == 0 and abs(s.scores[0] - 1.1) < 1e-9 and not s.tie
    assert score_candidates(2, js, "wins", tie_margin=0.5).tie
    # hard verdicts from the same biased judge: one win each, a tie (the paper's rollback case)
    assert score_candidates(2, [Judgment(0, 1, "A"), Judgment(1, 0, "A")]).tie
