import pytest

from psrlm.configs import SearchConfig
from psrlm.prompts import get_prompts
from psrlm.records import PreferencePair, Problem, SearchTrace, read_jsonl
from psrlm.search import run_search, run_tts

from .fakes import ScriptedEngine, prefer_higher_quality

PROMPTS = get_prompts("compact")
PROBLEMS = [Problem(id=f"p{i}", question=f"question {i}", answer="1", source="t") for i in range(5)]


def three_step_policy(q, prev, params):
    """Step l candidates: quality tags q0..q(n-1); step 3 is final."""
    step = len(prev) + 1
    end = " \\boxed{1}" if step == 3 else ""
    return [f"s{step} q{k}{end}" for k in range(params.n)]


def cfg(**kw) -> SearchConfig:
    return SearchConfig(**{"width": 3, **kw})


def test_pairs_and_batching():
    eng = ScriptedEngine(three_step_policy, prefer_higher_quality)
    res = run_search(PROBLEMS, eng, PROMPTS, cfg(max_active=5), progress=False)
    assert len(res.traces) == 5 and all(t.finished and t.stop_reason == "answer" for t in res.traces)
    assert len(res.pairs) == 15
    pair = next(p for p in res.pairs if p.meta["problem_id"] == "p0" and p.meta["step"] == 2)
    assert pair.prompt == PROMPTS.step_prompt("question 0", ["s1 q2"])
    assert pair.prompt.endswith("Step 2:")
    assert (pair.chosen, pair.rejected) == (" s2 q2", " s2 q0")
    assert pair.meta["chosen_score"] > pair.meta["rejected_score"]
    final = next(p for p in res.pairs if p.meta["problem_id"] == "p0" and p.meta["step"] == 3)
    assert final.meta["chosen_final"] and final.meta["rejected_final"]
    # every active problem's candidates in one call, every judgment in one call
    assert eng.calls[:2] == [("step", 5), ("judge", 5 * 6)]
    assert res.traces[0].judge_calls == 3 * 6


def test_each_round_records_who_was_judged_against_whom_and_what_the_judge_said():
    """A trace shows why a step was kept (psrlm view reads it): the judge's verdict matrix over the unique
    candidates and, with generated verdicts, each explanation as written."""
    eng = ScriptedEngine(three_step_policy, lambda a, b: f"{a} vs {b}: " + prefer_higher_quality(a, b))
    (t,) = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(), progress=False).traces
    first = t.rounds[0]
    assert first["candidates"] == ["s1 q0", "s1 q1", "s1 q2"] and first["best"] == 2 and first["worst"] == 0
    assert len(first["judgments"]) == 6 and len(first["explanations"]) == 6
    for (a, b, verdict, p_a), text in zip(first["judgments"], first["explanations"], strict=True):
        assert verdict == ("A" if a > b else "B") and p_a is None
        assert text.startswith(f"s1 q{a} vs s1 q{b}:")


def test_pairs_per_round_all_pairs_every_ranked_candidate():
    """pairs_per_round=all: every two candidates whose scores differ make a pair, the better-scored one chosen (3
    candidates with distinct scores: 3 pairs per step); the paper's best_worst makes one."""
    eng = ScriptedEngine(three_step_policy, prefer_higher_quality)
    res = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(pairs_per_round="all"), progress=False)
    step2 = [(p.chosen, p.rejected) for p in res.pairs if p.meta["step"] == 2]
    assert step2 == [(" s2 q2", " s2 q1"), (" s2 q2", " s2 q0"), (" s2 q1", " s2 q0")]
    assert len(res.pairs) == 9 and res.traces[0].rounds[1]["pairs"] == 3
    assert all(p.meta["chosen_score"] > p.meta["rejected_score"] for p in res.pairs)


def test_tie_at_step_one_resamples():
    calls = {"n": 0}

    def judge(a, b):  # the first round's verdicts are missing: every candidate scores 0, a judged tie
        return "no idea" if a.startswith("s1") and calls["n"] == 1 else prefer_higher_quality(a, b)

    def policy(q, prev, params):
        calls["n"] += 1
        return three_step_policy(q, prev, params)

    eng = ScriptedEngine(policy, judge)
    (t,) = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(), progress=False).traces
    assert t.ties == 1 and t.rollbacks == 0 and t.rounds[0]["action"] == "resample"
    assert t.rounds[0]["judge_calls"] == 6 and t.finished and len(t.steps) == 3


