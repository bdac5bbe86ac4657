"""Step-wise pairwise LLM-as-a-Judge (paper §3.3, Eq. 2): judge prompts, verdict parsing, wins -> scores.

For candidates s_1..s_w of one step, `plan_pairs` lists the (A, B) position pairs to ask; the engine answers
each with an explanation ending in `[[A]]` or `[[B]]`; `score_candidates` turns verdicts into scores. Identical
candidates are judged once (as one unique candidate) and never against themselves.

Modes (`search.judge_mode`):
  all_ordered  every ordered pair (i, j), i != j: w(w-1) judgments, each unordered pair in both positions (paper)
  one_order    each unordered pair once, positions alternated to spread position bias: w(w-1)/2
  cyclic       each candidate against its next k neighbours in a fixed cycle, positions alternated: w*k
               (k = search.cyclic_k); one batched call like the others, agreement with all_ordered measured
               by `psrlm bench`

Scoring (`search.scoring`):
  wins         score_i = number of judgments that preferred s_i, whichever position it had (default; the only
               sensible reading for one_order and cyclic)
  position_a   Eq. 2 read literally: score_i = sum_j O(s_i, s_j), counting only the judgments with s_i as A
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VERDICT = re.compile(r"\[\[\s*([AaBb])\s*\]\]")
JUDGE_MODES = ("all_ordered", "one_order", "cyclic")
SCORINGS = ("wins", "position_a")


def verdict_tags(text: str) -> list[re.Match]:
    return list(_VERDICT.finditer(text or ""))


def parse_verdict(text: str) -> str | None:
    """The judge output's last `[[A]]` / `[[B]]` ("A" or "B"), or None when it has none. The last one: the paper's
    instruction (Fig. 5) names both tags, and a judge that quotes the format before deciding ends with its
    verdict. Only the judge's own output is parsed, never the prompt."""
    tags = verdict_tags(text)
    return tags[-1].group(1).upper() if tags else None


def unique_candidates(candidates: list[str]) -> tuple[list[str], list[int]]:
    """Distinct candidate texts (whitespace-normalised) and, for every candidate, the index of its unique form."""
    seen: dict[str, int] = {}
    uniques: list[str] = []
    index = []
    for c in candidates:
        key = " ".join(c.split())
        if key not in seen:
            seen[key] = len(uniques)
            uniques.append(c)
        index.append(seen[key])
    return uniques, index


def plan_pairs(w: int, mode: str = "all_ordered", k: int = 2) -> list[tuple[int, int]]:
    """(a, b) index pairs to judge: the candidate at `a` is shown as Step A, at `b` as Step B."""
    if mode == "all_ordered":
        return [(i, j) for i in range(w) for j in range(w) if i != j]
    if mode == "one_order":
        pairs = [(i, j) for i in range(w) for j in range(i + 1, w)]
        return [(i, j) if n % 2 == 0 else (j, i) for n, (i, j) in enumerate(pairs)]
    if mode == "cyclic":
        out, seen = [], set()
        for i in range(w):
            for d in range(1, min(k, w - 1) + 1):
                j = (i + d) % w
                if frozenset((i, j)) in seen:
                    continue
                seen.add(frozenset((i, j)))
                out.append((i, j) if (i + d) % 2 == 0 else (j, i))
        return out
    raise ValueError(f"unknown judge mode {mode!r}; choose one of {JUDGE_MODES}")


@dataclass
class Judgment:
    a: int
    b: int
    verdict: str | None
    text: str = ""
    p_a: float | None = None  # P(Step A is better), when the verdict is read from logits ("soft" scoring)


@dataclass
class Scores:
    scores: list[float]  # per unique candidate
    judgments: list[Judgment] = field(default_factory=list)
    no_verdicts: int = 0
    tie_margin: float = 0.0

    @property
    def tie(self) -> bool:
        """No preference (paper: max score == min score); with soft scores, a spread within `tie_margin`."""
        return max(self.scores) - min(self.scores) <= self.tie_margin

    @property
    def best(self) -> int:
        return max(range(len(self.scores)), key=lambda i: (self.scores[i], -i))

    @property
    def worst(self) -> int:
        return min(range(len(self.scores)), key=lambda i: (self.scores[i], i))


def score_candidates(n: int, judgments: list[Judgment], scoring: str = "wins", tie_margin: float = 0.0) -> Scores:
    """Eq. 2. With `p_a` set, O(s_a, s_b) is the judge's probability instead of a 0/1 verdict."""
    if scoring not in SCORINGS:
        raise ValueError(f"unknown scoring {scoring!r}; choose one of {SCORINGS}")
    scores = [0.0] * n
    missing = 0
    for j in judgments:
        if j.p_a is not None:
            scores[j.a] += j.p_a
            if scoring == "wins":
                scores[j.b] += 1.0 - j.p_a
        elif j.verdict is None:
            missing += 1
        elif j.verdict == "A":
            scores[j.a] += 1
        elif scoring == "wins":
            scores[j.b] += 1
    return Scores(scores, judgments, missing, tie_margin)
