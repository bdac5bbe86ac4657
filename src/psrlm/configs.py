"""All options, one dataclass per stage.

    psrlm <stage> --config configs/demo.yaml --set search.width=4 --set sft.epochs=2

A recipe is YAML whose top-level keys are the sections below; it sets only what differs from the defaults.
`--set section.key=value` overrides a recipe value (the value is read as YAML, so `4`, `0.5`, `true`, `[a, b]`
work). A key that nothing reads is an error naming the key and the file it came from: a typo in a recipe must
never silently run the default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("psrlm.configs")


class ConfigError(ValueError):
    """A recipe or override that cannot be applied; the message names the key and its source."""


@dataclass
class PathsConfig:
    """Where data is read from and where a run writes.

    data_dir: folder holding `benchmarks/` and `train/` (the shared data). Empty means `$PSRLM_DATA`, else
        `../shared/data` next to the repository.
    run_dir: every artifact of a run (problems, models, pairs, manifests, report) goes under this folder.
    """

    data_dir: str = ""
    run_dir: str = "runs/demo"

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if os.environ.get("PSRLM_DATA"):
            return Path(os.environ["PSRLM_DATA"]).expanduser()
        return REPO_ROOT.parent / "shared" / "data"


@dataclass
class ArithConfig:
    """The embedded arithmetic word-problem domain (tasks/arith.py).

    seed: master seed; every split is derived from it deterministically.
    n_train: problems in the training pool (IFT gold solutions, EFT items, fresh questions per iteration).
    n_test: problems in each held-out test split.
    min_ops / max_ops: operations per in-distribution problem (each op is one or two solution steps).
    max_number: largest number written in an in-distribution problem.
    hard_min_ops / hard_max_ops / hard_max_number: the same for the harder held-out split.
    n_pretrain: raw problems (half in-distribution, half hard-style) whose free-form solutions pre-train the base
        model M0; disjoint from every split by canonical hash.
    pretrain_step_share: share of those problems whose worked solution is written as numbered "Step n:" lines
        instead of prose (0 = prose only). Measured: a model pre-trained on prose alone computes 0.93 of its
        additions right in prose and 0.19 in the step layout the loop uses, and IFT does not restore them; real
        math corpora carry both layouts.
    levels: a difficulty ladder above the in-distribution level for `iterate.schedule: frontier`, easiest first,
        each [min_ops, max_ops, max_number] (e.g. [[3, 5, 30], [4, 6, 40], [5, 7, 50]]); level 0 is the
        in-distribution pool (data/fresh_questions.jsonl). Each level above it gets a pool of `level_pool`
        questions (data/arith_level<k>.jsonl) and every level a probe of `level_probe` problems
        (data/arith_level<k>_probe.jsonl) that measures the current model's pass rate; all disjoint from the training
        pool, M0's pre-training stream and every held-out split by canonical hash. Empty = no ladder.
    """

    seed: int = 0
    n_train: int = 4000
    n_test: int = 200
    min_ops: int = 2
    max_ops: int = 4
    max_number: int = 20
    hard_min_ops: int = 5
    hard_max_ops: int = 8
    hard_max_number: int = 60
    n_pretrain: int = 20000
    pretrain_step_share: float = 0.0
    levels: list[list[int]] = field(default_factory=list)
    level_pool: int = 2000
    level_probe: int = 100


@dataclass
class DataConfig:
    """What a run trains and searches on.

    source: "arith" = the embedded domain, generated from `arith:` and the four counts below; "files" = a real run
        on the files named below (what `psrlm data ift|eft` write, or your own), with `model.path` as M0.

    arith only:
    ift_problems: arith training-pool problems whose gold solutions become IFT examples.
    eft_train: EFT (judge) examples for training; eft_test: held-out EFT examples for judge accuracy
        (the paper holds out 500).
    gsm8k_ift: GSM8K train solutions added to IFT (0 = none; -1 = all). They need no teacher: one line per step.
    eft_source: "synthetic" = the gold next step against the same step with a made-up error (arithmetic slip, wrong
        operand, ...); "policy" = the paper's way: candidate steps sampled from the IFT policy (M0 after IFT) at the
        search temperature, one right and one wrong per item by the oracle (standing in for PRM + teacher), so the
        errors are the ones the model makes (initdata/eft.py: build_policy_eft).
    eft_policy_width: candidates sampled per policy-EFT round.

    files only (a path given here must exist; relative paths are read from the current folder):
    ift_files: StepSolution JSONL files with meta.question (`psrlm data ift` writes
        <run>/initdata/ift_segmented.jsonl, or ift_gsm8k.jsonl).
    eft_train_file / eft_test_file: JudgeExample JSONL (`psrlm data eft` writes <run>/initdata/eft_train.jsonl and
        eft_test.jsonl); the test file gives the judge accuracy of Table 3 and the Appendix B items.
    srlm_eft_file: ScoreExample JSONL (question, response, explanation, score 0-5) that teaches the SRLM baseline's
        M1 to score solutions; needed when iterate.methods has srlm.
    questions: the pool of fresh questions the iterations draw from: "math" (MATH train under paths.data_dir),
        "gsm8k" (GSM8K train), or a JSONL path holding Problem records or rows with question_field / answer_field
        (/ id_field, else the line number). Overlaps with the evaluated test sets and with the IFT/EFT questions
        are removed and counted (initdata/pool.py).
    question_field / answer_field / id_field: column names of such a JSONL (NuminaMath-style: problem / answer).
    seed: shuffles the pool before `iterate.questions` cuts it into disjoint blocks (and draws the split below).
    split_ift / split_eft: the paper's data flow from one source (initdata/pool.py: split_source). `data.questions`
        loses its test-set overlaps and repeats and is shuffled with `seed`; its first `split_ift` questions are the
        rows `psrlm data ift` segments, the next `split_eft` the problems `psrlm data eft` searches, and only the
        rest is the iterations' pool: the three are disjoint by construction, and a row the teacher fails to
        segment is never returned to the pool. 0 = no block (IFT / EFT from another file; the pool is the whole
        source less the questions of the IFT / EFT files). `psrlm plan` and `psrlm iterate --dry-run` print the
        sizes, and a source too small for split_ift + split_eft + sum(iterate.questions) stops with one line.
    """

    source: str = "arith"
    ift_problems: int = 2000
    eft_train: int = 2000
    eft_test: int = 500
    gsm8k_ift: int = 0
    eft_source: str = "synthetic"
    eft_policy_width: int = 6
    ift_files: list[str] = field(default_factory=list)
    eft_train_file: str = ""
    eft_test_file: str = ""
    srlm_eft_file: str = ""
    questions: str = "math"
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str = "id"
    seed: int = 0
    split_ift: int = 0
    split_eft: int = 0


@dataclass
class ModelConfig:
    """The model. `path` set: any Hugging Face checkpoint directory. Empty: build the tiny from-scratch model.

    vocab_size: BPE vocabulary of the trained tokenizer (digits are always single tokens).
    hidden_size / num_layers / num_heads / intermediate_size: the tiny Llama-class model (~3M at 256/4).
    max_position: context length, and the tokenizer's model_max_length.
    seed: weight initialisation seed.
    """

    path: str = ""
    vocab_size: int = 1000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    max_position: int = 1024
    seed: int = 0


@dataclass
class PromptConfig:
    """Prompt templates (prompts.py).

    variant: "paper" uses the paper's Figure 3/4/5 wording; "compact" is a short form for the tiny model, whose
        cost on CPU is dominated by judge-prompt length.
    verdict_first: EFT trains the judge to write `[[A]]`/`[[B]]` before its explanation instead of after it (the
        paper's order). search.verdict soft / logits read the tag right after the judge prompt, a position the
        paper's order never trains (there the explanation's first word is trained): measured on the demo's M1,
        soft accuracy on 200 held-out EFT items 0.47 with the paper's order, 0.62 with the tag first (docs/results.md).
        Generated verdicts (the paper's search) want false.
    """

    variant: str = "paper"
    verdict_first: bool = False


LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class EngineConfig:
    """Text generation (engines/).

    kind: "hf" = in-process transformers; "openai" = an OpenAI-compatible server already running (base_urls);
        "vllm" / "sglang" / "transformers" = servers psrlm starts on each checkpoint that needs generation and stops
        after (engines/servers.py), then talks to like "openai".
    device: "auto" (CUDA when present, else CPU), "cpu", "cuda", "cuda:1", ...   (hf)
    dtype: "auto" = bf16 on CUDA, and on a CPU only where it has native bf16 (AVX512-BF16 / AMX), else fp32
        (emulated bf16 is ~30x slower; hardware.py); or "float32", "bfloat16", "float16".   (hf)
    batch_size: sequences per forward batch.   (hf)
    static_cache: pre-allocated KV cache: "auto" = on for CPU (measured faster or equal there), off on CUDA;
        or true / false.   (hf)
    base_urls: one or more server URLs ending in /v1; requests are spread over them.   (openai)
    model_name: the model name the server knows.   (openai)
    api_key_env: environment variable holding the API key (never logged).   (openai)
    concurrency / timeout_s / max_retries: in-flight requests, per-request timeout, retries on 429/5xx.  (openai)
    extra_body: extra JSON fields sent with every request (e.g. {"generation_config": "..."}).   (openai)
    api: "completions" (raw prompt in, text out: what the search needs) or "chat" (/v1/chat/completions: the prompt
        as one user message, the server applies the model's chat template; for a chat model as the IFT/EFT teacher
        or the Appendix B judge).   (openai)
    reasoning: the model is one of OpenAI's reasoning models (o1, o3, o4-mini, ...; the paper's teacher is o1): its
        chat requests carry `max_completion_tokens` (which counts the hidden reasoning tokens too) instead of
        `max_tokens`, and no `temperature`, `top_p`, `stop` or `seed`, which those models reject with a 400 (OpenAI
        API reference, chat/create: max_tokens "is not compatible with o1 series models"); stop strings are cut
        on the client. Needs kind=openai and api=chat.   (openai)
    server_cmd: the command of one server replica, with slots {model} {served_name} {port} {tensor_parallel}
        {max_model_len} {dtype} {python} {device}; empty = the kind's default (vLLM: `vllm serve ...` with prefix
        caching; put the path of vLLM's own virtualenv here).   (vllm, sglang, transformers)
    servers: replicas (data parallel); port: the first port tried (each replica takes the next free one);
    tensor_parallel: GPUs per replica (must divide the model's attention heads); assign_gpus: give replica i
        CUDA_VISIBLE_DEVICES i*tp..(i+1)*tp-1; max_model_len: the server's context;
    server_timeout_s: how long a server may take to become ready; server_restarts: restarts of a replica that dies
        mid-stage before the stage fails.   (vllm, sglang, transformers)
    server_hosts: the hosts replicas run on, replica i on host i mod len (empty = this machine, 127.0.0.1). A
        replica on another host needs a server_cmd that starts it there, with slot {host} (e.g. `srun --nodes=1
        --ntasks=1 --overlap -w {host} vllm serve ... --host 0.0.0.0`: scripts/slurm/psrlm-iterate.slurm); the
        driver reaches it at http://{host}:{port}.   (vllm, sglang)
    max_failed_share: requests that fail after their retries fail their problem (counted, retried on rerun); a
        search or SRLM stage in which more than this share of problems failed stops the iteration.
    """

    kind: str = "hf"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 64
    static_cache: bool | str = "auto"
    base_urls: list[str] = field(default_factory=list)
    model_name: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 5
    extra_body: dict = field(default_factory=dict)
    api: str = "completions"
    reasoning: bool = False
    server_cmd: str = ""
    servers: int = 1
    port: int = 8100
    tensor_parallel: int = 1
    assign_gpus: bool = True
    max_model_len: int = 4096
    server_timeout_s: float = 900.0
    server_restarts: int = 2
    server_hosts: list[str] = field(default_factory=list)
    max_failed_share: float = 0.05


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


@dataclass
class TrainConfig:
    """One training stage through TRL (train.py). Used as `pretrain` (M0 on raw domain text), `sft` (M0 -> M1 on
    EFT + IFT, completion-only loss), `dpo` (step-wise DPO, M_n -> M_n+1) and `rft` (science control of `psrlm
    frontier`: SFT of M_n on its own search's right complete solutions, rejection-sampling fine-tuning).

    epochs / lr / batch_size / grad_accum / warmup_steps / weight_decay / lr_scheduler: the usual.
        Paper (7B): SFT 3 epochs, lr 1e-6, batch 32; DPO 1 epoch, lr 5e-7. A model trained from scratch needs far
        larger learning rates (the demo recipe sets them).
    max_length: token cap per example; 0 = set from the data (reported: how many examples exceed the model limit).
    beta: DPO's beta (paper: unspecified; TRL default 0.1).   (dpo)
    precompute_ref_log_probs: compute the reference log-probs once up front (faster on CPU).   (dpo)
    nll_weight: weight of an NLL term on the chosen step added to the DPO loss (RPO, Pang et al. 2024, iterative
        reasoning preference optimisation; TRL loss_type ["sigmoid", "sft"]); 0 = plain DPO, as the paper.   (dpo)
    lora: train a LoRA adapter (peft) and merge it at the end; lora_r / lora_alpha: its rank and scale.
    bf16: bf16 autocast: "auto" = on with CUDA, and on a CPU only where it has native bf16 (else fp32: emulated
        bf16 is ~30x slower); true / false force it. Whatever it says, the weights being trained are fp32 (master
        weights), whatever dtype the checkpoint was saved in.
    save_dtype: the trained model's saved dtype: "source" (as the checkpoint it started from), "float32" or
        "bfloat16". train_log.json reports the share of sampled weights that moved and the share still moved once
        rounded to this dtype (small updates round away in bf16; a warning says when most did).
    gradient_checkpointing: recompute activations in the backward pass (memory for compute; on in the paper recipes,
        off for tiny models where it costs more than it saves).
    padding_free: SFT / pre-training batches as one flattened sequence with per-example positions instead of padding
        every example to the batch's longest (TRL's padding_free; the same examples per step and the same loss). It pays
        only with a variable-length attention kernel (flash_attention_2 on a GPU): with PyTorch's SDPA attention, as on
        a CPU, the packed sequence is attended as a whole under a block mask, and the demo's M1 SFT ran 2.0x slower
        although 37 % of its padded token positions were padding. Refused when an example needs truncating (TRL does
        not truncate padding-free batches).   (pretrain, sft)
    sampler: the order examples are batched in: "random" (TRL's default), or "group_by_length" (transformers'
        LengthGroupedSampler: random mega-batches of 50 batches, each sorted by length, so a batch holds examples of
        about one length and little padding; measured on the demo's M1 SFT rows: 37 % of padded token positions
        were padding at random, 0.9 % grouped). A different data order, so a different model.   (pretrain, sft)
    save_steps: write a trainer checkpoint every N optimizer steps (0 = none); a killed job rerun with the same
        settings resumes from the last one (`<out>.trainer/<fingerprint>/checkpoint-N`).
    logging_steps: loss logging interval. seed: data order and init.
    """

    epochs: float = 1.0
    lr: float = 1e-5
    batch_size: int = 16
    grad_accum: int = 1
    warmup_steps: int = 0
    weight_decay: float = 0.0
    lr_scheduler: str = "linear"
    max_length: int = 0
    beta: float = 0.1
    precompute_ref_log_probs: bool = False
    nll_weight: float = 0.0
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    bf16: bool | str = "auto"
    save_dtype: str = "source"
    gradient_checkpointing: bool = False
    padding_free: bool = False
    sampler: str = "random"
    save_steps: int = 0
    logging_steps: int = 10
    seed: int = 0


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


@dataclass
class LaunchConfig:
    """How training stages run (launch.py).

    accelerate_config: "" = in-process (the embedded default); a name in configs/accelerate/ (zero3, zero3-offload,
        fsdp, cpu) or a path = every training stage of `psrlm iterate` runs as an `accelerate launch` job of
        `psrlm train`.
    num_processes: processes per job (0 = as the accelerate config says).
    extra_args: more arguments for `accelerate launch` (e.g. ["--main_process_port", "29600"]). With a wrapper, an
        argument that is just `$NAME` is left for the shell of each task to expand (e.g. `$SLURM_PROCID`).
    wrapper: "" = run the command here; else a command template with slot {command}, the whole `accelerate launch`
        command as one shell word, to start it on every node (e.g. `srun --nodes=2 --ntasks-per-node=1 --overlap
        bash -c {command}`, with --machine_rank $SLURM_PROCID in extra_args: scripts/slurm/psrlm-iterate.slurm).
    """

    accelerate_config: str = ""
    num_processes: int = 0
    extra_args: list[str] = field(default_factory=list)
    wrapper: str = ""


@dataclass
class PlanConfig:
    """Hardware and rates `psrlm plan` turns tokens into GPU-hours with (plan.py).

    gpu: H100, H200, A100, L40S (peak dense bf16 TFLOP/s from a table) or CPU. gpus: GPUs of the run.
    zero_stage: the ZeRO stage memory is estimated under (0-3) when training runs in-process; with
        launch.accelerate_config the stage, offloading and processes are read from that file.
    train_mfu: training FLOP utilisation.
    gen_mfu: generation FLOP utilisation, used when decode_tok_per_s is 0. decode_tok_per_s: measured generated
        tokens per second per GPU of the serving engine (vLLM on the model at hand), when known.
    steps_per_question / tokens_per_step / question_tokens: the search's shape before any IFT data exists (0 = read
        it from the IFT files); after an iteration the finished traces are used instead.
    """

    gpu: str = "H100"
    gpus: int = 8
    zero_stage: int = 3
    train_mfu: float = 0.35
    gen_mfu: float = 0.05
    decode_tok_per_s: float = 0.0
    steps_per_question: float = 0.0
    tokens_per_step: float = 0.0
    question_tokens: float = 64.0


# transformers' report_to integrations (transformers.integrations.INTEGRATION_TO_CALLBACK; a test keeps this in step)
REPORT_TO = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow", "mlflow",
             "neptune", "swanlab", "tensorboard", "trackio", "wandb")  # fmt: skip


@dataclass
class TrackConfig:
    """Experiment tracking (tracking.py): where the training losses of every TRL trainer and psrlm's own per-stage
    metrics go.

    report_to: "none", or one or a list of transformers' integrations: tensorboard, trackio, wandb, mlflow, ... Every
        training stage passes it to its TRL trainer (one tracking run per stage, named `<run_name>-<model>`), and
        tensorboard / trackio / wandb also get the loop's own metrics in one run named `run_name` (per iteration and
        method: pairs, pair precision where the oracle can tell, judge accuracy, accuracy per benchmark, search
        tokens and seconds), resumed when the run is rerun.
    project: the project (trackio, wandb) the runs are grouped under.
    run_name: the tracking run's name; empty = the run folder's name.
    offline: keep everything on this machine (the default; clusters and this build machine have no network):
        TensorBoard event files and trackio's store under `<run_dir>/tracking/` (unless TRACKIO_DIR is set),
        W&B in offline mode (unless WANDB_MODE is set). false: the integrations' own defaults (a trackio Space,
        W&B's server).
    """

    report_to: str | list[str] = "none"
    project: str = "psrlm"
    run_name: str = ""
    offline: bool = True

    def integrations(self) -> list[str]:
        names = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        return [r for r in names if r != "none"]


@dataclass
class GradingConfig:
    """How answers are graded (grading.py: Qwen2.5-Math answer parsing + math-verify).

    include_percentage: Qwen2.5-Math's rule that a plain-number answer of 100x or 1/100x the gold also counts as
        right. It is meant for percentages (gold 25 vs "25%" written as 0.25), but it also passes wrong answers
        (gold 25, answer 2500; gold 1, answer "$100"). true: numbers comparable with the paper's (which used
        Qwen's evaluation); false: strict grading. Every evaluation summary records which was used.
    """

    include_percentage: bool = True


@dataclass
class Config:
    paths: PathsConfig = field(default_factory=PathsConfig)
    arith: ArithConfig = field(default_factory=ArithConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    srlm: SRLMConfig = field(default_factory=SRLMConfig)
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-3, batch_size=32))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, lr=1e-6, batch_size=32))
    dpo: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=5e-7, batch_size=32))
    rft: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=1, lr=1e-6, batch_size=32))
    iterate: IterateConfig = field(default_factory=IterateConfig)
    grading: GradingConfig = field(default_factory=GradingConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    initdata: InitDataConfig = field(default_factory=InitDataConfig)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string; every user means the number
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    return value


def _apply(obj: Any, values: dict, source: str, prefix: str = "", sources: dict | None = None) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{prefix.rstrip('.') or '<top>'}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"{source}: unknown config key '{dotted}' (known here: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, source, f"{dotted}.", sources)
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{source}: {dotted}"))
            if sources is not None:
                sources[dotted] = source


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the last
    silently, so a recipe with `lr` set twice would run with whichever came later."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first on line {seen[key] + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML: {' '.join(str(e).split())}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value read as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    if not key.strip() or any(not k.strip() for k in key.split(".")):
        raise ConfigError(f"--set {text!r}: expected section.key=value")
    value = _read_yaml(raw, f"--set {text}") if raw.strip() else ""
    return key.strip().split("."), value


def _read_recipe(path: Path) -> dict:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: --config takes a recipe file, e.g. configs/demo.yaml")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); save the recipe as UTF-8"
        ) from None
    raw = _read_yaml(text, str(path))
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a recipe is a mapping of sections (paths:, search:, ...), got {type(raw).__name__}"
        )
    return raw


def load_config(path: str | Path | list[str | Path] | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then each recipe in order (a later one overrides an earlier one key by key), then `--set`
    overrides; unknown keys and values out of range raise ConfigError naming the key and where it was set."""
    return load_config_layers(path, overrides)[0]


