import re

import pytest

from psrlm.configs import SRLMConfig
from psrlm.engines.base import Completion, EngineStats
from psrlm.prompts import get_prompts
from psrlm.records import Problem
from psrlm.srlm import parse_score, run_srlm

PROMPTS = get_prompts("compact")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Good answer. Score: 4", 4.0),
        ("score:5", 5.0),
        ("Score: 2.5 points", 2.5),
        ("Score: 3 ... final Score: 1", 1.0),
        ("Score: 7", None),  # outside the 0-5 scale
        ("four out of five", None),
        ("", None),
    ],
)
def test_parse_score(text, expected):
    assert parse_score(text) == expected


class SolutionEngine:
    """Solutions 'sol k' for k = 0..n-1; the scorer gives k (or garbage for 'sol 1' when asked)."""

    def __init__(self, garbage_for: str | None = None):
        self.stats = EngineStats()
        self.garbage_for = garbage_for

    def generate(self, prompts, params):
        out = []
        for p in prompts:
            if p.startswith("Score 1-5."):
                k = int(re.search(r"sol (\d)", p).group(1))
                text = "no idea" if f"sol {k}" == self.garbage_for else f"fine. Score: {min(k, 5)}"
                out.append([Completion(text, 3)] * params.n)
            else:
                out.append([Completion(f"Step 1: sol {k} \\boxed{{{k}}}", 5) for k in range(params.n)])
        return out


def test_best_and_worst_whole_solutions_form_the_pair():
    problems = [Problem(id="p", question="q", answer="1", source="t")]
    res = run_srlm(problems, SolutionEngine(), PROMPTS, SRLMConfig(n_samples=4, n_judgments=2), progress=False)
    (pair,) = res.pairs
    assert pair.prompt == PROMPTS.solve_prompt("q")
    assert "sol 3" in pair.chosen and "sol 0" in pair.rejected
    assert pair.meta["chosen_score"] == 3 and pair.meta["rejected_score"] == 0
    assert res.traces[0].judge_calls == 8


def test_unparsed_scores_are_counted_and_ties_dropped():
    problems = [Problem(id="p", question="q", answer="1", source="t")]
    eng = SolutionEngine(garbage_for="sol 1")
    res = run_srlm(problems, eng, PROMPTS, SRLMConfig(n_samples=2, n_judgments=1), progress=False)
    # sol 0 scores 0, sol 1 is unparseable: one scored solution is no pair
    assert res.pairs == [] and res.traces[0].no_verdicts == 1 and res.traces[0].ties == 1
    assert res.summary()["unparsed_score_rate"] == 0.5


def test_solutions_cut_at_the_token_cap_are_dropped_and_final_flags_come_from_the_text():
    class Capped(SolutionEngine):
        def generate(self, prompts, params):
            out = super().generate(prompts, params)
            if not prompts[0].startswith("Score 1-5."):  # sol 3 ran out of tokens; sol 0 never wrote an answer
                out = [[Completion("Step 1: sol 0 no answer", 5), out[0][1], out[0][2],
                        Completion("Step 1: sol 3 \\boxed{", 9, "length")]]  # fmt: skip
            return out

    problems = [Problem(id="p", question="q", answer="1", source="t")]
    res = run_srlm(problems, Capped(), PROMPTS, SRLMConfig(n_samples=4, n_judgments=1), progress=False)
    (pair,) = res.pairs
    assert res.traces[0].capped == 1 and res.summary()["capped_solutions"] == 1
    assert "sol 2" in pair.chosen and "sol 0" in pair.rejected  # sol 3 was never scored
    assert pair.meta["chosen_final"] is True and pair.meta["rejected_final"] is False
