"""`psrlm plan -c RECIPE`: tokens, memory, disk and GPU-hours of a run, per stage and iteration, before running it.

    psrlm plan -c configs/paper-7b.yaml
    psrlm plan -c configs/demo.yaml --run runs/demo      # calibrated on (and re-estimated from) a finished run

Every number is derived in this fixed order, from the recipe, the model's config and a few rates:

1. Architecture: from the model's config.json (local or in the HF cache), else a built-in table for the paper's
   models. Parameters N = embeddings + layers x (attention + MLP + norms) (+ an untied LM head).
2. Search per question (rates): steps S, rounds per step r, tokens per candidate step t_c, unique candidates per
   round u, judge tokens t_j. Before a run they come from the IFT data (S = mean IFT steps, t_c = mean IFT step
   tokens + 1, r = 1, u = w); after an iteration, from its traces (each later iteration is re-estimated from the
   finished ones). Then per iteration with Q questions and width w:
     candidates generated = Q S r w t_c;  judgments = Q S r J(u) with J(u) = u(u-1) (all_ordered), u(u-1)/2
     (one_order), u k (cyclic); judge tokens generated = judgments x t_j (0 when verdicts are read from logits);
     prefill without prefix caching = Q S r (w p_s + J(u) p_j); with it, each step prompt and each judge
     prompt's shared prefix is computed once: Q S r (p_s + J(u) (p_j - p_shared)) + Q S r p_shared,
   where p_s and p_j are the step and judge prompt lengths at the middle step (template + question + steps).
3. SRLM: Q samples x solution tokens, Q samples x judgments x score tokens. Evaluation: problems x (prompt + cap).
   Test-time search (iterate.eval_tts, Tables 5/9): step 2's search on P problems (eval_tts per TTS benchmark, or
   every problem) for PSRLM's M1 and last model, with one round per step under the inference rules (a tie takes its
   step) and the measured or prior rounds per step under the training rules, plus the greedy answers beside it.
4. Training (Adam, bf16 compute, fp32 master weights), per GPU under ZeRO stage z over G GPUs: weights 2N bytes
   (sharded by G under ZeRO-3), gradients 2N (sharded under ZeRO-2/3), fp32 master + Adam moments 12N (sharded
   under ZeRO-1/2/3), DPO reference 2N (sharded under ZeRO-3). z, G and offloading come from the accelerate config
   the recipe launches with (`launch.*`; FSDP FULL_SHARD counts as ZeRO-3), else from plan.zero_stage / plan.gpus.
   Offloaded optimizer states take the optimizer and gradient shards to CPU memory, offloaded parameters the
   weights and the reference; they are reported as host memory per process. Under ZeRO-3 each GPU also holds the
   layer being computed, the next one (prefetched) and the LM head in full, 2 bytes each. Activations per sequence of L tokens
   ~ L h layers x 34 bytes without checkpointing (Korthikanti et al., 2022, no sequence parallelism) or L h layers
   x 2 bytes with it, times the per-GPU batch.
5. FLOPs: training 6 N tokens (+ 2 N tokens for the DPO reference's forward), generation 2 N tokens (decode) and
   2 N tokens (prefill); the attention term 12 layers h L per token is added (nanochat's estimate_flops).
   GPU-hours = FLOPs / (peak x utilisation), with `plan.train_mfu` and, for generation, `plan.decode_tok_per_s` per
   GPU when given (decode is bandwidth-bound; MFU says little there) else `plan.gen_mfu`.
6. Disk: every model saved in bf16 (2N bytes), plus trainer checkpoints (weights + optimizer, 16N) when
   `train.save_steps` is set.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from psrlm.configs import Config
from psrlm.run_layout import RunLayout

# Architectures of the paper's models (config.json of the Hugging Face releases), so a plan needs no download.
KNOWN = {
    "qwen2.5-math-7b": dict(
        hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064, tied=False
    ),
    "qwen2.5-math-72b": dict(
        hidden=8192, layers=80, heads=64, kv_heads=8, intermediate=29568, vocab=152064, tied=False
    ),
}
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "CPU": 0.15}  # dense bf16, per GPU


@dataclass
class Arch:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    tied: bool

    @property
    def params(self) -> int:
        h, kv = self.hidden, self.hidden * self.kv_heads // self.heads
        attn = h * h * 2 + h * kv * 2  # q, o + k, v
        mlp = 3 * h * self.intermediate
        emb = self.vocab * h * (1 if self.tied else 2)
        return emb + self.layers * (attn + mlp + 2 * h) + h


def architecture(cfg: Config) -> tuple[Arch, str]:
    """The model's shape and where it came from."""
    path = cfg.model.path
    if path:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            from psrlm.checkpoints import _hub_cache

            folder = _hub_cache(path) or folder
        if (folder / "config.json").exists():
            c = json.loads((folder / "config.json").read_text())
            return Arch(c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                        c.get("num_key_value_heads", c["num_attention_heads"]), c["intermediate_size"],
                        c["vocab_size"], bool(c.get("tie_word_embeddings", False))), str(folder / "config.json")  # fmt: skip
        key = Path(path).name.lower()
        if key in KNOWN:
            return Arch(**KNOWN[key]), f"built-in table ({Path(path).name})"
        raise ValueError(f"model.path={path}: no config.json here and not a model psrlm knows; download it first")
    m = cfg.model  # the tiny model built from the config
    return Arch(
        m.hidden_size, m.num_layers, m.num_heads, m.num_heads, m.intermediate_size, m.vocab_size, True
    ), "model.*"


