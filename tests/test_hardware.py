"""Precision chosen from what the CPU really runs: never bf16 where it would be emulated."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psrlm import hardware
from psrlm.configs import TrainConfig

from .conftest import REPO, SMALL

AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _show_config(env_extra: dict) -> str:
    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-m", "psrlm.cli", "show-config", "-c", str(REPO / "configs" / "demo.yaml")],
                         capture_output=True, text=True, env=env, check=True)  # fmt: skip
    return out.stdout.splitlines()[-1]


def test_avx2_only_cpu_gets_fp32_everywhere():
    """The same machine restricted to AVX2 (as torch and oneDNN see it): the demo recipe resolves to fp32 for
    generation and training, which is what keeps `make demo` fast on CPUs without native bf16."""
    line = _show_config(AVX2_ONLY)
    assert "engine float32" in line and "training fp32" in line and "no native bf16" in line and "AVX2" in line


def test_auto_follows_the_cpu_flags():
    flags = _cpu_flags()
    has_bf16 = bool({"avx512_bf16", "amx_tile", "amx_bf16"} & flags)
    import torch

    if not has_bf16 or torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AMX"):
        assert not hardware.native_bf16_cpu()
        assert hardware.engine_dtype("auto", "cpu") == "float32" and not hardware.train_bf16("auto")
    else:
        assert hardware.native_bf16_cpu()
        assert hardware.engine_dtype("auto", "cpu") == "bfloat16" and hardware.train_bf16("auto")
    line = _show_config({})
    assert ("engine bfloat16" in line) == hardware.native_bf16_cpu()


def test_explicit_settings_win_over_auto():
    assert hardware.engine_dtype("float32", "cpu") == "float32"
    assert hardware.engine_dtype("bfloat16", "cpu") == "bfloat16"
    assert hardware.train_bf16(False) is False and hardware.train_bf16(True) is True
    assert hardware.static_cache("auto", "cpu") is True and hardware.static_cache("auto", "cuda") is False
    assert hardware.static_cache(False, "cpu") is False


def test_trainer_args_follow_the_resolved_precision():
    from psrlm.train import _device_args

    assert _device_args(TrainConfig(bf16="auto")) == {"bf16": hardware.train_bf16("auto"), "fp16": False,
                                                     "use_cpu": True}  # fmt: skip
    assert _device_args(TrainConfig(bf16=False))["bf16"] is False


def test_run_log_records_cpu_and_chosen_precision(tmp_path):
    from psrlm.cli import main

    run = tmp_path / "run"
    args = ["data", "arith"] + sum((["--set", s] for s in SMALL), []) + ["--set", f"paths.run_dir={run}"]
    assert main(args) == 0
    entry = json.loads((run / "logs" / "runs.jsonl").read_text().splitlines()[-1])
    machine = entry["machine"]
    assert machine["cpu_capability"] and machine["cpu"] and "native_bf16" in machine
    assert machine["engine"]["dtype"] == hardware.engine_dtype("auto", "cpu")
    assert machine["sft_bf16"] == hardware.train_bf16("auto")


@pytest.mark.parametrize("env", [{}, AVX2_ONLY], ids=["native", "avx2-only"])
def test_generation_runs_in_the_resolved_dtype(tiny_model_dir, env):
    """A real engine built under each capability reports (and uses) the dtype `auto` chose."""
    code = (
        "from psrlm.engines.hf import HFEngine; from psrlm import hardware; import sys;"
        f"e = HFEngine({str(tiny_model_dir)!r}, device='cpu');"
        "assert e.dtype_name == hardware.engine_dtype('auto', 'cpu');"
        "assert next(e.model.parameters()).dtype == e.dtype; print(e.dtype_name)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                         check=True)  # fmt: skip
    if env:
        assert out.stdout.strip() == "float32"