def load_config_layers(
    paths: str | Path | list[str | Path] | None = None, overrides: list[str] | None = None
) -> tuple[Config, dict[str, str]]:
    """(config, sources): what `load_config` builds, and for every key not at its default where its value came
    from (the recipe file or `--set ...` that set it last)."""
    cfg = Config()
    sources: dict[str, str] = {}
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    for path in map(Path, paths):
        _apply(cfg, _read_recipe(path), str(path), sources=sources)
    for text in overrides or []:
        keys, value = parse_override(text)
        nested: Any = value
        for k in reversed(keys):
            nested = {k: nested}
        _apply(cfg, nested, f"--set {text}", sources=sources)
    validate(cfg, sources)
    for line in cost_warnings(cfg, sources):
        log.warning(line)
    return cfg, sources


# A search round judges w(w-1) ordered pairs (the paper: w=6, 30 judge calls); past this many per round a width is
# far outside anything measured, and one typo (width=1000: 999,000 calls) costs more than a whole paper run.
JUDGE_CALLS_PER_ROUND_WARN = 240


def judge_calls_per_round(width: int, mode: str, cyclic_k: int = 2) -> int:
    """Judgments one search round asks of `width` distinct candidates (the pairs judge.plan_pairs makes)."""
    if mode == "one_order":
        return width * (width - 1) // 2
    if mode == "cyclic":
        from psrlm.judge import plan_pairs

        return len(plan_pairs(width, "cyclic", cyclic_k))
    return width * (width - 1)


