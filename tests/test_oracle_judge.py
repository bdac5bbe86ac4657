"""The controlled judge of the science runs (search.judge=oracle, judge_flip): exact verdicts from the step oracle,
flipped at a known rate; the rest of the search unchanged; the runs labelled as oracle runs."""

import random

from psrlm.configs import SearchConfig
from psrlm.initdata.build import arith_splits
from psrlm.prompts import get_prompts
from psrlm.records import SearchTrace
from psrlm.search import _State, oracle_verdicts, run_search
from psrlm.sweep import break_even
from psrlm.tasks.arith import corrupt_step, label_step

from .fakes import ScriptedEngine

PROMPTS = get_prompts("compact")


def _problem(small_cfg, i=0):
    return arith_splits(small_cfg)["test"][i]


def _right_and_wrong(problem, rng):
    right = problem.meta["steps"][0]
    wrong = next(w for k in ("arithmetic_slip", "wrong_operand", "wrong_operation")
                 if (w := corrupt_step(problem, 0, k, rng)))  # fmt: skip
    assert label_step(problem, [], right).correct and not label_step(problem, [], wrong).correct
    return right, wrong


def test_right_beats_wrong_and_equals_tie(small_cfg):
    p = _problem(small_cfg)
    right, wrong = _right_and_wrong(p, random.Random(0))
    st = _State(p, SearchTrace(problem_id=p.id, steps=[]))
    v = oracle_verdicts(st, [right, wrong, right + " "], [(0, 1), (1, 0), (0, 2), (1, 1)], flip=0.0, seed=1)
    assert [x.verdict for x in v] == ["A", "B", None, None]
    assert [x.p_a for x in v] == [1.0, 0.0, 0.5, 0.5] and all(x.tokens == 0 for x in v)


def test_flip_sets_the_judges_accuracy(small_cfg):
    p = _problem(small_cfg)
    right, wrong = _right_and_wrong(p, random.Random(0))
    st = _State(p, SearchTrace(problem_id=p.id, steps=[]))
    for flip in (0.0, 0.3, 1.0):
        verdicts = [
            v for seed in range(400) for v in oracle_verdicts(st, [right, wrong], [(0, 1), (1, 0)], flip, seed)
        ]
        accuracy = sum((v.verdict == "A") if i % 2 == 0 else (v.verdict == "B") for i, v in enumerate(verdicts)) / 800
        assert abs(accuracy - (1 - flip)) < 0.05
    again = [v.verdict for v in oracle_verdicts(st, [right, wrong], [(0, 1)] * 20, 0.5, seed=7)]
    assert again == [v.verdict for v in oracle_verdicts(st, [right, wrong], [(0, 1)] * 20, 0.5, seed=7)]  # seeded


def test_search_with_the_oracle_judge_makes_only_right_over_wrong_pairs(small_cfg):
    problems = arith_splits(small_cfg)["test"][:4]
    rng = random.Random(3)

    def policy(q, prev, params):  # per step: the gold step and two corruptions of it
        p = next(x for x in problems if x.question == q)
        k = len(prev)
        gold = p.meta["steps"][k]
        wrongs = [w for kind in ("arithmetic_slip", "wrong_operand", "wrong_operation")
                  if (w := corrupt_step(p, k, kind, rng))]  # fmt: skip
        return ([gold] + wrongs + [gold] * 3)[: params.n]

    eng = ScriptedEngine(policy, lambda a, b: "never asked")
    res = run_search(problems, eng, PROMPTS, SearchConfig(width=3, judge="oracle", max_steps=8), progress=False)
    assert all(kind == "step" for kind, _ in eng.calls)  # the model is never asked to judge
    assert res.pairs and all(t.finished for t in res.traces)
    for pair in res.pairs:
        p = next(x for x in problems if x.id == pair.meta["problem_id"])
        prev = pair.meta["prev_steps"]
        assert label_step(p, prev, pair.chosen).correct and not label_step(p, prev, pair.rejected).correct


def test_break_even_interpolates_where_the_mean_change_reaches_zero():
    assert break_even([0.5, 0.7, 0.9], [-0.1, -0.02, 0.06]) == 0.75
    assert break_even([0.5, 0.9], [0.01, 0.05]) == 0.5
    assert break_even([0.5, 0.9], [-0.1, -0.01]) is None


def test_policy_eft_pairs_a_right_with_a_wrong_candidate_of_the_policy(small_cfg):
    """EFT the paper's way on arith: the policy's own candidates, one right and one wrong per item (the oracle
    stands in for PRM + teacher), A/B balanced; rounds with no mix are counted, not used."""
    from psrlm.engines.base import Completion, EngineStats
    from psrlm.initdata.eft import build_policy_eft
    from psrlm.steps import split_steps

    problems = arith_splits(small_cfg)["train"][:20]
    rng = random.Random(0)

    class Policy:  # right at even prompts, mixed at odd ones
        stats = EngineStats()

        def generate(self, prompts, params):
            out = []
            for i, prompt in enumerate(prompts):
                p = next(x for x in problems if x.question in prompt)
                k = len(split_steps(prompt.split("A:\n", 1)[1]))  # steps before the open "Step k+1:"
                gold = p.meta["steps"][k]
                wrong = corrupt_step(p, k, "arithmetic_slip", rng) or corrupt_step(p, k, "wrong_operand", rng)
                texts = [gold] * params.n if i % 2 == 0 or wrong is None else [gold, wrong] * params.n
                out.append([Completion(" " + t, 5, "stop") for t in texts[: params.n]])
            return out

    items, counts = build_policy_eft(problems, Policy(), PROMPTS, 30, seed=0, width=4, temperature=0.5, top_p=0.95,
                                     max_step_tokens=48)  # fmt: skip
    assert len(items) == 30 == counts["items"] and counts["all_right"] > 0
    assert [e.verdict for e in items[:4]] == ["A", "B", "A", "B"]  # exact A/B balance
    for e in items:
        p = next(x for x in problems if x.id == e.meta["problem_id"])
        good, bad = (e.step_a, e.step_b) if e.verdict == "A" else (e.step_b, e.step_a)
        assert label_step(p, e.prev_steps, good).correct and not label_step(p, e.prev_steps, bad).correct
        assert e.explanation.endswith("is wrong.") and e.meta["error_kind"] == "policy"