# ------------------------------------------------------------------------------------------ search rates


@dataclass
class Rates:
    steps: float  # steps per question
    rounds_per_step: float
    tokens_per_candidate: float
    unique: float  # distinct candidates per round
    judge_tokens: float  # generated per judgment
    question_tokens: float
    step_tokens: float  # of an accepted step (for prompt lengths)
    source: str
    judgments_per_round: float | None = None  # measured; else J(unique) from the judge mode


def _tokenizer(cfg: Config, run_dir: Path):
    from psrlm.tiny import load_tokenizer

    for folder in (cfg.model.path, cfg.iterate.m0_path):
        if folder:
            p = Path(folder)
            if not p.is_dir():
                from psrlm.configs import REPO_ROOT

                p = REPO_ROOT / folder
            if p.is_dir():
                return load_tokenizer(p)
    inits = sorted(RunLayout(run_dir).models.glob("init-*"))
    return load_tokenizer(inits[0]) if inits else None


def _token_counter(tok):
    """Tokens of a text: the model's tokenizer, or ~3.5 characters per token without one."""
    return (lambda s: len(tok(s, add_special_tokens=False)["input_ids"])) if tok else (lambda s: len(s) / 3.5)


def _judge_tokens(cfg: Config) -> float:
    """Generated per judgment before any run: none when verdicts are read from logits, else half the cap."""
    return 0.0 if cfg.search.verdict in ("logits", "soft") else float(cfg.search.judge_max_tokens) / 2


def prior_rates(cfg: Config, tok) -> Rates:
    """Before any iteration: the IFT solutions' step count and step length stand in for the search's."""
    from psrlm.runfolder import Run

    ift = Run(cfg).ift()[:500]
    n_tok = _token_counter(tok)
    steps = [len(s.steps) for s in ift]
    step_len = [n_tok(" " + st) for s in ift for st in s.steps]
    q_len = [n_tok(s.meta["question"]) for s in ift]
    w = cfg.search.width
    return Rates(statistics.mean(steps), 1.0, statistics.mean(step_len) + 1, w, _judge_tokens(cfg), statistics.mean(q_len),
                 statistics.mean(step_len), "IFT data (before any iteration)")  # fmt: skip


def recipe_rates(cfg: Config) -> Rates | None:
    """No IFT data yet (a real run before `psrlm data ift`): the recipe's own estimates (plan.steps_per_question,
    plan.tokens_per_step, plan.question_tokens), if it gives them."""
    pc = cfg.plan
    if not (pc.steps_per_question and pc.tokens_per_step):
        return None
    return Rates(pc.steps_per_question, 1.0, pc.tokens_per_step + 1, cfg.search.width, _judge_tokens(cfg),
                 pc.question_tokens, pc.tokens_per_step, "the recipe's plan.* estimates")  # fmt: skip