def cost_warnings(cfg: Config, sources: dict[str, str] | None = None) -> list[str]:
    """Settings that are valid but cost far more than anything measured: said once, with the number they imply."""
    out = []
    s = cfg.search
    calls = judge_calls_per_round(s.width, s.judge_mode, s.cyclic_k)
    if calls > JUDGE_CALLS_PER_ROUND_WARN:
        where = (sources or {}).get("search.width", "default")
        out.append(f"search.width={s.width} ({where}) with judge_mode {s.judge_mode}: {calls:,} judge calls per search "
                   f"round, per problem and step ({calls // 30:,}x the paper's 30 at width 6); more than "
                   f"{JUDGE_CALLS_PER_ROUND_WARN} per round is far outside anything measured: is the width a typo?")  # fmt: skip
    return out


# ------------------------------------------------------------------------------------------ validation

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")  # fmt: skip


def _engine_rules(e: EngineConfig) -> list[tuple[str, bool, str]]:
    from psrlm.hardware import DTYPES, _parse_bool_setting

    return [
        (
            "kind",
            e.kind in ("hf", "openai", "vllm", "sglang", "transformers"),
            "choose hf, openai (a running server), or vllm / sglang / transformers (servers psrlm starts)",
        ),
        *_at_least(e, 1, "servers tensor_parallel max_model_len batch_size concurrency"),
        *_at_least(e, 0, "server_restarts max_retries"),
        ("port", 1 <= e.port <= 65535, "must be a TCP port"),
        ("server_timeout_s", e.server_timeout_s > 0, "must be > 0"),
        ("max_failed_share", 0 <= e.max_failed_share <= 1, "must be in [0, 1]"),
        ("dtype", e.dtype in ("auto", *DTYPES), f"choose auto or one of {', '.join(DTYPES)}"),
        ("static_cache", _parse_bool_setting(e.static_cache) in (True, False, "auto"), "choose auto, true or false"),
        ("timeout_s", e.timeout_s > 0, "must be > 0"),
        ("api", e.api in ("completions", "chat"), "choose completions or chat"),
        ("reasoning", not e.reasoning or (e.kind == "openai" and e.api == "chat"),
         "OpenAI's reasoning models answer on /v1/chat/completions of a running API: set kind=openai and api=chat"),
    ]  # fmt: skip


