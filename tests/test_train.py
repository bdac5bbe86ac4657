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


def test_dpo_nll_weight_adds_the_chosen_steps_nll(tiny_model_dir, tmp_path):
    # RPO: the first step's loss is DPO's log 2 (policy = reference) plus the weighted NLL of the chosen steps,
    # which for an untrained 1,000-token vocabulary is several nats per token
    from psrlm.train import dpo

    plain = dpo(tiny_model_dir, _pairs(), FAST, tmp_path / "plain")
    rpo = dpo(tiny_model_dir, _pairs(), TrainConfig(epochs=1, lr=1e-3, batch_size=4, logging_steps=1, nll_weight=1.0),
              tmp_path / "rpo")  # fmt: skip
    assert plain["loss_curve"][0]["loss"] == pytest.approx(0.693, abs=0.01)
    assert rpo["loss_curve"][0]["loss"] > plain["loss_curve"][0]["loss"] + 2
    assert rpo["nll_weight"] == 1.0 and plain["nll_weight"] == 0.0
    assert plain["chosen_reward"] is not None and plain["rejected_reward"] is not None


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


def _bf16_copy(tiny_model_dir, out):
    import shutil

    shutil.copytree(tiny_model_dir, out)
    model = load_model(tiny_model_dir).to(torch.bfloat16)
    model.save_pretrained(out)  # config.json now says bfloat16, as every Qwen2.5 release does
    return out