def measured_rates(run_dir: Path, width: int, method: str = "psrlm") -> Rates | None:
    """From the finished iterations of a run: what its searches actually did. `width` candidates are generated per
    round (the recipe's search.width); a round's record keeps only the whole ones, so it cannot tell."""
    from psrlm.records import Problem, SearchTrace, read_jsonl

    traces, questions = [], {}
    layout = RunLayout(run_dir)
    for d in sorted(layout.searches(method).glob("it*")):
        if (d / "traces.jsonl").exists():
            traces += read_jsonl(d / "traces.jsonl", SearchTrace)
    if not traces:
        return None
    fresh = layout.fresh_questions
    if fresh.exists():
        questions = {p.id: p.question for p in read_jsonl(fresh, Problem)}
    rounds = [r for t in traces for r in t.rounds if "candidates" in r]
    accepted = [len(t.steps) for t in traces]
    n_rounds = max(1, len(rounds))
    cand_tokens = sum(t.gen_tokens for t in traces)
    return Rates(
        steps=max(1e-9, statistics.mean(accepted)),
        rounds_per_step=n_rounds / max(1, sum(accepted)),
        tokens_per_candidate=cand_tokens / max(1, n_rounds * width),  # judge tokens included (0 with logit verdicts)
        unique=statistics.mean(r.get("unique", width) for r in rounds) if rounds else width,
        judge_tokens=0.0,
        question_tokens=statistics.mean(len(q) / 3.5 for q in questions.values()) if questions else 40.0,
        step_tokens=statistics.mean(len(s) / 3.5 for t in traces for s in t.steps) if accepted else 12.0,
        source=f"{len(traces)} finished search traces of {run_dir}",
        # measured, not J(mean unique): J is convex in u, so the mean's J under-counts a mix of rounds
        judgments_per_round=sum(t.judge_calls for t in traces) / n_rounds,
    )


def judgments_per_round(cfg: Config, u: float) -> float:
    s = cfg.search
    if s.judge_mode == "all_ordered":
        return u * (u - 1)
    if s.judge_mode == "one_order":
        return u * (u - 1) / 2
    return u * min(s.cyclic_k, max(0.0, u - 1))


def search_tokens(cfg: Config, rates: Rates, questions: int, prompt_overhead: tuple[float, float]) -> dict:
    """Generated and prefill tokens of one iteration's search (see the module docstring, step 2)."""
    w = cfg.search.width
    rounds = questions * rates.steps * rates.rounds_per_step
    per_round = rates.judgments_per_round
    judgments = rounds * (per_round if per_round is not None else judgments_per_round(cfg, rates.unique))
    mid = rates.question_tokens + rates.steps / 2 * rates.step_tokens  # question + steps so far, mid-solution
    p_step = prompt_overhead[0] + mid
    p_judge = prompt_overhead[1] + mid + 2 * rates.tokens_per_candidate
    shared = prompt_overhead[1] / 2 + mid  # the judge prompt up to the two candidates
    return {
        "rounds": rounds,
        "candidate_tokens": rounds * w * rates.tokens_per_candidate,
        "judgments": judgments,
        "judge_tokens": judgments * rates.judge_tokens,
        "prefill_no_cache": rounds * w * p_step + judgments * p_judge,
        "prefill_prefix_cache": rounds * p_step + judgments * (p_judge - shared) + rounds * shared,
    }


def _prompt_overhead(cfg: Config, tok) -> tuple[float, float]:
    from psrlm.prompts import prompts_of

    p = prompts_of(cfg)
    n = _token_counter(tok)
    return float(n(p.step_prompt("", []))), float(n(p.judge_prompt("", [], "", "")))


# ------------------------------------------------------------------------------------------------ memory


@dataclass
class TrainingShape:
    """How the training jobs shard the model: ZeRO stage, processes, what is offloaded to CPU memory."""

    zero: int
    gpus: int
    offload_optimizer: bool = False
    offload_params: bool = False
    source: str = "plan.zero_stage / plan.gpus"


