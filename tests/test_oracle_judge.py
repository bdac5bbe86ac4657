"""The controlled judge of the science runs (search.judge=oracle, judge_flip): exact verdicts from the step oracle,
flipped at a known rate; the rest of the search unchanged; the runs labelled as oracle runs."""

import random

import pytest

from psrlm.configs import SearchConfig
from psrlm.initdata.build import arith_splits
from psrlm.prompts import get_prompts
from psrlm.records import SearchTrace
from psrlm.search import _State, oracle_labels, oracle_verdicts, run_search
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
    v = oracle_verdicts(
        oracle_labels(st, [right, wrong, right + " "]), [(0, 1), (1, 0), (0, 2), (1, 1)], flip=0.0, seed=1
    )
    assert [x.verdict for x in v] == ["A", "B", None, None]
    assert [x.p_a for x in v] == [1.0, 0.0, 0.5, 0.5] and all(x.tokens == 0 for x in v)


def test_flip_sets_the_judges_accuracy(small_cfg):
    p = _problem(small_cfg)
    right, wrong = _right_and_wrong(p, random.Random(0))
    st = _State(p, SearchTrace(problem_id=p.id, steps=[]))
    for flip in (0.0, 0.3, 1.0):
        verdicts = [
            v
            for seed in range(400)
            for v in oracle_verdicts(oracle_labels(st, [right, wrong]), [(0, 1), (1, 0)], flip, seed)
        ]
        accuracy = sum((v.verdict == "A") if i % 2 == 0 else (v.verdict == "B") for i, v in enumerate(verdicts)) / 800
        assert abs(accuracy - (1 - flip)) < 0.05
    again = [v.verdict for v in oracle_verdicts(oracle_labels(st, [right, wrong]), [(0, 1)] * 20, 0.5, seed=7)]
    assert again == [
        v.verdict for v in oracle_verdicts(oracle_labels(st, [right, wrong]), [(0, 1)] * 20, 0.5, seed=7)
    ]  # seeded


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


@pytest.mark.parametrize("ties, finished", [("tie", False), ("accept", True)])
def test_oracle_ties_accept_goes_on_where_every_candidate_is_right(small_cfg, ties, finished):
    # with "tie", a round of several right candidates (two wordings of the gold step) has no preference and the
    # paper's rule rolls back a right step, round after round; "accept" takes one with no pair and goes on
    problems = [p for p in arith_splits(small_cfg)["test"] if len(p.meta["steps"]) >= 3][:2]

    def policy(q, prev, params):
        gold = next(x for x in problems if x.question == q).meta["steps"][len(prev)]
        return ([gold, gold.replace(", so", "; so") if ", so" in gold else gold + " "] * params.n)[: params.n]

    eng = ScriptedEngine(policy, lambda a, b: "never asked")
    cfg = SearchConfig(width=2, judge="oracle", oracle_ties=ties, max_steps=8, max_rounds=6)
    res = run_search(problems, eng, PROMPTS, cfg, progress=False)
    assert all(t.finished for t in res.traces) == finished and not res.pairs
    summary = res.summary()
    assert (summary["all_right_rounds"] > 0) == finished and (summary["rollbacks"] == 0) == finished


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