def _train_rules(t: TrainConfig) -> list[tuple[str, bool, str]]:
    from psrlm.hardware import _parse_bool_setting

    return [
        ("epochs", t.epochs > 0, "must be > 0"),
        ("lr", t.lr > 0, "must be > 0"),
        ("batch_size", t.batch_size >= 1, "must be >= 1"),
        ("grad_accum", t.grad_accum >= 1, "must be >= 1"),
        ("warmup_steps", t.warmup_steps >= 0, "must be >= 0"),
        ("weight_decay", t.weight_decay >= 0, "must be >= 0"),
        ("lr_scheduler", t.lr_scheduler in LR_SCHEDULERS, f"choose one of {', '.join(LR_SCHEDULERS)}"),
        ("max_length", t.max_length >= 0, "must be >= 0 (0 = from the data)"),
        ("beta", t.beta > 0, "must be > 0"),
        ("nll_weight", t.nll_weight >= 0, "must be >= 0 (0 = plain DPO)"),
        ("lora_r", t.lora_r >= 1, "must be >= 1"),
        ("lora_alpha", t.lora_alpha > 0, "must be > 0"),
        ("bf16", _parse_bool_setting(t.bf16) in (True, False, "auto"), "choose auto, true or false"),
        ("save_dtype", t.save_dtype in ("source", "float32", "bfloat16"), "choose source, float32 or bfloat16"),
        ("logging_steps", t.logging_steps >= 1, "must be >= 1"),
        ("save_steps", t.save_steps >= 0, "must be >= 0 (0 = no checkpoints)"),
        ("padding_free", isinstance(t.padding_free, bool), "choose true or false"),
        ("sampler", t.sampler in ("random", "group_by_length"), "choose random or group_by_length"),
    ]


