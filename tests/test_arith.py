import random

import pytest

from psrlm.initdata.build import arith_splits, pool_blocks
from psrlm.records import Problem
from psrlm.tasks.arith import (
    ERROR_KINDS,
    Difficulty,
    corrupt_step,
    generate_problem,
    generate_split,
    label_solution,
    label_step,
)

EASY = Difficulty(2, 4, 20)
HARD = Difficulty(5, 8, 60)


def test_generation_is_deterministic():
    a = generate_split(7, 30, EASY, "s")
    b = generate_split(7, 30, EASY, "s")
    assert a == b
    assert generate_split(8, 30, EASY, "s") != a


@pytest.mark.parametrize("diff", [EASY, HARD], ids=["easy", "hard"])
def test_gold_chain_is_correct_and_answer_matches(diff):
    rng = random.Random(0)
    for i in range(300):
        p = generate_problem(rng, diff, f"p{i}", "t")
        assert diff.min_ops <= p.meta["n_ops"] <= diff.max_ops
        assert all(label.correct for label in label_solution(p, p.meta["steps"]))
        assert p.meta["steps"][-1].endswith(f"\\boxed{{{p.answer}}}.")
        assert int(p.answer) >= 0


def test_splits_are_disjoint_and_hard_is_harder(small_cfg):
    splits = arith_splits(small_cfg)
    hashes = {name: {p.meta["hash"] for p in ps} for name, ps in splits.items()}
    assert not hashes["train"] & hashes["test"]
    assert not hashes["train"] & hashes["hard"]
    assert not hashes["test"] & hashes["hard"]
    assert len(hashes["train"]) == len(splits["train"])  # no duplicates inside a split
    mean = lambda ps: sum(len(p.meta["steps"]) for p in ps) / len(ps)  # noqa: E731
    assert mean(splits["hard"]) > 1.5 * mean(splits["test"])


def test_pool_blocks_are_disjoint(small_cfg):
    blocks = pool_blocks(small_cfg, arith_splits(small_cfg)["train"])
    ids = [p.id for ps in blocks.values() for p in ps]
    assert len(ids) == len(set(ids)) and blocks["fresh"]


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_every_error_kind_is_labelled_wrong(kind):
    rng = random.Random(1)
    made = 0
    for i in range(200):
        p = generate_problem(rng, EASY, f"p{i}", "t")
        for idx in range(len(p.meta["steps"])):
            wrong = corrupt_step(p, idx, kind, rng)
            if wrong is not None:
                made += 1
                assert not label_step(p, p.meta["steps"][:idx], wrong).correct
    assert made > 50  # every kind really occurs


PROBLEM = Problem(
    id="x",
    question="Mia has 12 apples. She buys 3 bags with 4 apples in each. She gives 5 apples to a friend. "
    "How many apples does Mia have now?",
    answer="19",
    source="t",
    meta={
        "steps": [
            "She buys 3 bags of 4, which is 3 * 4 = 12.",
            "She has 12 + 12 = 24.",
            "After giving 5 away, she has 24 - 5 = 19. The answer is \\boxed{19}.",
        ],
        "equations": [[3, "*", 4, 12], [12, "+", 12, 24], [24, "-", 5, 19]],
        "givens": [3, 4, 5, 12],
    },
)

ORACLE_CASES = [
    ("gold step 1", [], "3 * 4 = 12.", True),
    ("other wording, x for times", [], "Three bags hold 3 x 4 = 12 apples", True),
    ("commuted", [], "4 * 3 = 12", True),
    ("arithmetic slip", [], "3 * 4 = 13", False),
    ("wrong operation", [], "3 + 4 = 7", False),
    ("no computation", [], "She buys apples.", False),
    ("uses value not yet derived", [], "24 - 5 = 19", False),
    ("premature answer", [], "3 * 4 = 12. The answer is \\boxed{12}.", False),
    ("step 2 after step 1", ["3 * 4 = 12."], "12 + 12 = 24", True),
    ("needed value twice is fine", ["3 * 4 = 12."], "12 + 12 = 24", True),
    ("repeat adds nothing", ["3 * 4 = 12.", "12 + 12 = 24"], "3 * 4 = 12", False),
    ("builds on a wrong step", ["3 * 4 = 13."], "13 + 12 = 25", False),
    ("final step", ["3 * 4 = 12.", "12 + 12 = 24"], "24 - 5 = 19. \\boxed{19}", True),
    ("boxed without deriving", ["3 * 4 = 12."], "The answer is \\boxed{19}.", False),
    ("boxed answer after derivation", ["3 * 4 = 12.", "12 + 12 = 24", "24 - 5 = 19"], "So \\boxed{19}.", True),
    ("wrong boxed value", ["3 * 4 = 12.", "12 + 12 = 24"], "24 - 5 = 19. \\boxed{18}", False),
    ("division must be exact", [], "12 / 5 = 2", False),
]


@pytest.mark.parametrize("prev, step, correct", [c[1:] for c in ORACLE_CASES], ids=[c[0] for c in ORACLE_CASES])
def test_oracle_table(prev, step, correct):
    assert label_step(PROBLEM, prev, step).correct is correct
