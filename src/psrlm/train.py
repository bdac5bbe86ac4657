"""Training through TRL: pre-training M0, SFT init (M0 -> M1 on EFT + IFT), step-wise DPO (M_n -> M_n+1), PRMs.

    psrlm train sft -c configs/demo.yaml --model checkpoints/arith-m0 --ift runs/demo/data/ift.jsonl \
        --eft runs/demo/data/eft_train.jsonl --out runs/demo/models/my-M1
    psrlm train dpo -c configs/demo.yaml --model runs/demo/models/psrlm-M1 --pairs runs/demo/psrlm/it2/pairs.jsonl \
        --out runs/demo/models/my-M2
    psrlm train prm -c configs/initdata-arith.yaml --model M --rows prm_rows.jsonl --out my-prm

`psrlm iterate` trains through the same `train_stage` as these commands. Every path trains fp32 master weights
(bf16 compute by autocast where the hardware has it) and saves in the checkpoint's own dtype.

Nothing here writes a loss. SFT is TRL's `SFTTrainer` on prompt/completion rows (loss on the completion only, EOS
appended). Step-wise DPO (paper Eq. 6-8) is TRL's `DPOTrainer` on rows whose prompt is question + accepted steps
and whose chosen/rejected are single steps; the one thing added is that TRL's EOS is kept only on a *final* step
(one with the answer): EOS after an intermediate step would teach the model to stop after one step.

A model is written to a temp folder and renamed when complete, so a killed run never leaves a model that looks
finished. Each output folder holds `train_log.json` (loss curve, settings, length statistics).

Over 500 lines because the stages and their shared setup are one concern that reads best whole: every stage goes
through the same load (ZeRO-3 initialization order, fp32 masters), length plan, resume point and rank-safe save
(every rank gathers, the main process writes), and the ZeRO-3 rules in that setup are only clear beside the
stages that depend on them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from psrlm import progress
from psrlm.configs import TrainConfig
from psrlm.prompts import Prompts
from psrlm.records import JudgeExample, Manifest, PreferencePair, StepSolution
from psrlm.steps import render_steps
from psrlm.tiny import config_key

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- rows


def ift_rows(solutions: list[StepSolution], prompts: Prompts) -> list[dict]:
    """IFT: solve prompt -> the whole step-format solution."""
    rows = []
    for s in solutions:
        q = s.meta.get("question")
        if not q:
            raise ValueError(f"IFT solution {s.problem_id} has no meta.question")
        rows.append({"prompt": prompts.solve_prompt(q), "completion": render_steps(s.steps)})
    return rows


def eft_rows(examples: list[JudgeExample], prompts: Prompts) -> list[dict]:
    """EFT: judge prompt -> explanation + [[A]]/[[B]]."""
    return [
        {
            "prompt": prompts.judge_prompt(e.question, e.prev_steps, e.step_a, e.step_b),
            "completion": prompts.judge_completion(e.explanation, e.verdict),
        }
        for e in examples
    ]


def dpo_rows(pairs: list[PreferencePair]) -> list[dict]:
    """TRL preference rows; `*_final` say where TRL's EOS may stay."""
    return [
        {
            "prompt": p.prompt,
            "chosen": p.chosen,
            "rejected": p.rejected,
            "chosen_final": bool(p.meta.get("chosen_final", True)),
            "rejected_final": bool(p.meta.get("rejected_final", True)),
        }
        for p in pairs
    ]


# --------------------------------------------------------------------------------------- shared setup


def _device_args(tc: TrainConfig) -> dict:
    import torch

    from psrlm.hardware import train_bf16

    # Explicit on every path: TRL's bf16 default fails on CPU, and emulated bf16 on a CPU without it is ~30x slower.
    return {"bf16": train_bf16(tc.bf16), "fp16": False, "use_cpu": not torch.cuda.is_available()}


def trainer_dir(out_dir: Path, tc: TrainConfig, data_key: str) -> Path:
    """Where a stage's Trainer keeps its checkpoints: `<out>.trainer/<fingerprint of the settings and data>`, so a
    rerun with the same settings resumes from its last checkpoint and one with other settings never does."""
    from psrlm.folders import fingerprint

    settings = {k: v for k, v in dataclasses.asdict(tc).items() if k not in ("logging_steps", "save_steps")}
    return Path(out_dir).with_name(Path(out_dir).name + ".trainer") / fingerprint({"tc": settings, "data": data_key})