def test_right_prefix_reads_evaluations_step_by_step(small_cfg, tmp_path):
    """The sweep's step-level measure: the share of the gold steps a solution gets right before its first wrong
    one, per split, from the evaluation's per-problem file."""
    import json

    from psrlm.records import write_jsonl
    from psrlm.steps import render_steps
    from psrlm.sweep import SPLITS, right_prefix

    problems = arith_splits(small_cfg)["test"][:3]
    gold = [p.meta["steps"] for p in problems]
    wrong_first = corrupt_step(problems[1], 0, "arithmetic_slip", random.Random(0))
    responses = [render_steps(gold[0]),  # all right: 1
                 render_steps([wrong_first, *gold[1][1:]]),  # wrong at once: 0, whatever follows
                 render_steps(gold[2][:1])]  # one right step of the gold chain, then nothing  # fmt: skip
    for split in SPLITS:
        write_jsonl(tmp_path / "data" / f"{split}.jsonl", problems)
        (tmp_path / "eval" / "M").mkdir(parents=True, exist_ok=True)
        rows = [{"problem_id": p.id, "response": r} for p, r in zip(problems, responses, strict=True)]
        (tmp_path / "eval" / "M" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = (1.0 + 0.0 + 1 / len(gold[2])) / 3
    assert right_prefix(tmp_path, "M") == {s: expected for s in SPLITS}


def test_the_sweep_summary_has_intervals_the_break_even_and_a_plot(tmp_path):
    from psrlm.sweep import SPLITS, format_table, plot, summarise

    def seed(m1, self_, oracle):  # accuracies (the same on every split) and step-level shares
        row = lambda a, own: {"accuracy": dict.fromkeys(SPLITS, a), "prefix": dict.fromkeys(SPLITS, a + 0.1),  # noqa: E731
                              "own_pair_accuracy": own, "pairs": 10,
                              "changes": {"changed": 0.3, "gained": 6, "lost": 7, "problems": 600}}  # fmt: skip
        return {
            "M1": dict.fromkeys(SPLITS, m1),
            "M1_prefix": dict.fromkeys(SPLITS, m1 + 0.1),
            "self": row(self_, 0.45),
            "oracle0.50": row(oracle[0], 0.5),
            "oracle1.00": row(oracle[1], 1.0),
        }

    per_seed = {
        0: seed(0.10, 0.08, (0.07, 0.12)),
        1: seed(0.20, 0.17, (0.18, 0.21)),
        2: seed(0.15, 0.14, (0.13, 0.18)),
    }
    summary = summarise(per_seed, [0.5, 1.0])
    rows = summary["rows"]
    assert rows["oracle1.00"]["arith_test"]["per_seed"] == pytest.approx([0.02, 0.01, 0.03])
    assert rows["oracle1.00"]["arith_test"]["mean"] == pytest.approx(0.02) and rows["self"]["arith_test"]["ci95"] > 0
    assert rows["self"]["arith_valid_prefix"]["mean"] == pytest.approx(rows["self"]["arith_valid"]["mean"])
    assert 0.5 < summary["break_even"]["arith_test"] < 1.0  # -0.023 at 0.5, +0.02 at 1.0
    text = format_table(summary)
    assert (
        "| self (the method) | 0.450 | 10, 10, 10 |" in text
        and "Intervals that exclude 0" in text
        and "Step level" in text
    )
    assert "| oracle, verdict accuracy 1.0 | 0.30, 0.30, 0.30 | 6, 6, 6 | 7, 7, 7 |" in text
    plot(summary, [0.5, 1.0], tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000


def test_oracle_knobs_do_not_key_a_self_judged_search():
    from psrlm.identity import generation_settings

    base = generation_settings(SearchConfig())
    assert generation_settings(SearchConfig(oracle_ties="accept", judge_flip=0.3)) == base
    assert generation_settings(SearchConfig(judge="oracle", oracle_ties="accept")) != base


def test_an_oracle_only_sweep_summarises_and_plots_without_a_self_arm(tmp_path):
    from psrlm.sweep import SPLITS, format_table, plot, summarise

    row = {"accuracy": dict.fromkeys(SPLITS, 0.2), "prefix": dict.fromkeys(SPLITS, 0.3), "own_pair_accuracy": 1.0,
           "pairs": 9, "changes": {"changed": 0.5, "gained": 3, "lost": 2, "problems": 600}}  # fmt: skip
    per_seed = {s: {"M1": dict.fromkeys(SPLITS, 0.1 + s / 100), "M1_prefix": dict.fromkeys(SPLITS, 0.2),
                    "oracle1.00": row} for s in range(3)}  # fmt: skip
    summary = summarise(per_seed, [1.0])
    assert list(summary["rows"]) == ["oracle1.00"]
    text = format_table(summary)
    assert "self" not in text and "| oracle, verdict accuracy 1.0 | 1.000 | 9, 9, 9 |" in text
    plot(summary, [1.0], tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 1000
