"""Scripted fake engines for testing the search glue (never a stand-in for a real model elsewhere)."""

from __future__ import annotations

import re

from psrlm.engines.base import Completion, EngineStats, GenParams


class ScriptedEngine:
    """`step_fn(question, prev_steps, params) -> list of n step texts`; `judge_fn(step_a, step_b) -> judge text`.

    It parses the compact prompts back into their parts, so the search under test really builds them.
    """

    def __init__(self, step_fn, judge_fn, fail_after_calls: int | None = None, seeded: bool = False):
        self.step_fn, self.judge_fn = step_fn, judge_fn
        self.seeded = seeded  # step_fn(question, prev_steps, params, seed of the prompt's row)
        self.stats = EngineStats()
        self.fail_after_calls = fail_after_calls
        self.calls: list[tuple[str, int]] = []  # (kind, number of prompts)

    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        if self.fail_after_calls is not None and len(self.calls) >= self.fail_after_calls:
            raise KeyboardInterrupt("simulated kill")
        out = []
        judging = prompts and prompts[0].startswith("Judge.")
        self.calls.append(("judge" if judging else "step", len(prompts)))
        for i, p in enumerate(prompts):
            if judging:
                a = re.search(r"\nA: (.*)\nB: ", p).group(1)
                b = re.search(r"\nB: (.*)\nBetter:", p).group(1)
                out.append([Completion(self.judge_fn(a, b), 5)])
            else:
                q = re.search(r"^Q: (.*)\nA:\n", p).group(1)
                prev = re.findall(r"Step \d+: (.*)", p)
                texts = (
                    self.step_fn(q, prev, params, params.row_seed(i)) if self.seeded else self.step_fn(q, prev, params)
                )
                assert len(texts) == params.n
                out.append([Completion(" " + t, 3) for t in texts])
        self.stats.calls += 1
        return out


def prefer_higher_quality(a: str, b: str) -> str:
    """Judge: the step with the larger 'qN' tag wins; equal tags -> always A (position bias)."""
    qa, qb = (int(re.search(r"q(\d+)", s).group(1)) for s in (a, b))
    return "[[A]]" if qa >= qb else "[[B]]"
