"""Shared fixtures: a small recipe in a temp run folder, and one tiny model built once per session."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

# tqdm reads its TQDM_* variables once, when it is first imported; an in-process `psrlm` off a terminal sets
# TQDM_DISABLE, so import it first, or every later bar in the session would be disabled (tests/test_progress.py).
import tqdm.auto  # noqa: F401

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
def stepping_model_dir(tmp_path_factory) -> Path:
    """The tiny model after a few seconds of SFT on arith step solutions (compact prompts): it writes steps that
    end (about half its sampled steps stop before 24 tokens), where the random one runs into every token cap, and a
    step cut at the cap is never judged."""
    from psrlm import train
    from psrlm.configs import TrainConfig
    from psrlm.initdata.build import init_tiny_model
    from psrlm.prompts import get_prompts
    from psrlm.records import StepSolution, read_jsonl

    cfg = small_config(tmp_path_factory.mktemp("stepping") / "run")
    init = init_tiny_model(cfg)
    rows = train.ift_rows(
        read_jsonl(Path(cfg.paths.run_dir) / "data" / "ift.jsonl", StepSolution), get_prompts("compact")
    )
    out = Path(cfg.paths.run_dir) / "models" / "stepping"
    train.sft(init, rows * 3, TrainConfig(epochs=2, lr=0.01, batch_size=16, bf16=False), out)
    return out


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tmp_path_factory):
    """`transformers serve` pinned to the tiny model on 127.0.0.1 (tests/serving.py), one per session."""
    for mod in ("fastapi", "uvicorn", "openai"):
        pytest.importorskip(mod, reason="`transformers serve` needs transformers[serving]")
    from .serving import start_server

    yield from start_server(tiny_model_dir, tmp_path_factory)


def _mount_tmpfs(path, options: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode
        == 0
    )


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MiB file system (tmpfs), filled up: needs root and mount, else the test is skipped."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with open(disk / "filler", "wb") as fh:
            try:
                fh.write(b"\0" * (2 << 20))
            except OSError:
                pass
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.fixture
def read_only_disk(tmp_path):
    disk = tmp_path / "ro"
    if not _mount_tmpfs(disk, "size=1m,ro"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)
