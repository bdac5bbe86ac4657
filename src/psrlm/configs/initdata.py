"""Initialisation data for real models: the `initdata` section (`psrlm data ift` / `psrlm data eft`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from psrlm.configs.checks import Rule, at_least
from psrlm.configs.model import EngineConfig
from psrlm.configs.train import TrainConfig


@dataclass
class InitDataConfig:
    """Initialisation data for real models (initdata/): teacher segmentation (IFT) and the PRM + MCTS + teacher
    pipeline (EFT), paper §3.2 and §4 "Datasets". `psrlm data ift` / `psrlm data eft`.

    teacher: who segments and judges: "engine" = `teacher_engine` (an OpenAI-compatible server, or an HF model
        directory with teacher_engine.kind=hf); "oracle" = the arith oracle (label_step + a templated explanation),
        clearly labelled in every record it writes; arith only, EFT only.
    teacher_engine: the engine settings of the teacher (same keys as `engine:`); its model is `teacher_model`.
    teacher_model: model name the teacher server knows (openai), or the teacher's model directory (hf).
    cache_dir: teacher answers on disk, keyed by model + prompt + sampling settings; empty = <run_dir>/initdata/cache.
    chunk_size: teacher requests sent per batch (results are written after each batch, so a kill loses at most one).

    ift_source: "math" (MATH train, fields problem/solution/answer), "jsonl" (any JSONL, fields below) or "gsm8k"
        (one step per line, no teacher).
    ift_input: input file; empty = the shared MATH (or GSM8K) train file under paths.data_dir.
    question_field / solution_field / answer_field / id_field: column names for ift_source=jsonl (answer_field and
        id_field may be absent from a row: the answer is then the last \\boxed{}, the id the line number).
    ift_limit: first N rows only (0 = all). With data.split_ift the rows are the split's IFT block (the first N of
        it with ift_limit); a row whose question is in an evaluated test set is left out and counted either way.
    segment_max_tokens: token cap for one segmentation answer.
    segment_retries: extra attempts for a rejected segmentation, sampled at `segment_retry_temperature` with a
        fresh seed (0 = reject at once).

    prm_format: "token_classification" (TRL PRMTrainer format: a label per step at the step separator) or
        "next_token" (a causal LM that writes `prm_good`/`prm_bad` after `prm_step_tag`, OpenR / Math-Shepherd).
    prm_path: a trained PRM directory; empty = train a tiny token-classification PRM on arith oracle step labels.
    prm_step_separator: text after every step (token_classification). prm_step_tag / prm_good / prm_bad: the
        step tag and the two label tokens (next_token).
    prm_problems: arith problems whose steps (gold, realistic corruptions, policy samples) are labelled by the
        oracle to train the tiny PRM; prm_samples: policy samples per problem among them.
    prm_train: training settings of the tiny PRM.
    prm_device: where the PRM scores: "auto" (CUDA when present), "cpu", "cuda", "cuda:7", ... With policy servers
        psrlm starts (engine.kind vllm / sglang) on their own GPUs, the PRM needs a GPU none of them takes: serve
        the policy on fewer replicas (policy_servers) and put the PRM on a GPU after theirs.
    policy_servers: replicas serving the MCTS policy in `psrlm data eft` (0 = engine.servers).

    policy_path: the MCTS policy model; empty = on arith, M0 fine-tuned on the IFT data (cached in the run).
    mcts_problems: problems searched (arith: from the EFT-train block, disjoint from the oracle EFT test set; a file
        of eft_problems: a sample seeded by `seed`, across the whole file). With data.split_eft the EFT block of
        the split is searched whole instead.
    eft_problems: where MCTS takes its problems: empty = the arith pool (oracle measurements on), or with
        data.source=files and data.split_eft the split's EFT block; "math" = MATH train under paths.data_dir; any
        other value = a JSONL read with question_field / answer_field / id_field. Questions of an evaluated test
        set are left out and counted.
        Outside arith there is no oracle, so the PRM accuracy and pair precision are not measured, and
        policy_path and prm_path must be set.
    iterations: MCTS iterations per problem (paper 100). simulation_depth: rollout steps after a new leaf
        (paper 3). expand_width: candidate steps sampled when a node is expanded. temperature / top_p: sampling
        of expansions and rollouts (paper 0.7 / 0.95). uct_c: exploration constant of UCT. max_depth: steps of a
        solution at most. max_step_tokens: token cap for one step. max_active: problems whose trees advance
        together (their expansions and rollouts share engine calls).
    pairs_per_problem: (best, worst) sibling pairs kept per tree, largest PRM margin first; min_margin: the
        smallest P("+") gap between best and worst that makes a pair.
    judge_max_tokens: token cap for one teacher judgment (explanation + verdict).
    eft_test: held-out EFT examples, split by problem (paper: 500 of 4,679).
    seed: sampling and split seed.
    """

    teacher: str = "engine"
    teacher_engine: EngineConfig = field(default_factory=lambda: EngineConfig(kind="openai"))
    teacher_model: str = ""
    cache_dir: str = ""
    chunk_size: int = 64
    ift_source: str = "math"
    ift_input: str = ""
    question_field: str = "question"
    solution_field: str = "solution"
    answer_field: str = "answer"
    id_field: str = "id"
    ift_limit: int = 0
    segment_max_tokens: int = 2048
    segment_retries: int = 1
    segment_retry_temperature: float = 0.7
    prm_format: str = "token_classification"
    prm_path: str = ""
    prm_step_separator: str = "\n"
    prm_step_tag: str = " ки"
    prm_good: str = "+"
    prm_bad: str = "-"
    prm_problems: int = 400
    prm_samples: int = 4
    prm_train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, lr=5e-4, batch_size=16))
    prm_device: str = "auto"
    policy_servers: int = 0
    policy_path: str = ""
    mcts_problems: int = 200
    eft_problems: str = ""
    iterations: int = 100
    simulation_depth: int = 3
    expand_width: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    uct_c: float = 1.0
    max_depth: int = 12
    max_step_tokens: int = 64
    max_active: int = 64
    pairs_per_problem: int = 2
    min_margin: float = 0.2
    judge_max_tokens: int = 256
    eft_test: int = 500
    seed: int = 0

    def rules(self) -> list[Rule]:
        """Its own keys; `teacher_engine` and `prm_train` are checked as sections of their own (configs/rules.py)."""
        return [
            ("teacher", self.teacher in ("engine", "oracle"), "choose engine or oracle"),
            ("chunk_size", self.chunk_size >= 1, "must be >= 1"),
            ("ift_source", self.ift_source in ("math", "jsonl", "gsm8k"), "choose math, jsonl or gsm8k"),
            ("prm_format", self.prm_format in ("token_classification", "next_token"),
             "choose token_classification or next_token"),
            *at_least(self, 0, "ift_limit segment_retries prm_problems prm_samples mcts_problems simulation_depth "
                               "min_margin eft_test uct_c policy_servers"),
            *at_least(self, 1, "segment_max_tokens iterations expand_width max_depth max_step_tokens max_active "
                               "pairs_per_problem judge_max_tokens"),
            ("segment_retry_temperature", self.segment_retry_temperature >= 0, "must be >= 0"),
            ("temperature", self.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < self.top_p <= 1, "must be in (0, 1]"),
            ("prm_device", re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.prm_device) is not None,
             "choose auto, cpu, cuda or cuda:N"),
        ]  # fmt: skip
