"""Text generation engines; `make_engine` picks one from `engine.kind`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psrlm.configs import EngineConfig
from psrlm.engines.base import Completion, Engine, EngineStats, GenParams

__all__ = ["Completion", "Engine", "EngineStats", "GenParams", "engine_for", "make_engine"]


@contextmanager
def engine_for(cfg: EngineConfig, model_path: str | Path, log_dir: Path, name: str = "model") -> Iterator[Engine]:
    """An engine for one stage: in-process (hf), a running server (openai), or servers started on `model_path` now
    and stopped when the stage ends (vllm, sglang, transformers; logs in `log_dir`)."""
    from psrlm.engines.servers import MANAGED_KINDS

    if cfg.kind in MANAGED_KINDS:
        from psrlm.engines.servers import serving

        with serving(cfg, model_path, log_dir, name) as engine:
            yield engine
    else:
        yield make_engine(cfg, model_path)


def make_engine(cfg: EngineConfig, model_path: str | Path | None = None, on_error: str = "raise") -> Engine:
    """`on_error` (openai only): "raise" after the retries, or "empty" to answer a failed request with an empty
    completion marked finish_reason="error" (for long stages that count failures and go on)."""
    if cfg.kind == "hf":
        from psrlm.engines.hf import HFEngine

        if not model_path:
            raise ValueError("engine.kind=hf needs a model directory")
        return HFEngine(
            model_path, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size, static_cache=cfg.static_cache
        )
    if cfg.kind == "openai":
        from psrlm.engines.openai_api import OpenAIEngine

        return OpenAIEngine(
            cfg.base_urls,
            cfg.model_name or str(model_path or ""),
            api_key_env=cfg.api_key_env,
            concurrency=cfg.concurrency,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            extra_body=cfg.extra_body,
            on_error=on_error,
            api=cfg.api,
            reasoning=cfg.reasoning,
        )
    raise ValueError(f"engine.kind={cfg.kind!r} starts its own servers: use engines.engine_for (the driver does)")