def training_shape(cfg: Config) -> TrainingShape:
    """From the accelerate config of `launch.accelerate_config` (DeepSpeed's zero_stage and offload devices, FSDP's
    sharding strategy), else the recipe's plan.zero_stage / plan.gpus (in-process training: one process)."""
    import yaml

    from psrlm.launch import accelerate_config

    lc, pc = cfg.launch, cfg.plan
    if not lc.accelerate_config:
        return TrainingShape(pc.zero_stage, pc.gpus)
    path = accelerate_config(lc.accelerate_config)
    y = yaml.safe_load(path.read_text()) or {}
    gpus = lc.num_processes or int(y.get("num_processes", 1))
    kind = y.get("distributed_type", "NO")
    if kind == "DEEPSPEED":
        ds = y.get("deepspeed_config") or {}
        if ds.get("deepspeed_config_file"):  # the settings in a DeepSpeed JSON (zero3-cpu.yaml: beside the config)
            zo = json.loads((path.parent / ds["deepspeed_config_file"]).read_text()).get("zero_optimization", {})
            ds = {"zero_stage": zo.get("stage", 0),
                  **{f"offload_{k}_device": zo.get(f"offload_{k}", {}).get("device") for k in ("optimizer", "param")}}  # fmt: skip
        off = lambda key: str(ds.get(key, "none")).lower() not in ("none", "")  # noqa: E731
        return TrainingShape(int(ds.get("zero_stage", 0)), gpus, off("offload_optimizer_device"),
                             off("offload_param_device"), path.name)  # fmt: skip
    if kind == "FSDP":
        f = y.get("fsdp_config") or {}
        zero = {"FULL_SHARD": 3, "HYBRID_SHARD": 3, "SHARD_GRAD_OP": 2}.get(str(f.get("fsdp_sharding_strategy")), 0)
        offload = bool(f.get("fsdp_offload_params", False))  # FSDP's CPU offload moves parameters, grads and states
        return TrainingShape(zero, gpus, offload, offload, path.name)
    return TrainingShape(0, gpus, source=path.name)  # DDP: every process holds everything


def train_memory_gb(
    arch: Arch, cfg: Config, stage: str, seq_len: int, shape: TrainingShape, checkpointing: bool
) -> dict:
    """Per-GPU memory of one training stage (module docstring, step 4), in GB; `cpu_offload` is the host memory
    each process holds for what is offloaded."""
    n = arch.params
    tc = cfg.sft if stage == "sft" else cfg.dpo
    gpus, zero = shape.gpus, shape.zero
    shard = lambda x, from_stage: x / gpus if zero >= from_stage else x  # noqa: E731
    weights = shard(2 * n, 3)
    if zero >= 3:  # ZeRO-3 gathers a layer (and the next, prefetched) and the LM head in full while it runs
        layer = (n - arch.vocab * arch.hidden * (1 if arch.tied else 2)) / arch.layers
        gathered = 2 * (2 * layer + arch.vocab * arch.hidden)
    else:
        gathered = 0.0
    grads = shard(2 * n, 2)
    optim = shard(12 * n, 1)
    ref = shard(2 * n, 3) if stage == "dpo" and not cfg.dpo.precompute_ref_log_probs else 0.0
    seqs = tc.batch_size * (2 if stage == "dpo" else 1)  # chosen + rejected
    act_per_token = arch.hidden * arch.layers * (2 if checkpointing else 34)
    activations = seqs * seq_len * act_per_token
    logits = seqs * seq_len * arch.vocab * 4  # fp32 logits of one micro-batch
    gb = 1e-9
    parts = {"weights": weights, "gathered": gathered, "gradients": grads, "optimizer": optim, "reference": ref,
             "activations": activations, "logits": logits}  # fmt: skip
    offloaded = ({"optimizer", "gradients"} if shape.offload_optimizer else set()) | (
        {"weights", "reference"} if shape.offload_params else set()
    )
    on_gpu = {k: (0.0 if k in offloaded else v) for k, v in parts.items()}
    return ({k: v * gb for k, v in on_gpu.items()} | {"total": sum(on_gpu.values()) * gb}
            | {"cpu_offload": sum(parts[k] for k in offloaded) * gb})  # fmt: skip