def _resume_point(output_dir: Path) -> str | None:
    """The newest complete checkpoint (`trainer_state.json` is written last): one cut short by a kill while it was
    being saved is passed over."""
    import re

    found = sorted(((int(m.group(1)), p) for p in Path(output_dir).glob("checkpoint-*")
                    if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)  # fmt: skip
    for _, p in found:
        if (p / "trainer_state.json").exists():
            return str(p)
        log.warning("%s is incomplete (killed while saving?): resuming from an earlier checkpoint", p)
    return None


def _common_args(tc: TrainConfig, output_dir: Path, report: dict | None = None) -> dict:
    """TrainingArguments shared by every stage. `report`: tracking.trainer_args (report_to, run_name, project)."""
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=tc.epochs,
        learning_rate=tc.lr,
        per_device_train_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum,
        warmup_steps=tc.warmup_steps,
        weight_decay=tc.weight_decay,
        lr_scheduler_type=tc.lr_scheduler,
        logging_steps=tc.logging_steps,
        seed=tc.seed,
        # periodic checkpoints (train.save_steps) let a killed job resume where it stopped
        save_strategy="steps" if tc.save_steps else "no",
        save_steps=tc.save_steps or 500,
        save_total_limit=2,
        **(report or {"report_to": []}),
        activation_checkpointing=tc.gradient_checkpointing,  # off for tiny models: recomputation costs more
        dataloader_num_workers=0,
        **progress.trainer_args(),  # the step bar on a terminal, a line per logging step in a log file
        **({"train_sampling_strategy": tc.sampler} if tc.sampler != "random" else {}),
        **_device_args(tc),
    )


def _peft_config(tc: TrainConfig):
    if not tc.lora:
        return None
    from peft import LoraConfig

    return LoraConfig(r=tc.lora_r, lora_alpha=tc.lora_alpha, target_modules="all-linear", task_type="CAUSAL_LM")


def _length_plan(lengths: list[int], tc: TrainConfig, model_max: int) -> tuple[int, int]:
    """max_length (from the data unless set) and how many examples exceed it and will be truncated."""
    limit = tc.max_length or min(max(lengths, default=1), model_max)
    cut = sum(n > limit for n in lengths)
    if cut:  # reported in train_log.json too; a silent cut would train on examples that lost their ends
        log.warning("%d of %d examples are longer than max_length %d (model limit %d) and will be truncated",
                    cut, len(lengths), limit, model_max)  # fmt: skip
    return limit, cut


def _padding_free(tc: TrainConfig, cut: int) -> bool:
    """train.padding_free, refused when examples need truncating: TRL does not truncate padding-free batches."""
    if tc.padding_free and cut:
        raise ValueError(f"padding_free=true, but {cut} examples are longer than max_length and would need truncating; "
                         "set padding_free to false or raise max_length")  # fmt: skip
    return tc.padding_free


def _whole(p):
    """A context in which parameter `p` holds its whole tensor: one that ZeRO-3 partitioned (`ds_id`; outside a
    gather it is `torch.empty(0)`) is gathered from every rank, which is a collective: every rank must enter it, for
    the same parameters in the same order. Any other parameter is whole already."""
    if hasattr(p, "ds_id"):
        import deepspeed

        return deepspeed.zero.GatheredParameters([p], modifier_rank=None)
    from contextlib import nullcontext

    return nullcontext()


