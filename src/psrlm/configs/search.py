"""How preference pairs are made: the `search` section (the method's step search) and `srlm` (the outcome-based
baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from psrlm.configs.checks import Rule
from psrlm.judge import JUDGE_MODES, SCORINGS


@dataclass
class SearchConfig:
    """Step search with self-judging (paper §3.3, Eq. 1-5).

    width: candidate next steps sampled per round (paper w=6).
    temperature / top_p: candidate sampling (paper 0.5 / 0.95).
    max_step_tokens: token cap for one candidate step.
    judge_mode: "all_ordered" (w(w-1) judgments, paper) | "one_order" | "cyclic" (see judge.py).
    cyclic_k: neighbours per candidate in "cyclic" mode.
    scoring: "wins" (judgments won in either position) | "position_a" (Eq. 2 literally).
    verdict: "generate" = the judge writes its explanation and verdict (paper); "logits" = compare
        log p(" [[A]]") and log p(" [[B]]") right after the judge prompt (no explanation, far cheaper; hf engine);
        "soft" = the same, but each judgment adds P(A) / P(B) to the scores instead of 0/1, so position bias
        cancels across the two orders of a pair (see judge.py).
    tie_margin: scores within this spread count as a tie (paper: exactly equal = 0; useful with "soft").
    judge_temperature: 0 = greedy verdicts.
    judge_max_tokens: token cap for one judgment (explanation + verdict).
    max_steps: a solution stops after this many steps even without an answer.
    max_rounds: cap on expand-and-judge rounds per problem, rollbacks included (paper: 20 iterations).
    max_active: problems searched together; their generations and judgments share engine calls.
    seed: sampling seed (each round derives its own).
    judge: "self" (the method: the model judges its own candidates) or "oracle" (science only, arith only: the
        step oracle compares two candidates: a right step beats a wrong one, two right or two wrong tie). Oracle
        runs are labelled as such in manifests and reports and are never a default.
    judge_flip: with judge=oracle, each decided verdict is flipped with this probability (seeded), so the judge's
        accuracy on pairs with exactly one right step is 1 - judge_flip.
    oracle_ties: with judge=oracle, what two right (or two wrong) steps get: "tie" (no preference; the search's
        rollback rule then discards the previous step when every candidate is right), "coin" (a seeded fair coin:
        a judge that always answers, as a model judge does) or "accept" (as "tie", except that a round whose
        candidates are all right accepts one with no pair, as a round of identical candidates does: a perfect
        judge knows nothing is wrong there. Measured: with "tie", 447 of 600 problems hit max_rounds and no pair
        came from step 5 on, so the upper bound never taught the later steps where most solutions fail).
    pairs_per_round: which preference pairs a decided round makes: "best_worst" (the paper: the best-scored against
        the worst-scored candidate) or "all" (every two candidates whose scores differ by more than tie_margin, the
        better-scored one chosen: with the oracle judge, every right step against every wrong one; with the model's
        own judge, every ranked pair of its scores).
    ties: what a round does whose judged candidates all score the same: "rollback" (the paper's training search:
        the previous step and its pair are discarded and the search resumes one step earlier) or "accept" (the step
        is taken anyway, with no pair: among the equal scores the candidate sampled most often, then the first
        drawn; what test-time search does, see iterate.eval_tts_rules).
    """

    width: int = 6
    temperature: float = 0.5
    top_p: float = 0.95
    max_step_tokens: int = 64
    judge_mode: str = "all_ordered"
    cyclic_k: int = 2
    scoring: str = "wins"
    verdict: str = "generate"
    tie_margin: float = 0.0
    judge_temperature: float = 0.0
    judge_max_tokens: int = 48
    max_steps: int = 16
    max_rounds: int = 20
    max_active: int = 64
    seed: int = 0
    judge: str = "self"
    judge_flip: float = 0.0
    oracle_ties: str = "tie"
    pairs_per_round: str = "best_worst"
    ties: str = "rollback"

    def rules(self) -> list[Rule]:
        """Its own checks; the judge's domain and the engine its verdicts need: configs/rules.py."""
        return [
            ("width", self.width >= 2, "must be >= 2: a pair needs two candidates"),
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("max_step_tokens", self.max_step_tokens >= 1, "must be >= 1"),
            ("judge_mode", self.judge_mode in JUDGE_MODES, f"choose one of {', '.join(JUDGE_MODES)}"),
            ("cyclic_k", self.cyclic_k >= 1, "must be >= 1"),
            ("scoring", self.scoring in SCORINGS, f"choose one of {', '.join(SCORINGS)}"),
            ("verdict", self.verdict in ("generate", "logits", "soft"), "choose generate, logits or soft"),
            ("tie_margin", self.tie_margin >= 0, "must be >= 0"),
            ("judge_temperature", self.judge_temperature >= 0, "must be >= 0"),
            ("judge_max_tokens", self.judge_max_tokens >= 1, "must be >= 1"),
            ("max_steps", self.max_steps >= 1, "must be >= 1"),
            ("max_rounds", self.max_rounds >= 1, "must be >= 1"),
            ("max_active", self.max_active >= 1, "must be >= 1"),
            ("judge", self.judge in ("self", "oracle"), "choose self (the method) or oracle (science runs only)"),
            ("judge_flip", 0 <= self.judge_flip <= 1, "must be in [0, 1]"),
            ("oracle_ties", self.oracle_ties in ("tie", "coin", "accept"), "choose tie, coin or accept"),
            ("pairs_per_round", self.pairs_per_round in ("best_worst", "all"),
             "choose best_worst (the paper) or all"),
            ("ties", self.ties in ("rollback", "accept"),
             "choose rollback (the paper's training search) or accept"),
            ("judge_flip", self.judge_flip == 0 or self.judge == "oracle",
             "flips the oracle's verdicts: set search.judge=oracle"),
        ]  # fmt: skip


