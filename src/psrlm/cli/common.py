"""What the command modules share: the recipe options, argparse number types, a command's declared needs, and the
run log (<run_dir>/logs/runs.jsonl) that `main` appends to after a recorded command."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from psrlm.configs import Config, config_to_dict, save_config
from psrlm.run_layout import RunLayout


@dataclass(frozen=True)
class Needs:
    """What `main` does around a command, declared where the command is registered (see `command`)."""

    config: bool = True  # loads the recipe (--config/--set) and is called as func(cfg, args) -> result dict;
    # without one it is called as func(args) -> exit code (readers of finished run folders)
    computes: bool = False  # loads a model and computes: the machine and its precision are printed as it starts
    recorded: bool = True  # what ran, with its config, is appended to <run_dir>/logs/runs.jsonl (never a --dry-run)


def command(
    p: argparse.ArgumentParser,
    func: Callable,
    name: str,
    *,
    config: bool = True,
    computes: bool = False,
    recorded: bool | None = None,
) -> None:
    """Make `func` what `psrlm <name>` runs, with its needs (recorded defaults to: when it loads a config)."""
    if not config and (computes or recorded):
        raise ValueError(f"psrlm {name}: a command without a config has no machine line and no run log to write")
    p.set_defaults(func=func, name=name, needs=Needs(config, computes, config if recorded is None else recorded))


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        action="append",
        help="recipe YAML (e.g. configs/demo.yaml); defaults apply to what it omits. Repeatable: recipes are layered "
        "in order, a later one overriding an earlier one key by key (show-config says where each value came from)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one option (repeatable), e.g. --set arith.n_train=500; the value is read as YAML",
    )


def add_fresh_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fresh",
        action="store_true",
        help="rebuild what was made with other settings (the old outputs are moved to <run>/replaced/<time>/) instead "
        "of stopping with the keys that differ",
    )
    p.add_argument(
        "--rebuild-m0",
        action="store_true",
        help="when the prebuilt M0 of iterate.m0_path was built with other model/arith/pretrain settings, pre-train a "
        "new one for these settings into <run>/models/ (hours at the demo's size) instead of stopping; the prebuilt "
        "one is never changed",
    )


def count(text: str) -> int:
    """argparse type: an integer >= 0 (0 keeps its documented meaning, e.g. "all")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def machine(cfg: Config) -> dict:
    """The machine and the precision every `auto` resolved to on it (hardware.py)."""
    from psrlm.hardware import describe

    return describe(cfg.engine, {"pretrain": cfg.pretrain, "sft": cfg.sft, "dpo": cfg.dpo})


def record_run(cfg: Config, stage: str, started: float, result: dict) -> None:
    """Append what ran, with which config, on which machine at which precision, to <run_dir>/logs/runs.jsonl and
    save the config beside it."""
    from psrlm.records import JsonlAppender

    logs = RunLayout(cfg.paths.run_dir).logs
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    save_config(cfg, logs / f"{stage.replace(' ', '_')}-{stamp}.yaml")
    entry = {
        "stage": stage,
        "started": stamp,
        "wall_s": round(time.time() - started, 2),
        "argv": sys.argv[1:],
        "machine": machine(cfg),
        "result": result,
        "config": config_to_dict(cfg),
    }
    with JsonlAppender(logs / "runs.jsonl") as out:
        out.append(entry)