def test_identical_candidates_are_accepted_without_a_pair_or_a_rollback():
    """Every candidate the same text (a confident model on a short step): nothing was judged, so it is not a tie.
    The step is taken, no pair is made, the previous step is kept."""

    def policy(q, prev, params):
        if len(prev) == 1:
            return ["s2 same"] * params.n
        return three_step_policy(q, prev, params)

    eng = ScriptedEngine(policy, prefer_higher_quality)
    res = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(), progress=False)
    (t,) = res.traces
    assert [r["action"] for r in t.rounds] == ["accept", "accept_unanimous", "accept"]
    assert t.ties == 0 and t.rollbacks == 0 and t.steps[1] == "s2 same" and t.rounds[1]["judge_calls"] == 0
    assert [p.meta["step"] for p in res.pairs] == [1, 3]
    assert res.summary()["unanimous_rounds"] == 1


def test_candidates_cut_at_the_token_cap_are_dropped_and_counted():
    from psrlm.engines.base import Completion

    class CapEngine(ScriptedEngine):  # the step-1 candidates q0 and q1 ran into max_step_tokens
        def generate(self, prompts, params):
            out = super().generate(prompts, params)
            if self.calls[-1][0] == "step":
                out = [[Completion(c.text, c.tokens, "length" if (" q0" in c.text or " q1" in c.text) and
                                   "s1" in c.text else "stop") for c in row] for row in out]  # fmt: skip
            return out

    res = run_search(PROBLEMS[:1], CapEngine(three_step_policy, prefer_higher_quality), PROMPTS, cfg(width=4),
                     progress=False)  # fmt: skip
    (t,) = res.traces
    assert t.capped == 2 and t.rounds[0]["candidates"] == ["s1 q2", "s1 q3"] and t.rounds[0]["judge_calls"] == 2
    assert res.summary()["capped_candidates"] == 2


def test_tie_rolls_back_previous_step_and_its_pair():
    mute = {"left": 6}

    def judge(a, b):
        if a.startswith("s2") and mute["left"] > 0:  # the first step-2 round gets no verdicts -> a tie
            mute["left"] -= 1
            return "no idea"
        return prefer_higher_quality(a, b)

    policy = three_step_policy

    eng = ScriptedEngine(policy, judge)
    res = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(), progress=False)
    (t,) = res.traces
    assert [r["action"] for r in t.rounds][:2] == ["accept", "rollback"]
    assert t.rollbacks == 1 and t.no_verdicts == 6
    assert [p.meta["step"] for p in res.pairs] == [1, 2, 3]  # the discarded step-1 pair is gone, once
    # after the rollback only a step-1 prompt follows
    assert t.rounds[2]["step"] == 1


def test_round_cap_stops_endless_ties():
    eng = ScriptedEngine(lambda q, prev, params: [f"x q{k}" for k in range(params.n)], lambda a, b: "no idea")
    (t,) = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(max_rounds=7), progress=False).traces
    assert t.rounds_used == 7 and t.stop_reason == "round_cap" and not t.finished and t.steps == []


def test_max_steps():
    eng = ScriptedEngine(lambda q, prev, params: [f"s q{k}" for k in range(params.n)], prefer_higher_quality)
    (t,) = run_search(PROBLEMS[:1], eng, PROMPTS, cfg(max_steps=4), progress=False).traces
    assert t.stop_reason == "max_steps" and len(t.steps) == 4