# -------------------------------------------------------------------------------------------------- plan


def plan(cfg: Config, run_dir: Path | None = None) -> dict:
    from psrlm.runfolder import Run

    run_dir = Path(run_dir or cfg.paths.run_dir)
    arch, arch_source = architecture(cfg)
    n = arch.params
    run = Run(cfg)
    tok = _tokenizer(cfg, run_dir)
    overhead = _prompt_overhead(cfg, tok)
    prior = prior_rates(cfg, tok) if all(f.exists() for f in run.ift_files()) else recipe_rates(cfg)
    measured = measured_rates(run_dir, cfg.search.width)
    pc = cfg.plan
    peak = PEAK_TFLOPS.get(pc.gpu, 989.0) * 1e12
    attn = lambda L: 12 * arch.layers * arch.hidden * L  # noqa: E731  (per token, nanochat)
    rows = []
    for it, q in enumerate(cfg.iterate.questions, start=2):
        finished = RunLayout(run_dir).traces("psrlm", it).exists()
        rates = measured if measured is not None else prior
        if rates is None:
            raise ValueError("nothing to estimate the search from: give the IFT files (data.ift_files, `psrlm data "
                             "ift`) or plan.steps_per_question and plan.tokens_per_step")  # fmt: skip
        t = search_tokens(cfg, rates, q, overhead)
        gen = t["candidate_tokens"] + t["judge_tokens"]
        prefill = t["prefill_prefix_cache"]
        flops = gen * (2 * n + attn(512)) + prefill * (2 * n + attn(512))
        gen_s = (
            gen / (pc.decode_tok_per_s * pc.gpus)
            if pc.decode_tok_per_s
            else gen * 2 * n / (peak * pc.gen_mfu * pc.gpus)
        )
        pre_s = prefill * 2 * n / (peak * max(pc.gen_mfu, 0.3) * pc.gpus)
        pairs = t["rounds"] * 0.8  # a pair per accepted round, less ties
        seq = int(
            overhead[0] + rates.question_tokens + rates.steps * rates.step_tokens + 2 * rates.tokens_per_candidate
        )
        dpo_tokens = pairs * seq * 2 * cfg.dpo.epochs
        dpo_flops = dpo_tokens * (6 * n + 2 * n + attn(seq))
        rows.append({
            "iteration": it, "questions": q, "rates": rates.source, "finished": finished,
            **{k: round(v) for k, v in t.items()},
            "search_gpu_hours": (gen_s + pre_s) * pc.gpus / 3600,
            "search_flops": flops,
            "dpo_pairs": round(pairs), "dpo_tokens": round(dpo_tokens),
            "dpo_gpu_hours": dpo_flops / (peak * pc.train_mfu) / 3600,
        })  # fmt: skip
    tts = _tts_plan(cfg, run, measured if measured is not None else prior, overhead, n, peak, attn)
    ift_rows = len(run.ift()) if all(f.exists() for f in run.ift_files()) else 0
    sft_tokens = ift_rows * (overhead[0] + (prior.question_tokens + prior.steps * prior.step_tokens if prior else 0))
    sft_tokens = (sft_tokens + cfg.data.eft_train * 2 * overhead[1]) * cfg.sft.epochs
    shape = training_shape(cfg)
    memory = {stage: {ck: train_memory_gb(arch, cfg, stage, cfg.iterate.eval_max_tokens, shape, ck)
                      for ck in (False, True)} for stage in ("sft", "dpo")}  # fmt: skip
    # M0, each method's M1..Mn, and the oracle arm's models (iterate.oracle_iterations: evaluated like every model)
    n_models = 1 + len(cfg.iterate.methods) * (1 + len(cfg.iterate.questions)) + cfg.iterate.oracle_iterations
    disk = n_models * 2 * n + (16 * n if cfg.dpo.save_steps or cfg.sft.save_steps else 0)
    eval_problems = sum(_benchmark_size(cfg, b) for b in _benchmarks(cfg))
    eval_tokens = n_models * eval_problems * (cfg.iterate.eval_max_tokens / 2)
    from psrlm.initdata.pool import data_lines

    return {
        "data": data_lines(cfg),
        "model": cfg.model.path or "tiny (model.*)", "architecture": arch.__dict__, "arch_source": arch_source,
        "parameters": n, "gpus": pc.gpus, "gpu": pc.gpu, "tensor_parallel_ok": arch.heads % cfg.engine.tensor_parallel == 0,
        "iterations": rows,
        "sft": {"tokens": round(sft_tokens), "gpu_hours": sft_tokens * (6 * n) / (peak * pc.train_mfu) / 3600},
        "evaluation": {"models": n_models, "problems_per_model": eval_problems, "generated_tokens": round(eval_tokens),
                       "gpu_hours": eval_tokens * 2 * n / (peak * pc.gen_mfu) / 3600},
        "memory_gb_per_gpu": memory, "training_shape": shape.__dict__, "disk_gb": disk * 1e-9,
        "tts": tts,
    }  # fmt: skip


