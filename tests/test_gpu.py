"""The checks that need CUDA (`make gpu_check`, on a lent GPU machine): skipped where there is no GPU.

What they pin down: `auto` precision picks bf16 on CUDA for generation and training; the in-process engine
generates on the GPU and reads logit verdicts there alike in a batch and one by one; a DPO step under bf16 autocast
trains fp32 master weights on the GPU and moves them; `accelerate launch` runs `psrlm train` on the GPU, and as a
DeepSpeed ZeRO-3 job (NCCL) saves the weights a one-process run of the same effective batch saves."""

from __future__ import annotations

import pytest
import torch

from psrlm.configs import TrainConfig, load_config
from psrlm.engines.base import GenParams

from .test_train import _pairs, _params

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_auto_precision_is_bf16_on_cuda():
    from psrlm import hardware

    assert hardware.pick_device("auto") == "cuda"
    assert hardware.engine_dtype("auto", "cuda") == "bfloat16" and hardware.train_bf16("auto") is True
    assert hardware.static_cache("auto", "cuda") is False


def test_the_engine_generates_and_reads_verdicts_on_the_gpu_alike_batched_and_alone(tiny_model_dir):
    from psrlm.engines.hf import HFEngine, continuation_logprobs

    engine = HFEngine(tiny_model_dir, device="auto", dtype="auto")
    assert next(engine.model.parameters()).device.type == "cuda" and engine.dtype == torch.bfloat16
    prompts = ["Q: 1 + 1?\nA:\nStep 1:", "Q: what is 12 + 30 - 7?\nA:\nStep 1:"]
    out = engine.generate(prompts, GenParams(max_new_tokens=8))
    assert all(c.tokens > 0 for [c] in out)
    ps, cs = [p for p in prompts for _ in range(2)], [" [[A]]", " [[B]]"] * 2
    batched = continuation_logprobs(engine, ps, cs)
    single = [continuation_logprobs(engine, [p], [c])[0] for p, c in zip(ps, cs, strict=True)]
    # padding in a batch changes bf16 rounding, not the verdict: close, not bit-equal
    assert torch.allclose(torch.tensor(batched), torch.tensor(single), atol=0.25)


def test_a_dpo_step_trains_fp32_master_weights_on_the_gpu(tiny_model_dir, tmp_path):
    pytest.importorskip("trl", reason="TRL (and datasets, pyarrow) are not on the GPU machine: scripts/gpu_check.sh")
    from psrlm.train import dpo

    info = dpo(
        tiny_model_dir, _pairs(), TrainConfig(epochs=1, lr=5e-7, batch_size=2, logging_steps=1), tmp_path / "M2"
    )
    assert info["steps"] == 4 and info["weights"]["changed"] > 0.95
    before, after = _params(tiny_model_dir), _params(tmp_path / "M2")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_psrlm_train_runs_as_an_accelerate_job_on_the_gpu(tiny_model_dir, tmp_path):
    pytest.importorskip("trl", reason="TRL (and datasets, pyarrow) are not on the GPU machine: scripts/gpu_check.sh")
    from psrlm.launch import launch_training
    from psrlm.records import write_jsonl

    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, _pairs())
    cfg = load_config(None, [f"paths.run_dir={tmp_path / 'run'}", "launch.accelerate_config=cpu",
                             "launch.num_processes=1", "dpo.batch_size=2", "dpo.lr=0.001"])  # fmt: skip
    m = launch_training(cfg, "dpo", tiny_model_dir, tmp_path / "M2", {"pairs": [pairs]}, iteration=2)
    assert m.metrics["train"]["steps"] > 0 and m.metrics["train"]["processes"] == 1


@pytest.mark.parametrize("stage,per_rank", [("sft", 4), ("dpo", 2)])
def test_zero3_training_on_the_gpu_saves_the_weights_of_one_process(stage, per_rank, tiny_model_dir, tmp_path):
    """tests/test_zero3.py's check on CUDA: `psrlm train` as a DeepSpeed ZeRO-3 job over NCCL (one process per GPU,
    at most 2; with one GPU ZeRO-3 still partitions, into one part, so the gather and the save are exercised, the
    memory split is not), in fp32 so the weights compare to the same tolerance."""
    pytest.importorskip("trl", reason="TRL (and datasets, pyarrow) are not on the GPU machine: scripts/gpu_check.sh")
    pytest.importorskip(
        "deepspeed", reason="DeepSpeed is not on the GPU machine (DS_BUILD_OPS=0 pip install deepspeed)"
    )
    from .test_zero3 import check, write_data, zero3_against_one_process

    processes = min(2, torch.cuda.device_count())
    r = zero3_against_one_process(stage, tiny_model_dir, write_data(tmp_path), tmp_path, per_rank, processes)
    check(r, backend="nccl", processes=processes)


def test_the_prm_scores_on_the_gpu_as_on_the_cpu_and_the_tree_search_runs_with_it(tiny_model_dir):
    """initdata.prm_device: `auto` puts the PRM on the GPU (it always ran on the CPU); its P("+") there equals the
    CPU's, for both PRM formats, and a tree search with the policy and the PRM on the GPU builds pairs."""
    from psrlm.configs import InitDataConfig
    from psrlm.engines.hf import HFEngine
    from psrlm.initdata.eft_pipeline import prm_device
    from psrlm.initdata.mcts import run_mcts
    from psrlm.prm import load_prm
    from psrlm.prompts import get_prompts
    from psrlm.tasks.arith import Difficulty, generate_split

    device = prm_device(load_config(None, ["initdata.prm_device=auto"]))
    assert device == "cuda"
    ic = InitDataConfig(prm_path=str(tiny_model_dir), prm_step_tag=" #")
    qs, steps = ["Mia has 5 pens.", "Leo has 3 cards."], [["5 + 1 = 6."], ["3 * 2 = 6.", "6 - 1 = 5."]]
    for fmt in ("next_token", "token_classification"):
        torch.manual_seed(0)  # the token-classification head is new: the same one on both devices
        gpu = load_prm(fmt, tiny_model_dir, ic, device=device)
        torch.manual_seed(0)
        cpu = load_prm(fmt, tiny_model_dir, ic, device="cpu")
        assert next(gpu._run.model.parameters()).device.type == "cuda"
        assert torch.allclose(torch.tensor(gpu.score_last(qs, steps)), torch.tensor(cpu.score_last(qs, steps)),
                              atol=1e-3)  # fmt: skip
    problems = generate_split(0, 2, Difficulty(2, 3, 20), "gpu")
    cfg = InitDataConfig(iterations=3, expand_width=4, max_depth=2, max_step_tokens=64, min_margin=0.0,
                         temperature=1.0, simulation_depth=1)  # fmt: skip
    engine = HFEngine(tiny_model_dir, device="auto", dtype="auto")
    traces, _ = run_mcts(problems, engine, gpu, get_prompts("compact"), cfg, progress=False)
    assert len(traces) == 2 and sum(t.nodes for t in traces) >= 2
    assert sum(t.prm_scored + t.capped for t in traces) > 0
