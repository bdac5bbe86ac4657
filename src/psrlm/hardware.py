"""What this machine can compute fast, and the precision every `auto` setting resolves to.

    psrlm show-config -c configs/demo.yaml      # prints the resolved precision and the CPU it was chosen for

bf16 is only fast where the hardware has it. On CUDA it is the norm. On a CPU it takes native bf16 instructions
(AVX512-BF16 or AMX); without them (AVX2-only x86: most laptops and some cloud machines) torch emulates bf16 and a
matmul runs ~30-60x slower than in fp32. So `auto` never means bf16 on a CPU that lacks it. The check follows what
torch will actually run: `torch.backends.cpu.get_cpu_capability()` (which honours ATEN_CPU_CAPABILITY) and
ONEDNN_MAX_CPU_ISA, not only what the CPU advertises.

Measured on a 2-core AMD EPYC with AVX512-BF16, no AMX (2026-11-27, `make bench` repeats it): the demo model's
batched sampling ran about 1.2x faster and its logit-read judging 1.8x faster in bf16 than in fp32, and a TRL SFT
step 1.6x faster with bf16 autocast; the static KV cache was 10-15 % faster in fp32 and within noise in bf16. With
the same machine restricted to AVX2 (ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2) a bf16 matmul ran at
2.2 GFLOP/s against 134 GFLOP/s in fp32.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def _parse_bool_setting(value: bool | str) -> bool | str:
    """`auto`, or a bool (YAML `true` / `false`, or the strings "true" / "false" older recipes used)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "false"):
        return text == "true"
    return text


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16_cpu() -> bool:
    """True when torch on this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX, and torch allowed to use it)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX512", "AMX"):  # AVX2 / DEFAULT / NO AVX / ARM: bf16 would be emulated
        return False
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and isa != "ALL" and "BF16" not in isa and "AMX" not in isa:
        return False
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def engine_dtype(setting: str, device: str) -> str:
    """`engine.dtype` resolved: bf16 on CUDA (fp16 on GPUs without bf16), on CPU only with native bf16."""
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if native_bf16_cpu() else "float32"


def static_cache(setting: bool | str, device: str) -> bool:
    """`engine.static_cache` resolved: on for CPU (measured faster or equal there), off on CUDA (transformers'
    default dynamic cache; the static one pays off only under torch.compile, which the engine does not use)."""
    setting = _parse_bool_setting(setting)
    if isinstance(setting, bool):
        return setting
    return not device.startswith("cuda")


def train_bf16(setting: bool | str) -> bool:
    """A training stage's `bf16` resolved: bf16 autocast on CUDA with bf16 and on CPUs with native bf16."""
    import torch

    setting = _parse_bool_setting(setting)
    if isinstance(setting, bool):
        return setting
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return native_bf16_cpu()


def describe(engine_cfg=None, train_cfgs: dict | None = None) -> dict:
    """The machine and the precision chosen for it, for the run log, `make bench` and `show-config`."""
    import torch

    info: dict = {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": bool(torch.cpu._is_avx512_bf16_supported()),
        "amx": bool(torch.cpu._is_amx_tile_supported()),
        "native_bf16": native_bf16_cpu(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if engine_cfg is not None and engine_cfg.kind == "hf":
        device = pick_device(engine_cfg.device)
        info["engine"] = {
            "device": device,
            "dtype": engine_dtype(engine_cfg.dtype, device),
            "static_cache": static_cache(engine_cfg.static_cache, device),
        }
    for name, tc in (train_cfgs or {}).items():
        info[f"{name}_bf16"] = train_bf16(tc.bf16)
    return info


def one_line(info: dict) -> str:
    """`precision: engine bfloat16 + static cache, training bf16 autocast (CPU AMD EPYC, AVX512, native bf16)`"""
    parts = []
    if "engine" in info:
        e = info["engine"]
        parts.append(f"engine {e['dtype']} on {e['device']}" + (" + static KV cache" if e["static_cache"] else ""))
    trains = sorted({v for k, v in info.items() if k.endswith("_bf16") and k not in ("avx512_bf16", "native_bf16")})
    if trains:
        parts.append("training " + " / ".join("bf16 autocast" if v else "fp32" for v in trains))
    where = info["cuda"] or f"CPU {info['cpu']}, {info['cpu_capability']}, " + (
        "native bf16" if info["native_bf16"] else "no native bf16"
    )
    return f"precision: {', '.join(parts) or 'n/a'} ({where})"