class ChangeProbe:
    """Did training move the weights, and does the move survive saving? A fixed sample of up to `per_tensor`
    elements of every trainable tensor, read before and after training: `changed` is the share that moved in the
    weights the model holds (fp32 master weights, except under DeepSpeed bf16, where the model's copy is bf16),
    `changed_as_saved` the share still different once both are rounded to the saved dtype.
    (In bf16 an update smaller than half a unit in the last place rounds away: at the paper's DPO lr, 5e-7, a few
    hundred steps move a weight of 0.02 by less than that.) Cheap at any scale: a few hundred numbers per tensor.

    Under ZeRO-3 each tensor is gathered, one at a time, to read its sample (`_whole`): building the probe and
    `measure` are collectives that every rank runs, in the same order, with the same sample (one seeded generator)
    and the same result."""

    def __init__(self, model, per_tensor: int = 256):
        import torch

        gen = torch.Generator().manual_seed(0)
        self.samples = []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            with _whole(p):
                if p.numel():
                    idx = torch.randperm(p.numel(), generator=gen)[:per_tensor]
                    self.samples.append((name, idx, p.detach().flatten()[idx.to(p.device)].float().cpu().clone()))

    def measure(self, model, saved_dtype) -> dict:
        params = dict(model.named_parameters())
        moved = kept_moved = total = 0
        for name, idx, before in self.samples:
            if name not in params:
                continue
            with _whole(params[name]):
                after = params[name].detach().flatten()[idx.to(params[name].device)].float().cpu()
            moved += int((after != before).sum())
            kept_moved += int((after.to(saved_dtype) != before.to(saved_dtype)).sum())
            total += len(idx)
        return {"changed": moved / max(1, total), "changed_as_saved": kept_moved / max(1, total), "sampled": total}


def _finish(trainer, tokenizer, out_dir: Path, info: dict, lora: bool, save_dtype=None, probe=None, load=None) -> dict:
    """Save the trained model, rank-safe: every process takes part in gathering the weights (ZeRO-3 shards them),
    only the main process writes (temp folder + rename), and all wait for it before returning. `load`: this rank's
    footprint after loading (_load); the log keeps every rank's."""
    import torch
    from accelerate.utils import gather_object

    from psrlm.tiny import save_model

    acc = trainer.accelerator
    model = trainer.model
    saved = save_dtype or torch.float32
    args = trainer.args
    info = {**info, "processes": acc.num_processes,
            "effective_batch": args.per_device_train_batch_size * args.gradient_accumulation_steps * acc.num_processes}  # fmt: skip
    if load is not None:  # a collective where there are several processes
        info = {**info, "load": gather_object([load]) if acc.num_processes > 1 else [load]}
    if probe is not None:  # on every rank: under ZeRO-3 reading a parameter is a collective gather
        info = {**info, "weights": probe.measure(acc.unwrap_model(model), saved)}
        w = info["weights"]
        if acc.is_main_process and w["changed"] > 0.5 and w["changed_as_saved"] < 0.5 * w["changed"]:
            log.warning("training moved %.0f%% of the sampled weights, but only %.0f%% still differ in %s, the dtype "
                        "the model is saved in: updates this small round away (train.save_dtype=float32 keeps them)",
                        100 * w["changed"], 100 * w["changed_as_saved"], saved)  # fmt: skip
    if save_dtype is not None:  # trained in fp32 (master weights), saved as asked (by default: as the source was)
        info = {**info, "saved_dtype": str(save_dtype).removeprefix("torch.")}
    history = [h for h in trainer.state.log_history if "loss" in h]
    info = {
        **info,
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in history],
        "final_loss": history[-1]["loss"] if history else None,
        "steps": trainer.state.global_step,
    }
    distributed = acc.num_processes > 1 or acc.state.deepspeed_plugin is not None
    if torch.distributed.is_available() and torch.distributed.is_initialized():  # how the job ran, for its log
        plugin = acc.state.deepspeed_plugin
        info = {**info, "distributed": {"type": acc.distributed_type.value, "backend": torch.distributed.get_backend(),
                                        "zero_stage": plugin.zero_stage if plugin is not None else None}}  # fmt: skip
    # a collective: every rank calls it, with the model as accelerate prepared it (DeepSpeed's engine gathers ZeRO-3
    # partitions; the bare model has no such method)
    state = acc.get_state_dict(trainer.model_wrapped) if distributed and not lora else None
    if acc.is_main_process:
        unwrapped = acc.unwrap_model(model)
        if lora:
            unwrapped = unwrapped.merge_and_unload()
        save_model(unwrapped, tokenizer, out_dir, info, state_dict=state, dtype=save_dtype)
        (out_dir / "train_log.json").write_text(json.dumps(info, indent=2) + "\n")
    acc.wait_for_everyone()
    return info