def _at_least(obj: Any, minimum: int, keys: str) -> list[tuple[str, bool, str]]:
    """`key >= minimum` for each of the space-separated `keys` of `obj`."""
    return [(k, getattr(obj, k) >= minimum, f"must be >= {minimum}") for k in keys.split()]


def _rules(cfg: Config) -> dict[str, list[tuple[str, bool, str]]]:
    """section -> [(key, holds, what it must be)]: every range and choice checked when a config is built, so
    `show-config` and the first second of a run catch a bad value, not the stage that reads it an hour in."""
    from psrlm.judge import JUDGE_MODES, SCORINGS
    from psrlm.prompts import VARIANTS

    a, d, m, s, r, it, i = cfg.arith, cfg.data, cfg.model, cfg.search, cfg.srlm, cfg.iterate, cfg.initdata
    top_p = "must be in (0, 1]"
    rules = {
        "paths": [("run_dir", bool(cfg.paths.run_dir.strip()), "must name a folder")],
        "arith": [
            *_at_least(a, 0, "n_train n_pretrain"),
            ("n_test", a.n_test >= 1, "must be >= 1: each held-out split is evaluated, and nothing is no measurement"),
            ("pretrain_step_share", 0 <= a.pretrain_step_share <= 1, "must be in [0, 1]"),
            ("min_ops", a.min_ops >= 1, "must be >= 1"),
            ("min_ops", a.min_ops <= a.max_ops, f"must be <= arith.max_ops ({a.max_ops})"),
            ("hard_min_ops", a.hard_min_ops >= 1, "must be >= 1"),
            ("hard_min_ops", a.hard_min_ops <= a.hard_max_ops, f"must be <= arith.hard_max_ops ({a.hard_max_ops})"),
            ("max_number", a.max_number >= 2, "must be >= 2"),
            ("hard_max_number", a.hard_max_number >= 2, "must be >= 2"),
            (
                "levels",
                all(len(v) == 3 and 1 <= v[0] <= v[1] and v[2] >= 2 for v in a.levels),
                "must list [min_ops, max_ops, max_number] per level, 1 <= min_ops <= max_ops, max_number >= 2",
            ),
            *_at_least(a, 1, "level_pool level_probe"),
        ],
        "data": [
            ("source", d.source in ("arith", "files"), "choose arith (the embedded domain) or files (a real run)"),
            *_at_least(d, 0, "ift_problems eft_train eft_test split_ift split_eft"),
            (
                "split_ift",
                d.source == "files" or not (d.split_ift or d.split_eft),
                "splits a real run's question source: needs data.source=files",
            ),
            ("gsm8k_ift", d.gsm8k_ift >= -1, "must be >= 0, or -1 for all"),
            ("eft_source", d.eft_source in ("synthetic", "policy"), "choose synthetic or policy"),
            ("eft_source", d.eft_source == "synthetic" or d.source == "arith", "policy EFT needs the arith oracle"),
            ("eft_policy_width", d.eft_policy_width >= 2, "must be >= 2"),
            *(
                (k, d.source != "files" or bool(getattr(d, k)), "must name a file when data.source=files")
                for k in ("ift_files", "eft_train_file", "eft_test_file", "questions")
            ),
            ("source", d.source != "files" or bool(cfg.model.path), "needs model.path (the M0 of a real run)"),
            (
                "srlm_eft_file",
                d.source != "files" or "srlm" not in cfg.iterate.methods or bool(d.srlm_eft_file),
                "must name the SRLM scorer's training data (ScoreExample JSONL) when iterate.methods has srlm",
            ),
        ],  # fmt: skip
        "model": [
            *_at_least(m, 1, "vocab_size hidden_size num_layers num_heads intermediate_size max_position"),
            (
                "hidden_size",
                m.hidden_size % max(1, m.num_heads) == 0,
                f"must be a multiple of model.num_heads ({m.num_heads})",
            ),
        ],  # fmt: skip
        "prompts": [("variant", cfg.prompts.variant in VARIANTS, f"choose one of {', '.join(sorted(VARIANTS))}")],
        "engine": _engine_rules(cfg.engine),
        "search": [
            ("width", s.width >= 2, "must be >= 2: a pair needs two candidates"),
            ("temperature", s.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < s.top_p <= 1, top_p),
            ("max_step_tokens", s.max_step_tokens >= 1, "must be >= 1"),
            ("judge_mode", s.judge_mode in JUDGE_MODES, f"choose one of {', '.join(JUDGE_MODES)}"),
            ("cyclic_k", s.cyclic_k >= 1, "must be >= 1"),
            ("scoring", s.scoring in SCORINGS, f"choose one of {', '.join(SCORINGS)}"),
            ("verdict", s.verdict in ("generate", "logits", "soft"), "choose generate, logits or soft"),
            ("tie_margin", s.tie_margin >= 0, "must be >= 0"),
            ("judge_temperature", s.judge_temperature >= 0, "must be >= 0"),
            ("judge_max_tokens", s.judge_max_tokens >= 1, "must be >= 1"),
            ("max_steps", s.max_steps >= 1, "must be >= 1"),
            ("max_rounds", s.max_rounds >= 1, "must be >= 1"),
            ("max_active", s.max_active >= 1, "must be >= 1"),
            ("judge", s.judge in ("self", "oracle"), "choose self (the method) or oracle (science runs only)"),
            (
                "judge",
                s.judge == "self" or cfg.data.source == "arith",
                "oracle needs the arith domain's step oracle (data.source=arith)",
            ),
            ("judge_flip", 0 <= s.judge_flip <= 1, "must be in [0, 1]"),
            ("oracle_ties", s.oracle_ties in ("tie", "coin", "accept"), "choose tie, coin or accept"),
            ("pairs_per_round", s.pairs_per_round in ("best_worst", "all"), "choose best_worst (the paper) or all"),
            ("ties", s.ties in ("rollback", "accept"), "choose rollback (the paper's training search) or accept"),
            (
                "judge_flip",
                s.judge_flip == 0 or s.judge == "oracle",
                "flips the oracle's verdicts: set search.judge=oracle",
            ),
            (
                "verdict",
                not (cfg.engine.kind == "transformers" and s.verdict in ("logits", "soft")),
                "reads the judge's log-probabilities, which `transformers serve` does not return (it ignores echo and "
                "logprobs): use engine.kind=hf, vllm or sglang, or search.verdict=generate",
            ),
        ],  # fmt: skip
        "srlm": [
            ("n_samples", r.n_samples >= 2, "must be >= 2: a pair needs two solutions"),
            ("temperature", r.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < r.top_p <= 1, top_p),
            ("max_solution_tokens", r.max_solution_tokens >= 1, "must be >= 1"),
            ("n_judgments", r.n_judgments >= 1, "must be >= 1"),
            ("judge_temperature", r.judge_temperature >= 0, "must be >= 0"),
            ("judge_max_tokens", r.judge_max_tokens >= 1, "must be >= 1"),
            ("max_active", r.max_active >= 1, "must be >= 1"),
            ("judge", r.judge in ("self", "oracle"), "choose self (the baseline) or oracle (science runs only)"),
            (
                "judge",
                r.judge == "self" or cfg.data.source == "arith",
                "oracle needs the arith domain (data.source=arith)",
            ),
        ],
        "pretrain": _train_rules(cfg.pretrain),
        "sft": _train_rules(cfg.sft),
        "dpo": _train_rules(cfg.dpo)
        + [
            (
                "sampler",
                cfg.dpo.sampler == "random",
                "group_by_length is for pretrain / sft / rft (a DPO row has two lengths)",
            )
        ],
        "rft": _train_rules(cfg.rft),
        "iterate": [
            ("methods", bool(it.methods) and set(it.methods) <= {"psrlm", "srlm"}, "must list psrlm and/or srlm"),
            (
                "questions",
                bool(it.questions) and all(n >= 1 for n in it.questions),
                "must list one count >= 1 per iteration",
            ),
            *_at_least(it, 0, "srlm_eft eval_limit eval_eft eval_benchmark_limit eval_appendix_b"),
            ("eval_tts", it.eval_tts >= -1, "must be >= 0 (0 = skip), or -1 for every problem"),
            ("eval_tts_rules", it.eval_tts_rules in ("inference", "training"), "choose inference or training"),
            (
                "m0_three_shot",
                set(it.m0_three_shot) <= {"judge", "benchmarks"},
                "may list judge and/or benchmarks (empty: M0 zero-shot everywhere)",
            ),
            ("eval_max_tokens", it.eval_max_tokens >= 1, "must be >= 1"),
            ("eval_benchmarks", _benchmarks_ok(it.eval_benchmarks), _benchmarks_hint()),
            ("eval_tts_benchmark", _benchmarks_ok(it.eval_tts_benchmark), _benchmarks_hint()),
            (
                "eval_benchmarks",
                d.source != "files" or bool(it.eval_benchmarks),
                "must name the test sets of a files run (e.g. [paper]): it has no arith splits",
            ),
            ("schedule", it.schedule in ("fixed", "frontier"), "choose fixed (the paper) or frontier"),
            (
                "schedule",
                it.schedule != "frontier" or (d.source == "arith" and bool(a.levels)),
                "frontier needs the arith domain and a difficulty ladder (arith.levels)",
            ),
            (
                "frontier_band",
                len(it.frontier_band) == 2 and 0 <= it.frontier_band[0] <= it.frontier_band[1] <= 1,
                "must be [low, high] with 0 <= low <= high <= 1",
            ),
        ],  # fmt: skip
        "initdata": [
            ("teacher", i.teacher in ("engine", "oracle"), "choose engine or oracle"),
            ("chunk_size", i.chunk_size >= 1, "must be >= 1"),
            ("ift_source", i.ift_source in ("math", "jsonl", "gsm8k"), "choose math, jsonl or gsm8k"),
            (
                "prm_format",
                i.prm_format in ("token_classification", "next_token"),
                "choose token_classification or next_token",
            ),
            *_at_least(
                i,
                0,
                "ift_limit segment_retries prm_problems prm_samples mcts_problems simulation_depth "
                "min_margin eft_test uct_c policy_servers",
            ),
            *_at_least(
                i,
                1,
                "segment_max_tokens iterations expand_width max_depth max_step_tokens max_active "
                "pairs_per_problem judge_max_tokens",
            ),
            ("segment_retry_temperature", i.segment_retry_temperature >= 0, "must be >= 0"),
            ("temperature", i.temperature >= 0, "must be >= 0"),
            ("top_p", 0 < i.top_p <= 1, top_p),
            (
                "prm_device",
                re.fullmatch(r"auto|cpu|cuda(:\d+)?", i.prm_device) is not None,
                "choose auto, cpu, cuda or cuda:N",
            ),
        ],  # fmt: skip
        "track": [
            (
                "report_to",
                set([cfg.track.report_to] if isinstance(cfg.track.report_to, str) else cfg.track.report_to)
                <= {"none", *REPORT_TO},
                f"choose none or any of {', '.join(REPORT_TO)}",
            ),
            ("project", bool(cfg.track.project.strip()), "must name a project"),
        ],
        "launch": [
            ("num_processes", cfg.launch.num_processes >= 0, "must be >= 0 (0 = from the accelerate config)"),
            (
                "wrapper",
                not cfg.launch.wrapper or "{command}" in cfg.launch.wrapper,
                "must hold the slot {command} (where the accelerate command goes)",
            ),
        ],  # fmt: skip
        "plan": [
            ("gpus", cfg.plan.gpus >= 1, "must be >= 1"),
            ("zero_stage", 0 <= cfg.plan.zero_stage <= 3, "0..3"),
            ("train_mfu", 0 < cfg.plan.train_mfu <= 1, "must be in (0, 1]"),
            ("gen_mfu", 0 < cfg.plan.gen_mfu <= 1, "must be in (0, 1]"),
            ("decode_tok_per_s", cfg.plan.decode_tok_per_s >= 0, "must be >= 0"),
        ],
        "initdata.teacher_engine": _engine_rules(i.teacher_engine),
        "initdata.prm_train": _train_rules(i.prm_train),
    }
    remote = [h for h in cfg.engine.server_hosts if h not in LOCAL_HOSTS]
    rules["engine"].append(("server_hosts", not remote or "{host}" in cfg.engine.server_cmd,
                            f"{remote[0] if remote else ''} is another host: give an engine.server_cmd that starts the "
                            "server there, with slot {host} (e.g. srun -w {host} ...)"))  # fmt: skip
    if cfg.engine.kind == "openai":
        rules["engine"].append(
            ("base_urls", bool(cfg.engine.base_urls), "must list the server URL(s) for kind=openai")
        )
    return rules


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


def validate(cfg: Config, sources: dict[str, str] | None = None) -> None:
    """Every range and choice (see `_rules`); all violations in one ConfigError, each naming its key, value and
    where it was set. bool/str tri-state settings ("true" / "false" / "auto") are normalised on the way."""
    from psrlm.hardware import _parse_bool_setting

    for e in (cfg.engine, cfg.initdata.teacher_engine):
        e.static_cache = _parse_bool_setting(e.static_cache)
    for t in (cfg.pretrain, cfg.sft, cfg.dpo, cfg.rft, cfg.initdata.prm_train):
        t.bf16 = _parse_bool_setting(t.bf16)
    errors = []
    for section, rules in _rules(cfg).items():
        obj: Any = cfg
        for part in section.split("."):
            obj = getattr(obj, part)
        for key, holds, what in rules:
            if not holds:
                dotted = f"{section}.{key}"
                where = (sources or {}).get(dotted, "default")
                errors.append(f"{dotted}={getattr(obj, key)!r} ({where}): {what}")
    if errors:
        raise ConfigError("invalid config: " + "; ".join(dict.fromkeys(errors)))


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the effective config next to a stage's output, so every artifact says how it was made."""
    from psrlm.records import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
