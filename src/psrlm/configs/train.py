"""One training stage: the `pretrain`, `sft`, `dpo` and `rft` sections (and `initdata.prm_train`) share one class,
each with its own defaults (configs/recipe.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from psrlm.configs.checks import Rule
from psrlm.hardware import _parse_bool_setting

LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay")  # fmt: skip


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
    lr_scale_by_iteration: `lr` times these, one per iteration, M2's first: [1, 0.2] trains M2 at lr and M3, M4, ...
        at lr / 5 (the last entry repeats); empty = `lr` every iteration, as the paper. Each iteration starts from
        the last one's model, so a rate chosen for one step compounds over several (docs/results.md, the frontier
        experiment: the oracle upper bound given back at a constant rate).   (dpo, rft)
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
    lr_scale_by_iteration: list[float] = field(default_factory=list)
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

    def rules(self) -> list[Rule]:
        """The checks of every training stage; dpo has one more (configs/rules.py: context_rules)."""
        return [
            ("epochs", self.epochs > 0, "must be > 0"),
            ("lr", self.lr > 0, "must be > 0"),
            ("batch_size", self.batch_size >= 1, "must be >= 1"),
            ("grad_accum", self.grad_accum >= 1, "must be >= 1"),
            ("warmup_steps", self.warmup_steps >= 0, "must be >= 0"),
            ("weight_decay", self.weight_decay >= 0, "must be >= 0"),
            ("lr_scheduler", self.lr_scheduler in LR_SCHEDULERS, f"choose one of {', '.join(LR_SCHEDULERS)}"),
            ("max_length", self.max_length >= 0, "must be >= 0 (0 = from the data)"),
            ("beta", self.beta > 0, "must be > 0"),
            ("nll_weight", self.nll_weight >= 0, "must be >= 0 (0 = plain DPO)"),
            ("lr_scale_by_iteration",
             all(isinstance(v, (int, float)) and v > 0 for v in self.lr_scale_by_iteration),
             "must list factors > 0 of lr, M2's first (empty = lr every iteration)"),
            ("lora_r", self.lora_r >= 1, "must be >= 1"),
            ("lora_alpha", self.lora_alpha > 0, "must be > 0"),
            ("bf16", _parse_bool_setting(self.bf16) in (True, False, "auto"), "choose auto, true or false"),
            ("save_dtype", self.save_dtype in ("source", "float32", "bfloat16"),
             "choose source, float32 or bfloat16"),
            ("logging_steps", self.logging_steps >= 1, "must be >= 1"),
            ("save_steps", self.save_steps >= 0, "must be >= 0 (0 = no checkpoints)"),
            ("padding_free", isinstance(self.padding_free, bool), "choose true or false"),
            ("sampler", self.sampler in ("random", "group_by_length"), "choose random or group_by_length"),
        ]  # fmt: skip

    def for_iteration(self, iteration: int) -> TrainConfig:
        """The settings that train M_iteration: `lr` scaled by its `lr_scale_by_iteration` entry (M2 = the first, the
        last one repeating), the list itself dropped, so a model's identity names the rate it was trained at."""
        if not self.lr_scale_by_iteration:
            return self
        scale = self.lr_scale_by_iteration[min(max(iteration - 2, 0), len(self.lr_scale_by_iteration) - 1)]
        return dataclasses.replace(self, lr=self.lr * scale, lr_scale_by_iteration=[])