def _tts_plan(
    cfg: Config, run, rates: Rates | None, overhead: tuple[float, float], n: int, peak: float, attn
) -> dict | None:
    """Test-time search vs greedy (module docstring, step 3) for PSRLM's M1 and last model; None when off."""
    it, pc = cfg.iterate, cfg.plan
    if not it.eval_tts or "psrlm" not in it.methods or rates is None:
        return None
    import dataclasses

    benches = run.tts_benchmarks()
    problems = sum(_benchmark_size(cfg, b, 0) if it.eval_tts < 0 else min(it.eval_tts, _benchmark_size(cfg, b, 0))
                   for b in benches)  # fmt: skip
    if it.eval_tts_rules == "inference":  # every round takes a step
        rates = dataclasses.replace(rates, rounds_per_step=1.0)
    models = len(dict.fromkeys(["psrlm-M1", f"psrlm-M{len(it.questions) + 1}"]))
    t = search_tokens(cfg, rates, problems, overhead)
    gen = t["candidate_tokens"] + t["judge_tokens"] + problems * it.eval_max_tokens / 2  # + the greedy answers
    gen_s = (
        gen / (pc.decode_tok_per_s * pc.gpus) if pc.decode_tok_per_s else gen * 2 * n / (peak * pc.gen_mfu * pc.gpus)
    )
    pre_s = t["prefill_prefix_cache"] * 2 * n / (peak * max(pc.gen_mfu, 0.3) * pc.gpus)
    return {"models": models, "benchmarks": benches, "problems_per_model": problems, "rules": it.eval_tts_rules,
            "rounds": round(t["rounds"]), "judgments": round(t["judgments"]),
            "generated_tokens": round(gen * models), "gpu_hours": (gen_s + pre_s) * pc.gpus / 3600 * models}  # fmt: skip


def _benchmarks(cfg: Config) -> list[str]:
    from psrlm.benchmark_names import parse_benchmarks

    names = parse_benchmarks(cfg.iterate.eval_benchmarks)
    return (["arith_test", "arith_hard"] if cfg.data.source == "arith" else []) + names


def _benchmark_size(cfg: Config, name: str, limit: int | None = None) -> int:
    """Problems evaluated of `name`: its size, cut at `limit` (default: the evaluation's own limits; 0 = none)."""
    sizes = {"gsm8k": 1319, "math": 5000, "math500": 500, "gaokao2023en": 385, "olympiadbench": 675, "aime24": 30,
             "amc23": 40}  # fmt: skip
    if name.startswith("arith"):
        full = cfg.arith.n_test
        return min(full, limit or cfg.iterate.eval_limit or full) if limit is None else min(full, limit or full)
    cap = cfg.iterate.eval_benchmark_limit if limit is None else limit
    return min(sizes.get(name, 500), cap or 10**9)