def test_a_bf16_checkpoint_trains_fp32_master_weights_and_is_saved_as_bf16(tiny_model_dir, tmp_path, caplog):
    """The reported near no-op: 4 DPO steps at lr 5e-7 on a bf16 copy changed 0.65 % of the weights (pure bf16
    AdamW), against 99.99 % on the fp32 copy. Trained from fp32 master weights, both now move nearly every
    weight; the bf16 copy is saved in bf16, which rounds most of such small moves away (reported, and warned)."""
    import json
    import logging

    from psrlm.train import dpo

    tiny_cfg = TrainConfig(epochs=1, lr=5e-7, batch_size=2, logging_steps=1, bf16=False)
    bf16_dir = _bf16_copy(tiny_model_dir, tmp_path / "bf16")
    assert json.loads((bf16_dir / "config.json").read_text())["dtype"] == "bfloat16"
    with caplog.at_level(logging.WARNING):
        from_bf16 = dpo(bf16_dir, _pairs(), tiny_cfg, tmp_path / "M2-bf16")
    from_fp32 = dpo(tiny_model_dir, _pairs(), tiny_cfg, tmp_path / "M2-fp32")
    assert from_bf16["steps"] == from_fp32["steps"] == 4
    for info in (from_bf16, from_fp32):
        assert info["weights"]["changed"] > 0.95  # fp32 master weights: every small update lands
    assert from_fp32["weights"]["changed_as_saved"] > 0.95
    assert from_bf16["saved_dtype"] == "bfloat16" and from_fp32["saved_dtype"] == "float32"
    assert json.loads((tmp_path / "M2-bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    assert from_bf16["weights"]["changed_as_saved"] < 0.5 and "round away" in caplog.text


def test_save_dtype_float32_keeps_small_updates(tiny_model_dir, tmp_path):
    from psrlm.train import dpo

    bf16_dir = _bf16_copy(tiny_model_dir, tmp_path / "bf16")
    info = dpo(bf16_dir, _pairs(), TrainConfig(epochs=1, lr=5e-7, batch_size=2, save_dtype="float32"),
               tmp_path / "M2")  # fmt: skip
    assert info["saved_dtype"] == "float32" and info["weights"]["changed_as_saved"] > 0.95
    before, after = load_model(bf16_dir).state_dict(), load_model(tmp_path / "M2").state_dict()
    moved = sum(int((before[k].float() != after[k].float()).sum()) for k in before)
    assert moved / sum(v.numel() for v in before.values()) > 0.9


def test_psrlm_train_commands_write_a_model_and_its_manifest(tiny_model_dir, tmp_path, capsys):
    """`psrlm train sft|dpo`: the same train_stage the loop uses, from files, into a folder with its manifest."""
    import json

    from psrlm.cli import main
    from psrlm.records import StepSolution, sha256_file, write_jsonl

    from .conftest import SMALL

    ift = tmp_path / "ift.jsonl"
    write_jsonl(ift, [StepSolution("a", ["2 + 1 = 3.", "\\boxed{3}"], "3", {"question": "Mia has 2 pens."})] * 8)
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, _pairs())
    sets = sum((["--set", s] for s in SMALL + [f"paths.run_dir={tmp_path / 'run'}", "sft.lr=0.001", "sft.batch_size=4",
                                              "dpo.lr=0.001", "dpo.batch_size=4"]), [])  # fmt: skip
    assert main(["train", "sft", *sets, "--model", str(tiny_model_dir), "--ift", str(ift), "--out",
                 str(tmp_path / "M1")]) == 0  # fmt: skip
    assert main(["train", "dpo", *sets, "--model", str(tmp_path / "M1"), "--pairs", str(pairs), "--out",
                 str(tmp_path / "M2"), "--iteration", "3", "--set", "dpo.lr_scale_by_iteration=[1, 0.5]"]) == 0  # fmt: skip
    for name, data, stage in (("M1", ift, "sft"), ("M2", pairs, "dpo")):
        manifest = json.loads((tmp_path / name / "psrlm_manifest.json").read_text())
        assert manifest["data_files"] == {str(data): sha256_file(data)}
        assert manifest["metrics"]["train"]["stage"] == stage and manifest["metrics"]["train"]["steps"] > 0
    m2 = json.loads((tmp_path / "M2" / "psrlm_manifest.json").read_text())
    assert m2["parent_model"] == str(tmp_path / "M1")
    assert m2["metrics"]["train"]["lr"] == pytest.approx(0.0005)  # iteration 3: dpo.lr x the second scale
    assert _changed(_params(tmp_path / "M1"), _params(tmp_path / "M2"))


def test_dpo_max_length_counts_tokens_of_both_sides(tiny_model_dir, tmp_path):
    from psrlm.train import dpo

    long_rejected = _pairs()[1]
    long_rejected = PreferencePair(long_rejected.prompt, " ok.", " " + "7 + 7 = 14, " * 12, long_rejected.meta)
    info = dpo(tiny_model_dir, [long_rejected] * 4, FAST, tmp_path / "M2")
    tok = load_tokenizer(tiny_model_dir)
    assert info["max_length"] == len(tok(long_rejected.prompt + long_rejected.rejected)["input_ids"]) + 1
    assert info["truncated"] == 0


def test_padding_free_sft_learns_what_padded_sft_learns(tiny_model_dir, tmp_path):
    """Rows of very different lengths: padded and padding-free batches see the same examples per step and give the
    same loss (transformers keeps packed examples apart by their positions); a recipe that would cut examples is refused."""
    from psrlm.train import sft

    rows = [{"prompt": PROMPTS.solve_prompt(f"Mia has {i} pens." + " She buys 2 more." * (i % 4)),
             "completion": f"Step 1: {i} + 2 = {i + 2}. \\boxed{{{i + 2}}}"} for i in range(8)]  # fmt: skip
    fp32 = dict(bf16=False, epochs=1, lr=1e-3, batch_size=4, logging_steps=1)
    padded = sft(tiny_model_dir, rows, TrainConfig(**fp32), tmp_path / "padded")
    free = sft(tiny_model_dir, rows, TrainConfig(**fp32, padding_free=True), tmp_path / "free")
    assert (padded["padding_free"], free["padding_free"]) == (False, True)
    losses = [[h["loss"] for h in info["loss_curve"]] for info in (padded, free)]
    assert len(losses[0]) == len(losses[1]) == 2
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    with pytest.raises(ValueError, match="padding_free=true"):
        sft(tiny_model_dir, rows, TrainConfig(**fp32, padding_free=True, max_length=24), tmp_path / "refused")


def test_group_by_length_sampler_reaches_the_trainer_and_trains(tiny_model_dir, tmp_path):
    """train.sampler=group_by_length is transformers' LengthGroupedSampler (batches of about one length: the demo's
    M1 SFT padding fell from 37 % to 0.9 % of token positions). It is a different data order, so it keys the
    model's settings; the default (random) keys nothing, so earlier runs keep their fingerprints."""
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTConfig, SFTTrainer

    from psrlm.identity import train_settings
    from psrlm.train import _common_args, sft

    grouped = TrainConfig(bf16=False, epochs=1, lr=1e-3, batch_size=2, logging_steps=1, sampler="group_by_length")
    rows = [{"prompt": PROMPTS.solve_prompt(f"Mia has {i} pens." + " She buys 2 more." * (i % 4)),
             "completion": f"Step 1: {i} + 2 = {i + 2}. \\boxed{{{i + 2}}}"} for i in range(8)]  # fmt: skip
    info = sft(tiny_model_dir, rows, grouped, tmp_path / "grouped")
    assert len(info["loss_curve"]) == 4  # 8 rows, batches of 2

    from datasets import Dataset

    args = SFTConfig(**_common_args(grouped, tmp_path / "probe"))
    trainer = SFTTrainer(model=load_model(tiny_model_dir), args=args, processing_class=load_tokenizer(tiny_model_dir),
                         train_dataset=Dataset.from_list(rows))  # fmt: skip
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
    assert train_settings(grouped)["sampler"] == "group_by_length"
    assert "sampler" not in train_settings(TrainConfig())