@dataclass
class SRLMConfig:
    """The outcome-based baseline (Yuan et al., 2024; srlm.py): whole solutions scored 0-5 by the model.

    n_samples: whole solutions sampled per problem (Yuan et al.: 4).
    temperature / top_p: solution sampling.
    max_solution_tokens: token cap for one solution.
    n_judgments: scoring samples per solution, averaged (Yuan et al.: 3).
    judge_temperature: sampling temperature of the scoring answers; applies when n_judgments > 1.
    judge_max_tokens: token cap for one scoring answer (justification + "Score: X").
    max_active: problems processed together in one engine call.
    seed: sampling seed.
    judge: "self" (the baseline: the model scores its solutions) or "oracle" (science only, arith only: a solution
        scores 5 when its final answer is right, else 0, so the pairs are right-vs-wrong whole solutions: the
        outcome-level control of the frontier experiment). Labelled as such in every manifest it makes.
    """

    n_samples: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_solution_tokens: int = 256
    n_judgments: int = 3
    judge_temperature: float = 0.7
    judge_max_tokens: int = 64
    max_active: int = 64
    seed: int = 0
    judge: str = "self"

    def rules(self) -> list[Rule]:
        """Its own checks; the oracle judge's domain: configs/rules.py."""
        return [
            ("n_samples", self.n_samples >= 2, "must be >= 2: a pair needs two solutions"),
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("max_solution_tokens", self.max_solution_tokens >= 1, "must be >= 1"),
            ("n_judgments", self.n_judgments >= 1, "must be >= 1"),
            ("judge_temperature", self.judge_temperature >= 0, "must be >= 0"),
            ("judge_max_tokens", self.judge_max_tokens >= 1, "must be >= 1"),
            ("max_active", self.max_active >= 1, "must be >= 1"),
            ("judge", self.judge in ("self", "oracle"), "choose self (the baseline) or oracle (science runs only)"),
        ]