def _model_facts(model_dir: Path):
    """What a trainer config is built from, read without loading the weights: the tokenizer, the context length
    (config.json) and the dtype the checkpoint was saved in."""
    from transformers import AutoConfig

    from psrlm.tiny import load_tokenizer, saved_dtype

    max_position = AutoConfig.from_pretrained(str(model_dir)).max_position_embeddings
    return load_tokenizer(model_dir), max_position, saved_dtype(model_dir)


def _load(args, model_dir: Path, ref_dir: Path | None = None, ref_dtype=None, auto_class=None, **kwargs):
    """The model at `model_dir` in fp32 whatever dtype it was saved in (and a reference model from `ref_dir`, in
    `ref_dtype`), loaded once its trainer config `args` exists, and this rank's footprint after loading.

    The order is the libraries' documented one (transformers' DeepSpeed guide: create the TrainingArguments before
    `from_pretrained` for ZeRO-3 initialization; HfDeepSpeedConfig's docstring): under `accelerate launch` with
    DeepSpeed ZeRO-3, building the trainer config registers the DeepSpeed config (a global weak reference to an object
    `args` keeps alive), and `from_pretrained` then builds each model inside `deepspeed.zero.Init`, so every rank
    holds only its partition of the weights from the start instead of a whole fp32 copy (8 ranks x policy +
    reference of a 72B model). Rank 0 still reads the whole checkpoint while it loads (transformers hands it out
    module by module). Anywhere else the order changes nothing.

    fp32 master weights are what make small updates land: AdamW steps at the paper's lr (5e-7) applied to bf16
    weights round away almost entirely. bf16 compute comes from autocast (`bf16` in the trainer args)."""
    import torch
    from transformers import AutoModelForCausalLM

    from psrlm.checkpoints import load_pretrained
    from psrlm.footprint import host_memory, param_bytes

    # `args` is unused here but must be alive during the loads: it holds the DeepSpeed config the loads read
    load = {"rank": int(os.environ.get("RANK", "0"))}
    with host_memory(load):
        if auto_class is None:  # a checkpoint loaded as what it was saved as: its config must describe its weights
            model = load_pretrained(AutoModelForCausalLM, model_dir, dtype=torch.float32)
        else:  # a new head on the checkpoint's backbone (a PRM)
            model = auto_class.from_pretrained(str(model_dir), dtype=torch.float32, **kwargs)
        ref = None
        if ref_dir is not None:
            ref = load_pretrained(AutoModelForCausalLM, ref_dir, dtype=ref_dtype or torch.float32)
    load.update(param_bytes(model, *([ref] if ref is not None else [])))
    return model, ref, load


def _save_dtype(tc: TrainConfig, source):
    import torch

    return {"source": source, "float32": torch.float32, "bfloat16": torch.bfloat16}[tc.save_dtype]


# --------------------------------------------------------------------------------------------- stages


def pretrain(model_dir: Path, texts: list[str], tc: TrainConfig, out_dir: Path, report: dict | None = None) -> dict:
    """Causal-LM training on raw text (no prompt masking): how the base model M0 learns the domain."""
    return _run_sft(
        "pretrain", model_dir, [{"text": t} for t in texts], tc, out_dir, report, dataset_text_field="text"
    )


def sft(model_dir: Path, rows: list[dict], tc: TrainConfig, out_dir: Path, report: dict | None = None) -> dict:
    """SFT on prompt/completion rows with the loss on completions only (TRL appends EOS to each completion)."""
    return _run_sft("sft", model_dir, rows, tc, out_dir, report, completion_only_loss=True)


def _run_sft(
    stage: str, model_dir: Path, rows: list[dict], tc: TrainConfig, out_dir: Path, report: dict | None, **sft_args
) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok, max_position, save_dtype = _model_facts(model_dir)
    lengths = [len(tok(r.get("text") or r["prompt"] + r["completion"])["input_ids"]) + 1 for r in rows]
    max_length, cut = _length_plan(lengths, tc, max_position)
    free = _padding_free(tc, cut)
    work = trainer_dir(Path(out_dir), tc, config_key(model_dir, rows))
    # padding-free batches are never truncated by TRL: they hold only examples that fit (checked above)
    args = SFTConfig(**_common_args(tc, work, report), max_length=None if free else max_length, padding_free=free,
                     **sft_args)  # fmt: skip
    model, _, load = _load(args, model_dir)  # after the config: see _load
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows).shuffle(seed=tc.seed),
        processing_class=tok,
        peft_config=_peft_config(tc),
    )
    probe = ChangeProbe(trainer.model)
    start = time.time()
    resume = _resume_point(work)
    progress.trainer_quiet(trainer)
    trainer.train(resume_from_checkpoint=resume)
    info = {"stage": stage, "examples": len(rows), "max_length": max_length, "truncated": cut, "resumed_from": resume,
            "padding_free": free}  # fmt: skip
    info["wall_s"] = time.time() - start
    info["tokens"] = sum(lengths)
    return _finish(trainer, tok, Path(out_dir), info, tc.lora, _save_dtype(tc, save_dtype), probe, load)