def test_resume_after_interruption_has_no_duplicates_or_losses(tmp_path):
    reference = run_search(PROBLEMS, ScriptedEngine(three_step_policy, prefer_higher_quality), PROMPTS,
                           cfg(max_active=2), progress=False)  # fmt: skip
    out = tmp_path / "search"
    killer = ScriptedEngine(three_step_policy, prefer_higher_quality, fail_after_calls=9)
    with pytest.raises(KeyboardInterrupt):
        run_search(PROBLEMS, killer, PROMPTS, cfg(max_active=2), out_dir=out, progress=False)
    partial = read_jsonl(out / "traces.jsonl", SearchTrace)
    assert 0 < len(partial) < len(PROBLEMS)
    with open(out / "pairs.jsonl", "a") as fh:  # a kill mid-write of an unfinished problem's pairs
        fh.write(
            '{"prompt": "Q: question 4\\nA:\\nStep 1:", "chosen": " x", "rejected": " y", "meta": {"problem_id": "p4"}}\n{"prom'
        )
    res = run_search(PROBLEMS, ScriptedEngine(three_step_policy, prefer_higher_quality), PROMPTS,
                     cfg(max_active=2), out_dir=out, progress=False)  # fmt: skip
    assert [t.problem_id for t in res.traces] == [p.id for p in PROBLEMS]
    key = lambda p: (p.meta["problem_id"], p.meta["step"], p.chosen, p.rejected)  # noqa: E731
    on_disk = read_jsonl(out / "pairs.jsonl", PreferencePair)
    assert sorted(map(key, on_disk)) == sorted(map(key, reference.pairs))
    assert len(read_jsonl(out / "traces.jsonl", SearchTrace)) == len(PROBLEMS)


def test_tts_returns_solutions_and_compute():
    traces = run_tts(PROBLEMS[:2], ScriptedEngine(three_step_policy, prefer_higher_quality), PROMPTS, cfg(),
                     progress=False)  # fmt: skip
    assert [t.final_answer for t in traces] == ["1", "1"]
    assert all(t.gen_tokens > 0 and t.judge_calls == 18 for t in traces)


@pytest.mark.parametrize("mode, calls", [("all_ordered", 6), ("one_order", 3), ("cyclic", 3)])
def test_judge_modes_in_search(mode, calls):
    (t,) = run_search(PROBLEMS[:1], ScriptedEngine(three_step_policy, prefer_higher_quality), PROMPTS,
                      cfg(judge_mode=mode), progress=False).traces  # fmt: skip
    assert t.rounds[0]["judge_calls"] == calls and t.finished


# ------------------------------------------------------------------------ saved per round (issue 23, item 3)


def test_a_kill_keeps_every_round_of_the_problems_in_flight(tmp_path):
    """A problem was saved only when it finished, so a kill lost every problem in flight (at scale hundreds, each
    many judge calls deep). Each round is saved now: after a kill two rounds in, the rerun asks only for the round
    every problem still needs, and ends exactly where an uninterrupted search ends."""
    depth = []

    def policy(q, prev, params):
        depth.append(len(prev))
        return three_step_policy(q, prev, params)

    whole = run_search(PROBLEMS, ScriptedEngine(policy, prefer_higher_quality), PROMPTS, cfg(max_active=5),
                       out_dir=tmp_path / "whole", progress=False)  # fmt: skip
    killed = ScriptedEngine(policy, prefer_higher_quality, fail_after_calls=4)  # rounds 1-2 done, killed in round 3
    with pytest.raises(KeyboardInterrupt):
        run_search(PROBLEMS, killed, PROMPTS, cfg(max_active=5), out_dir=tmp_path / "resumed", progress=False)
    out = tmp_path / "resumed"
    assert read_jsonl(out / "traces.jsonl") == []  # nothing finished: all five were in flight
    journal = read_jsonl(out / "inflight.jsonl")
    assert sorted({e["problem_id"] for e in journal}) == [p.id for p in PROBLEMS] and len(journal) == 10
    depth.clear()
    again = ScriptedEngine(policy, prefer_higher_quality)
    res = run_search(PROBLEMS, again, PROMPTS, cfg(max_active=5), out_dir=out, progress=False)
    assert again.calls == [("step", 5), ("judge", 30)] and depth == [2] * 5  # round 3 alone, from step 3
    assert res.traces == whole.traces and res.pairs == whole.pairs
    assert read_jsonl(out / "traces.jsonl", SearchTrace) == read_jsonl(
        tmp_path / "whole" / "traces.jsonl", SearchTrace
    )
    assert not (out / "inflight.jsonl").exists()  # every problem committed: nothing in flight


def _tagged_policy(q, prev, params, seed):
    """Candidates depend on (problem, step, attempt) through the row's seed; one attempt in three is judged a tie
    (no verdicts): rollbacks, resamples and round caps, all seeded."""
    step = len(prev) + 1
    end = " \\boxed{1}" if step == 3 else ""
    tie = "t1" if seed % 3 == 0 else "t0"
    return [f"s{step} q{(seed // 3 + k) % 4} {tie}{end}" for k in range(params.n)]


