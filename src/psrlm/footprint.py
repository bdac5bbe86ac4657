"""What one process holds once a model is loaded: the parameter bytes it keeps (its own ZeRO-3 partition, or the
whole tensor), and its host memory from /proc (Linux). `train_log.json` records both for every rank, which is how a
distributed run shows that each rank holds a share of the model, not a copy.

The parameter bytes are exact. The memory figures are the kernel's: `rss_*` is the resident set (libraries and
everything else the process holds included, and file pages of a memory-mapped checkpoint once read), `peak_rss_mb`
the highest it reached during the load (VmHWM after resetting it; None where the kernel refuses the reset)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

MB = 1 << 20


def param_bytes(*models) -> dict:
    """Bytes of parameters this process holds (`held`) and of the whole models (`full`); a parameter ZeRO-3
    partitioned counts its local partition (`ds_tensor`) as held and its whole size (`ds_numel`) as full."""
    held = full = 0
    for model in models:
        for p in model.parameters():  # a tied weight is listed once
            if hasattr(p, "ds_tensor"):
                held += p.ds_tensor.numel() * p.ds_tensor.element_size()
                full += p.ds_numel * p.ds_tensor.element_size()
            else:
                held += p.numel() * p.element_size()
                full += p.numel() * p.element_size()
    return {"held_param_bytes": held, "full_param_bytes": full}


def _status() -> dict[str, float]:
    """VmRSS, VmHWM, RssAnon, RssFile of this process in MiB ({} off Linux)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) / 1024  # kB
    return out


def _reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (`echo 5 > /proc/self/clear_refs`, Linux 4.0+)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@contextmanager
def host_memory(into: dict):
    """Record in `into` this process's host memory before and after the block, and its peak during it."""
    before = _status()
    reset = _reset_peak()
    yield
    after = _status()
    if not after:
        return
    into.update(
        rss_before_mb=round(before.get("VmRSS", 0.0), 1),
        rss_after_mb=round(after["VmRSS"], 1),
        rss_anon_after_mb=round(after.get("RssAnon", 0.0), 1),
        rss_file_after_mb=round(after.get("RssFile", 0.0), 1),
        peak_rss_mb=round(after["VmHWM"], 1) if reset else None,
    )