def make_step_dpo_trainer_class():
    """TRL's DPOTrainer, with EOS kept only on final steps. Built lazily so importing train.py stays cheap."""
    from trl import DPOTrainer

    class StepDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            eos = self._tokenizer.eos_token_id

            def drop_eos_unless_final(example):
                for side in ("chosen", "rejected"):
                    ids = example[f"{side}_ids"]
                    if not example[f"{side}_final"] and len(ids) > 1 and ids[-1] == eos:
                        example[f"{side}_ids"] = ids[:-1]
                return example

            return dataset.map(drop_eos_unless_final)

    return StepDPOTrainer


def dpo(
    model_dir: Path,
    pairs: list[PreferencePair],
    tc: TrainConfig,
    out_dir: Path,
    ref_dir: Path | None = None,
    report: dict | None = None,
) -> dict:
    """Step-wise DPO of the model at `model_dir` against the reference at `ref_dir` (default: the same weights)."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig

    if not pairs:
        raise ValueError("DPO needs at least one preference pair")
    tok, max_position, save_dtype = _model_facts(model_dir)
    rows = dpo_rows(pairs)
    # in tokens, the longer of the two sides (+1 for EOS): characters say little about tokens
    lengths = [max(len(tok(r["prompt"] + r[side])["input_ids"]) for side in ("chosen", "rejected")) + 1 for r in rows]
    max_length, cut = _length_plan(lengths, tc, max_position)
    work = trainer_dir(Path(out_dir), tc, config_key(model_dir, rows, ref_dir))
    args = DPOConfig(
        **_common_args(tc, work, report),
        beta=tc.beta,
        max_length=max_length,
        **({"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, tc.nll_weight]} if tc.nll_weight else {}),
        # TRL caches precomputed reference log-probs of an in-memory dataset in a per-process temp folder that the
        # other ranks cannot read: a multi-process job scores the reference online instead
        precompute_ref_log_probs=tc.precompute_ref_log_probs and int(os.environ.get("WORLD_SIZE", "1")) == 1,
    )
    # after the config (see _load), the reference too: under ZeRO-3 TRL partitions it like the policy
    # (trl.models.prepare_deepspeed). With LoRA the reference is the base model with the adapter switched off. The
    # reference is never updated: it may stay in its saved dtype where bf16 compute is native.
    ref_dtype = save_dtype if _device_args(tc)["bf16"] else torch.float32
    model, ref, load = _load(args, model_dir, None if tc.lora else ref_dir or model_dir, ref_dtype)
    trainer = make_step_dpo_trainer_class()(
        model=model,
        ref_model=ref,
        args=args,
        train_dataset=Dataset.from_list(rows).shuffle(seed=tc.seed),
        processing_class=tok,
        peft_config=_peft_config(tc),
    )
    probe = ChangeProbe(trainer.model)
    start = time.time()
    resume = _resume_point(work)
    progress.trainer_quiet(trainer)
    trainer.train(resume_from_checkpoint=resume)
    rewards = [h for h in trainer.state.log_history if "rewards/accuracies" in h]
    info = {
        "stage": "dpo",
        "pairs": len(pairs),
        "beta": tc.beta,
        "nll_weight": tc.nll_weight,
        "max_length": max_length,
        "truncated": cut,
        "final_pairs": sum(r["chosen_final"] for r in rows),
        "reference": str(ref_dir or model_dir),
        "resumed_from": resume,
        "wall_s": time.time() - start,
        "reward_accuracy": rewards[-1]["rewards/accuracies"] if rewards else None,
        "reward_margin": rewards[-1].get("rewards/margins") if rewards else None,
        # beta * log-ratio to the reference of each side: a chosen reward below 0 means DPO lowered the likelihood
        # of the steps it was told to prefer (likelihood displacement, common when the two sides differ in a token)
        "chosen_reward": rewards[-1].get("rewards/chosen") if rewards else None,
        "rejected_reward": rewards[-1].get("rewards/rejected") if rewards else None,
    }
    return _finish(trainer, tok, Path(out_dir), info, tc.lora, _save_dtype(tc, save_dtype), probe, load)


def prm(
    model_dir: Path,
    rows: list[dict],
    tc: TrainConfig,
    out_dir: Path,
    separator: str = "\n",
    report: dict | None = None,
) -> dict:
    """A token-classification process reward model on rows {prompt, completions, labels} (one bool per step).

    TRL's `PRMTrainer` when the installed TRL still has it (`trl.experimental.prm`, TRL <= 1.13; TRL removed it
    in huggingface/trl#7133). Otherwise transformers' `Trainer` on the same rows tokenized exactly as PRMTrainer
    tokenizes them (prm.prm_token_row), with the same collator, so either way the checkpoint reads the same in
    prm.TokenClassificationPRM. The backbone starts from `model_dir` (a causal LM), the two-label head is new."""
    from datasets import Dataset
    from transformers import AutoModelForTokenClassification, DataCollatorForTokenClassification

    from psrlm.prm import prm_token_row

    tok, max_position, _ = _model_facts(model_dir)
    tok.padding_side = "right"  # in memory only: the causal backbone reads positions from the left edge
    tokenized = [prm_token_row(tok, r["prompt"], r["completions"], r["labels"], separator) for r in rows]
    lengths = [len(t["input_ids"]) for t in tokenized]
    max_length, cut = _length_plan(lengths, tc, max_position)
    work = trainer_dir(Path(out_dir), tc, config_key(model_dir, rows, separator))
    import warnings

    try:
        with warnings.catch_warnings():  # "trl.experimental is unstable": known, and why the fallback exists
            warnings.simplefilter("ignore")
            from trl.experimental.prm import PRMConfig, PRMTrainer
    except ImportError:
        PRMTrainer = None
    if PRMTrainer is not None:
        args = PRMConfig(**_common_args(tc, work, report), step_separator=separator, max_length=max_length)
    else:
        from transformers import TrainingArguments

        args = TrainingArguments(**_common_args(tc, work, report))
    model, _, load = _load(args, model_dir, auto_class=AutoModelForTokenClassification, num_labels=2,
                           id2label={0: "-", 1: "+"}, label2id={"-": 0, "+": 1})  # fmt: skip  # after the config
    model.config.pad_token_id = tok.pad_token_id
    if PRMTrainer is not None:
        trainer = PRMTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows).shuffle(seed=tc.seed), processing_class=tok
        )
        used = "trl.experimental.prm.PRMTrainer"
    else:
        from transformers import Trainer

        tokenized = [{k: v[:max_length] for k, v in t.items()} for t in tokenized]
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(tokenized).shuffle(seed=tc.seed),
            data_collator=DataCollatorForTokenClassification(tok),
            processing_class=tok,
        )
        used = "transformers.Trainer in PRMTrainer's data format (this TRL has no PRMTrainer)"
    probe = ChangeProbe(trainer.model)
    start = time.time()
    resume = _resume_point(work)
    progress.trainer_quiet(trainer)
    trainer.train(resume_from_checkpoint=resume)
    info = {
        "stage": "prm",
        "trainer": used,
        "rows": len(rows),
        "labelled_steps": sum(len(r["labels"]) for r in rows),
        "positive_rate": sum(map(sum, (r["labels"] for r in rows))) / max(1, sum(len(r["labels"]) for r in rows)),
        "max_length": max_length,
        "truncated": cut,
        "separator": separator,
        "wall_s": time.time() - start,
    }
    return _finish(trainer, tok, Path(out_dir), info, lora=False, probe=probe, load=load)


# ------------------------------------------------------------------------------- stages from files (CLI + driver)

MANIFEST_NAME = "psrlm_manifest.json"


def rows_from_files(ift: list[Path], eft: list[Path], score: list[Path], prompts: Prompts) -> list[dict]:
    """SFT rows: IFT solutions (StepSolution, meta.question), EFT judgments (JudgeExample), SRLM scoring examples
    (ScoreExample)."""
    from psrlm.prompts import score_target
    from psrlm.records import ScoreExample, read_jsonl

    rows = ift_rows([s for f in ift for s in read_jsonl(f, StepSolution)], prompts)
    rows += eft_rows([e for f in eft for e in read_jsonl(f, JudgeExample)], prompts)
    rows += [{"prompt": prompts.score_prompt(e.question, e.response), "completion": score_target(e.explanation, e.score)}
             for f in score for e in read_jsonl(f, ScoreExample)]  # fmt: skip
    if not rows:
        raise ValueError("no training rows: give --ift, --eft and/or --score files")
    return rows


def train_stage(
    stage: str,
    model_dir: Path,
    out_dir: Path,
    cfg,
    data: dict[str, list[Path]],
    *,
    ref_dir: Path | None = None,
    iteration: int = 0,
    method: str = "",
    seed_offset: int = 0,
    settings: dict | None = None,
    metrics: dict | None = None,
) -> Manifest:
    """One training stage from files, the same for `psrlm train sft|dpo|prm` and for `psrlm iterate`: train, save
    the model (temp folder + rename) and write `<out>/psrlm_manifest.json` (parent, data files with sha256,
    config, metrics, seeds, wall time, settings). Returns the manifest.

    data keys: sft: "ift", "eft", "score"; dpo: "pairs" (PreferencePair JSONL); prm: "rows" ({prompt, completions,
    labels} JSONL, TRL's stepwise-supervision format)."""
    import time
    from contextlib import nullcontext

    from psrlm.configs import config_to_dict
    from psrlm.folders import FolderLock, flatten
    from psrlm.prompts import prompts_of
    from psrlm.records import Manifest, read_jsonl, sha256_file, write_json

    out_dir = Path(out_dir)
    files = [Path(f) for fs in data.values() for f in fs]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"training data not found: {f}")
    tc = {"sft": cfg.sft, "dpo": cfg.dpo.for_iteration(iteration), "prm": cfg.initdata.prm_train}[stage]
    tc = dataclasses.replace(tc, seed=tc.seed + seed_offset)
    from psrlm.tracking import check_installed, trainer_args

    check_installed(cfg)
    report = trainer_args(cfg, out_dir.name)  # the trainer's tracking run: <run_name>-<model>
    start = time.time()
    main = is_main_process()
    lock = FolderLock(out_dir.with_name(out_dir.name + ".trainer"), f"train {stage}") if main else nullcontext()
    with lock:  # one job per output (its processes are one writer: only the main one writes)
        if stage == "sft":
            rows = rows_from_files(data.get("ift", []), data.get("eft", []), data.get("score", []),
                                   prompts_of(cfg))  # fmt: skip
            info = sft(model_dir, rows, tc, out_dir, report)
        elif stage == "dpo":
            pairs = [p for f in data["pairs"] for p in read_jsonl(f, PreferencePair)]
            info = dpo(model_dir, pairs, tc, out_dir, ref_dir=ref_dir or model_dir, report=report)
        elif stage == "prm":
            rows = [r for f in data["rows"] for r in read_jsonl(f)]
            info = prm(model_dir, rows, tc, out_dir, separator=cfg.initdata.prm_step_separator, report=report)
        else:
            raise ValueError(f"unknown training stage {stage!r}; choose sft, dpo or prm")
    info = {
        **info,
        "lr": tc.lr,
    }  # the rate this model trained at (dpo.lr_scale_by_iteration gives each iteration its own)
    manifest = Manifest(
        iteration=iteration,
        method=method or stage,
        parent_model=str(model_dir),
        model_path=str(out_dir),
        data_files={str(f): sha256_file(f) for f in files},
        config=config_to_dict(cfg),
        metrics={**(metrics or {}), "train": info},
        seeds={stage: tc.seed},
        wall_time_s=time.time() - start,
        settings=flatten(settings or {}),
    )
    if main:
        write_json(out_dir / MANIFEST_NAME, dataclasses.asdict(manifest))
    return manifest


def is_main_process() -> bool:
    """Rank 0 of a job `accelerate launch` / torchrun started (RANK), or a plain process."""
    return int(os.environ.get("RANK", "0")) == 0