def format_plan(p: dict) -> str:
    a, s = p["architecture"], p["training_shape"]
    lines = [*p.get("data", []), *([""] if p.get("data") else []),
             f"model {p['model']}: {p['parameters'] / 1e9:.2f} B parameters ({a['layers']} layers, hidden {a['hidden']}, "
             f"{a['heads']} heads / {a['kv_heads']} KV heads; from {p['arch_source']}); {p['gpus']} x {p['gpu']}",
             "", "| iteration | questions | rounds | candidate tokens | judgments | judge tokens | prefill (no cache) "
             "| prefill (prefix cache) | search GPU-h | DPO pairs | DPO GPU-h | rates from |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in p["iterations"]:
        lines.append(f"| M{r['iteration']} | {r['questions']} | {r['rounds']:,} | {r['candidate_tokens']:,} | "
                     f"{r['judgments']:,} | {r['judge_tokens']:,} | {r['prefill_no_cache']:,} | "
                     f"{r['prefill_prefix_cache']:,} | {r['search_gpu_hours']:.2f} | {r['dpo_pairs']:,} | "
                     f"{r['dpo_gpu_hours']:.2f} | {r['rates']} |")  # fmt: skip
    lines += ["", f"SFT (M1): {p['sft']['tokens']:,} tokens, {p['sft']['gpu_hours']:.2f} GPU-h; evaluation: "
              f"{p['evaluation']['models']} models x {p['evaluation']['problems_per_model']} problems, "
              f"{p['evaluation']['generated_tokens']:,} tokens, {p['evaluation']['gpu_hours']:.2f} GPU-h; "
              f"disk {p['disk_gb']:.1f} GB", *_tts_line(p.get("tts")), "",
              f"training: ZeRO-{s['zero']} over {s['gpus']} processes"
              + (", optimizer offloaded to CPU" if s["offload_optimizer"] else "")
              + (", parameters offloaded to CPU" if s["offload_params"] else "") + f" (from {s['source']})", "",
              "| training stage | activation checkpointing | weights | gathered (ZeRO-3) | gradients | optimizer | reference | activations "
              "| logits | total GB per GPU | offloaded GB per process |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for stage, by_ck in p["memory_gb_per_gpu"].items():
        for ck, m in by_ck.items():
            lines.append(f"| {stage} | {'on' if ck == 'True' or ck is True else 'off'} | " + " | ".join(
                f"{m[k]:.1f}" for k in ("weights", "gathered", "gradients", "optimizer", "reference", "activations", "logits",
                                         "total", "cpu_offload")) + " |")  # fmt: skip
    if not p["tensor_parallel_ok"]:
        lines.append("\nWARNING: engine.tensor_parallel does not divide the model's attention heads")
    return "\n".join(lines)


def _tts_line(t: dict | None) -> list[str]:
    if not t:
        return []
    return ["", f"test-time search vs greedy (Tables 5/9, {t['rules']} rules): {t['models']} models x "
                f"{t['problems_per_model']:,} problems of {', '.join(t['benchmarks'])}: {t['rounds']:,} rounds and "
                f"{t['judgments']:,} judgments per model, {t['generated_tokens']:,} tokens generated in all, "
                f"{t['gpu_hours']:.2f} GPU-h"]  # fmt: skip


def calibration(cfg: Config, run_dir: Path) -> dict:
    """Predicted (from the IFT priors, as before a run) against recorded search tokens of a finished run, per
    iteration: the check that the planner's token model holds."""
    from psrlm.records import SearchTrace, read_jsonl

    tok = _tokenizer(cfg, run_dir)
    prior = prior_rates(cfg, tok)
    overhead = _prompt_overhead(cfg, tok)
    out = {}
    for it in range(2, len(cfg.iterate.questions) + 2):
        path = RunLayout(run_dir).traces("psrlm", it)
        if not path.exists():
            continue
        traces = read_jsonl(path, SearchTrace)
        recorded = sum(t.gen_tokens for t in traces)
        predicted = search_tokens(cfg, prior, len(traces), overhead)
        pred = predicted["candidate_tokens"] + predicted["judge_tokens"]
        judgments = sum(t.judge_calls for t in traces)
        out[f"M{it}"] = {"questions": len(traces), "recorded_tokens": recorded, "predicted_tokens": round(pred),
                         "ratio": pred / max(1, recorded), "recorded_judgments": judgments,
                         "predicted_judgments": round(predicted["judgments"])}  # fmt: skip
    return out
