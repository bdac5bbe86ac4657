"""Trainer tests on a real tiny model: loss logged, parameters changed, EOS only after final steps."""

import pytest
import torch

from psrlm.configs import TrainConfig
from psrlm.prompts import get_prompts
from psrlm.records import PreferencePair
from psrlm.tiny import load_model, load_tokenizer

PROMPTS = get_prompts("compact")
FAST = TrainConfig(epochs=1, lr=1e-3, batch_size=4, logging_steps=1)


def _pairs() -> list[PreferencePair]:
    q = "Mia has 12 apples. She finds 3 more apples. How many apples does Mia have now?"
    return [
        PreferencePair(
            prompt=PROMPTS.step_prompt(q, []),
            chosen=" She finds 3 more, so she has 12 + 3 = 15. The answer is \\boxed{15}.",
            rejected=" She finds 3 more, so she has 12 + 3 = 16. The answer is \\boxed{16}.",
            meta={"problem_id": "a", "step": 1, "chosen_final": True, "rejected_final": True},
        ),
        PreferencePair(
            prompt=PROMPTS.step_prompt(q + " She gives 2 apples to a friend.", ["She has 12 + 3 = 15."]),
            chosen=" She has 15 - 2 = 13.",
            rejected=" She has 15 + 2 = 17.",
            meta={"problem_id": "b", "step": 2, "chosen_final": False, "rejected_final": False},
        ),
    ] * 4


def _params(path):
    return {k: v.clone() for k, v in load_model(path).state_dict().items()}


def _changed(before: dict, after: dict) -> bool:
    return any(not torch.equal(before[k], after[k]) for k in before)


def test_sft_logs_loss_and_changes_parameters(tiny_model_dir, tmp_path):
    from psrlm.train import sft

    rows = [{"prompt": PROMPTS.solve_prompt("Mia has 2 pens."), "completion": "Step 1: 2 + 1 = 3. \\boxed{3}"}] * 8
    info = sft(tiny_model_dir, rows, FAST, tmp_path / "M1")
    assert info["loss_curve"] and info["final_loss"] > 0
    assert _changed(_params(tiny_model_dir), _params(tmp_path / "M1"))
    assert (tmp_path / "M1" / "train_log.json").exists() and not (tmp_path / "M1.tmp").exists()


def test_step_dpo_keeps_eos_only_on_final_steps(tiny_model_dir, tmp_path):
    from datasets import Dataset
    from trl import DPOConfig

    from psrlm.train import _device_args, dpo_rows, make_step_dpo_trainer_class

    tok = load_tokenizer(tiny_model_dir)
    model, ref = load_model(tiny_model_dir), load_model(tiny_model_dir)
    args = DPOConfig(output_dir=str(tmp_path / "t"), report_to=[], max_length=512, **_device_args(FAST))
    trainer = make_step_dpo_trainer_class()(
        model=model, ref_model=ref, args=args, train_dataset=Dataset.from_list(dpo_rows(_pairs()[:2])),
        processing_class=tok,
    )  # fmt: skip
    final, middle = trainer.train_dataset[0], trainer.train_dataset[1]
    eos = tok.eos_token_id
    assert final["chosen_ids"][-1] == eos and final["rejected_ids"][-1] == eos
    assert eos not in middle["chosen_ids"] and eos not in middle["rejected_ids"]
    # the prompt TRL kept is the whole prompt: it ends on a token boundary
    for row, ex in zip(dpo_rows(_pairs()[:2]), trainer.train_dataset, strict=True):
        assert ex["prompt_ids"] == tok(row["prompt"])["input_ids"]
        assert tok.decode(ex["chosen_ids"]).replace(tok.eos_token, "") == row["chosen"]


def test_search_pairs_end_prompts_on_token_boundary(tiny_model_dir):
    """prompt tokens must be a prefix of prompt+completion tokens, or TRL silently moves the boundary."""
    tok = load_tokenizer(tiny_model_dir)
    for p in _pairs():
        ids = tok(p.prompt)["input_ids"]
        for completion in (p.chosen, p.rejected):
            assert tok(p.prompt + completion)["input_ids"][: len(ids)] == ids


def test_dpo_logs_loss_and_changes_parameters(tiny_model_dir, tmp_path):
    from psrlm.train import dpo

    info = dpo(tiny_model_dir, _pairs(), FAST, tmp_path / "M2")
    assert info["loss_curve"] and info["final_pairs"] == 4 and info["truncated"] == 0
    assert _changed(_params(tiny_model_dir), _params(tmp_path / "M2"))


@pytest.mark.parametrize("stage", ["sft", "dpo"])
def test_lora_is_merged(tiny_model_dir, tmp_path, stage):
    from psrlm import train

    cfg = TrainConfig(epochs=1, lr=1e-2, batch_size=4, logging_steps=1, lora=True, lora_r=4, lora_alpha=8)
    if stage == "sft":
        rows = [{"prompt": "Q: x\nA:\n", "completion": "Step 1: 1 + 1 = 2. \\boxed{2}"}] * 4
        train.sft(tiny_model_dir, rows, cfg, tmp_path / "out")
    else:
        train.dpo(tiny_model_dir, _pairs(), cfg, tmp_path / "out")
    assert not (tmp_path / "out" / "adapter_config.json").exists()  # merged: a plain model
    assert _changed(_params(tiny_model_dir), _params(tmp_path / "out"))
