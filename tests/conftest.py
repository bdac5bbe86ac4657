"""Shared fixtures: a small recipe in a temp run folder, and one tiny model built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from psrlm.configs import Config, load_config

REPO = Path(__file__).resolve().parents[1]

SMALL = [
    "arith.n_train=400",
    "arith.n_test=20",
    "data.ift_problems=100",
    "data.eft_train=100",
    "data.eft_test=40",
    "model.vocab_size=400",
    "model.hidden_size=64",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.intermediate_size=128",
    "model.max_position=512",
    "prompts.variant=compact",
]


def small_config(run_dir: Path, *extra: str) -> Config:
    return load_config(None, SMALL + [f"paths.run_dir={run_dir}", *extra])


@pytest.fixture
def small_cfg(tmp_path: Path) -> Config:
    return small_config(tmp_path / "run")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A real (random-weight) tiny Llama model + trained tokenizer on disk."""
    from psrlm.initdata.build import init_tiny_model

    cfg = small_config(tmp_path_factory.mktemp("tiny") / "run")
    return init_tiny_model(cfg)


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tmp_path_factory):
    """`transformers serve` pinned to the tiny model on 127.0.0.1 (tests/serving.py), one per session."""
    for mod in ("fastapi", "uvicorn", "openai"):
        pytest.importorskip(mod, reason="`transformers serve` needs transformers[serving]")
    from .serving import start_server

    yield from start_server(tiny_model_dir, tmp_path_factory)