def _tie_or_quality(a, b):
    return "no verdict" if " t1" in a else prefer_higher_quality(a, b)


@pytest.mark.parametrize("kill_at", range(1, 24, 2))
def test_a_search_killed_at_any_call_resumes_to_exactly_the_uninterrupted_result(tmp_path, kill_at):
    """Rollbacks pop steps and pairs, resamples add none, problems finish at different rounds and new ones take
    their place: wherever the kill falls, the resumed search's traces and pairs are the uninterrupted one's."""
    search = cfg(max_active=2, max_rounds=6)
    whole = run_search(PROBLEMS, ScriptedEngine(_tagged_policy, _tie_or_quality, seeded=True), PROMPTS, search,
                       out_dir=tmp_path / "whole", progress=False)  # fmt: skip
    assert sum(t.rollbacks for t in whole.traces) and sum(t.stop_reason == "round_cap" for t in whole.traces)
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_search(PROBLEMS, ScriptedEngine(_tagged_policy, _tie_or_quality, kill_at, seeded=True), PROMPTS, search,
                   out_dir=out, progress=False)  # fmt: skip
    res = run_search(PROBLEMS, ScriptedEngine(_tagged_policy, _tie_or_quality, seeded=True), PROMPTS, search,
                     out_dir=out, progress=False)  # fmt: skip
    assert res.traces == whole.traces and sorted(map(repr, res.pairs)) == sorted(map(repr, whole.pairs))
    assert not (out / "inflight.jsonl").exists()


def test_at_test_time_a_tie_takes_the_most_sampled_step_with_no_rollback_and_no_pair():
    """search.ties=accept (the inference rules of test-time search, iterate.tts_search_cfg): a judge that never
    decides ties every round; the training rule rolls back until the round cap, the inference rule takes a step
    each round, the candidate drawn most often among the equal ones, and makes no pair."""

    def policy(q, prev, params):  # "b" is drawn twice of three: the majority
        step = len(prev) + 1
        end = " \\boxed{1}" if step == 3 else ""
        return [f"s{step} a{end}", f"s{step} b{end}", f"s{step} b{end}"]

    never = lambda a, b: "no idea"  # noqa: E731
    (trained,) = run_search(PROBLEMS[:1], ScriptedEngine(policy, never), PROMPTS, cfg(max_rounds=6),
                            progress=False).traces  # fmt: skip
    assert trained.stop_reason == "round_cap" and trained.steps == [] and not trained.finished
    res = run_search(PROBLEMS[:1], ScriptedEngine(policy, never), PROMPTS, cfg(max_rounds=6, ties="accept"),
                     progress=False)  # fmt: skip
    (t,) = res.traces
    assert [r["action"] for r in t.rounds] == ["accept_tie"] * 3 and t.rollbacks == 0 and t.ties == 3
    assert t.steps == ["s1 b", "s2 b", "s3 b \\boxed{1}"] and t.finished and t.final_answer == "1"
    assert res.pairs == []  # a tie teaches nothing, at test time as in training


def test_the_inference_rules_of_test_time_search(tmp_path):
    """iterate.eval_tts_rules: inference (default) = ties taken, rounds capped at 2 x max_steps instead of
    search.max_rounds; training = the training search unchanged. Only the inference rule keys the TTS cache apart."""
    from psrlm.configs import load_config
    from psrlm.evaluation import tts_search_cfg
    from psrlm.identity import generation_settings
    from psrlm.runfolder import Run

    cfg_ = load_config(None, [f"paths.run_dir={tmp_path}", "search.max_steps=5", "search.max_rounds=20"])
    inference = tts_search_cfg(Run(cfg_))
    assert (inference.ties, inference.max_rounds, inference.max_steps) == ("accept", 10, 5)
    training = tts_search_cfg(Run(load_config(None, [f"paths.run_dir={tmp_path}", "iterate.eval_tts_rules=training"])))
    assert (training.ties, training.max_rounds) == ("rollback", 20)
    assert "ties" in generation_settings(inference) and "ties" not in generation_settings(training)
