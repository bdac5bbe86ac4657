"""The self-rewarding loop and how it is measured: the `iterate` and `grading` sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from psrlm.configs.checks import Rule, at_least


@dataclass
class IterateConfig:
    """The self-rewarding loop (iterate.py): M0 -> M1 -> PPD(M1) -> M2 -> ... for each method.

    methods: which loops to run: "psrlm" (step-wise, the paper) and/or "srlm" (outcome-based baseline).
    questions: fresh questions per iteration, M2, M3, ... (paper: 400, 800, 1200 for M2-M4). Both methods get
        the same questions.
    m0_path: a prebuilt base model to use as M0 (its psrlm_build.json must match this config); empty = pretrain.
    srlm_eft: solution-scoring examples for the SRLM baseline's M1 (its EFT); 0 = as many as data.eft_train.
    eval_limit: problems per held-out split in evaluation (0 = all); eval_eft: EFT test items (0 = all).
    eval_max_tokens: token cap for a greedy solution in evaluation.
    eval_benchmarks: math benchmarks evaluated for every model besides the arith splits, read from
        `paths.data_dir` (gsm8k, math, math500, gaokao2023en, olympiadbench, aime24, amc23; "paper" = all but
        math500). Empty for the tiny model, which was never taught this text.
    eval_benchmark_limit: problems per math benchmark (0 = all).
    m0_three_shot: what M0 (a base model that never saw the step format) is asked 3-shot: "judge" (the EFT judge
        items, three EFT-train items prepended: the paper marks only M0's judge as 3-shot) and/or "benchmarks" (the
        first three IFT solutions prepended to every benchmark problem). Later models are always asked zero-shot.
        Every evaluation records which was used, and the report marks 3-shot numbers.
    eval_tts: problems per benchmark solved with test-time search vs greedy (Tables 5/9) for PSRLM's M1 and last
        model; 0 = skip, -1 = every problem.
    eval_tts_benchmark: where those problems come from: a benchmark, a comma-separated list or a group (paper, all);
        empty = arith_test (arith) or every benchmark of eval_benchmarks (files: the paper's six).
    eval_tts_rules: "inference" = the step search as the paper states it for test time (w, T, top-p and the pairwise
        judge of `search.*`), without the training search's rules it does not state for inference: a round of
        equal scores takes its step anyway (search.ties=accept: the most-sampled of the equal candidates, no
        rollback) and a problem ends at an answer or after search.max_steps steps (rounds are capped at 2 x
        max_steps, which only rounds without a usable candidate can reach; not search.max_rounds). "training" = the
        training search unchanged (rollback on ties, search.max_rounds).
    eval_appendix_b: EFT test items for the Appendix B comparison (psrlm-M1 judging step pairs vs srlm-M1
        scoring solutions); 0 = skip.
    seed: offsets the seeds of every training and sampling stage (for repeated runs); data stays the same.
    schedule: where each iteration's questions come from. "fixed" = the next `questions[i]` of the fresh question
        pool (the paper). "frontier" (arith, needs `arith.levels`) = before each iteration the current model solves
        every level's probe greedily, and the questions are the next unused ones of the easiest level whose pass
        rate is at most frontier_band's top: training at the edge of what it solves (Lee et al., 2025); that level's
        pass rate must reach the band's bottom, else the run stops naming the rates. The manifest records the level
        and the probe's pass rates.
    frontier_band: [low, high] pass rates of the level an iteration searches (schedule: frontier).
    oracle_iterations: a science arm beside the method (arith; 0 = off): a chain oracle-M2..oracle-M{n+1} from
        psrlm-M1, each iteration searching exactly the questions of the method's iteration of the same number with
        the step oracle as a perfect judge (search.judge=oracle, judge_flip 0, oracle_ties accept; what `psrlm
        frontier`'s oracle arm runs; schedule frontier: the level the method's parent was probed at), trained with
        step-wise DPO like the method and evaluated like every model: what the training can do with right pairs,
        beside what the model's own judge gives it. Labelled ORACLE everywhere; at most one per block of
        `questions`.
    """

    methods: list[str] = field(default_factory=lambda: ["psrlm", "srlm"])
    questions: list[int] = field(default_factory=lambda: [400, 800, 1200])
    m0_path: str = ""
    srlm_eft: int = 0
    eval_limit: int = 0
    eval_eft: int = 0
    eval_max_tokens: int = 320
    eval_benchmarks: list[str] = field(default_factory=list)
    eval_benchmark_limit: int = 0
    m0_three_shot: list[str] = field(default_factory=lambda: ["judge"])
    eval_tts: int = 0
    eval_tts_benchmark: str = ""
    eval_tts_rules: str = "inference"
    eval_appendix_b: int = 0
    seed: int = 0
    schedule: str = "fixed"
    frontier_band: list[float] = field(default_factory=lambda: [0.2, 0.7])
    oracle_iterations: int = 0

    def rules(self) -> list[Rule]:
        """Its own checks; what a files run or the frontier schedule needs of `data` and `arith`: configs/rules.py."""
        return [
            ("methods", bool(self.methods) and set(self.methods) <= {"psrlm", "srlm"}, "must list psrlm and/or srlm"),
            ("questions", bool(self.questions) and all(n >= 1 for n in self.questions),
             "must list one count >= 1 per iteration"),
            *at_least(self, 0, "srlm_eft eval_limit eval_eft eval_benchmark_limit eval_appendix_b"),
            ("eval_tts", self.eval_tts >= -1, "must be >= 0 (0 = skip), or -1 for every problem"),
            ("eval_tts_rules", self.eval_tts_rules in ("inference", "training"), "choose inference or training"),
            ("m0_three_shot", set(self.m0_three_shot) <= {"judge", "benchmarks"},
             "may list judge and/or benchmarks (empty: M0 zero-shot everywhere)"),
            ("eval_max_tokens", self.eval_max_tokens >= 1, "must be >= 1"),
            ("eval_benchmarks", _benchmarks_ok(self.eval_benchmarks), _benchmarks_hint()),
            ("eval_tts_benchmark", _benchmarks_ok(self.eval_tts_benchmark), _benchmarks_hint()),
            ("schedule", self.schedule in ("fixed", "frontier"), "choose fixed (the paper) or frontier"),
            ("frontier_band",
             len(self.frontier_band) == 2 and 0 <= self.frontier_band[0] <= self.frontier_band[1] <= 1,
             "must be [low, high] with 0 <= low <= high <= 1"),
            ("oracle_iterations", 0 <= self.oracle_iterations <= len(self.questions),
             f"must be 0 (off) .. {len(self.questions)} (one per block of iterate.questions)"),
        ]  # fmt: skip


def _benchmarks_ok(names: list[str] | str) -> bool:
    from psrlm.benchmark_names import BenchmarkError, parse_benchmarks

    try:
        parse_benchmarks(names)
    except BenchmarkError:
        return False
    return True


def _benchmarks_hint() -> str:
    from psrlm.benchmark_names import ALL_BENCHMARKS

    return f"names one of {', '.join(ALL_BENCHMARKS)}, or paper / all / arith"


@dataclass
class GradingConfig:
    """How answers are graded (grading.py: Qwen2.5-Math answer parsing + math-verify).

    include_percentage: Qwen2.5-Math's rule that a plain-number answer of 100x or 1/100x the gold also counts as
        right. It is meant for percentages (gold 25 vs "25%" written as 0.25), but it also passes wrong answers
        (gold 25, answer 2500; gold 1, answer "$100"). true: numbers comparable with the paper's (which used
        Qwen's evaluation); false: strict grading. Every evaluation summary records which was used.
    """

    include_percentage: bool = True

    def rules(self) -> list[Rule]:
        return []  # include_percentage is a bool, which the loader's type check already holds it to
