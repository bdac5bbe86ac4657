"""`psrlm model init|pretrain`: the tiny model of the embedded domain, and its base model M0."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from psrlm.cli.common import add_config_args, command
from psrlm.configs import Config, save_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="build models")
    model_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = model_sub.add_parser("init", help="train the tokenizer and build the tiny model from `model.*` (cached)")
    add_config_args(q)
    command(q, cmd_model_init, "model init")

    q = model_sub.add_parser(
        "pretrain",
        help="pre-train the base model M0 on raw domain text (cached by config); --out publishes a prebuilt copy",
    )
    add_config_args(q)
    q.add_argument("--out", help="copy the finished M0 here with its build config (e.g. checkpoints/arith-m0)")
    command(q, cmd_model_pretrain, "model pretrain", computes=True)


def cmd_model_init(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.initdata.build import init_tiny_model

    path = init_tiny_model(cfg)
    info = json.loads((path / "psrlm_build.json").read_text())
    print(f"  tiny model: {info['parameters'] / 1e6:.2f}M parameters -> {path}")
    return {"model_path": str(path), "parameters": info["parameters"]}


def cmd_model_pretrain(cfg: Config, args: argparse.Namespace) -> dict:
    """Pre-train M0 and (with --out) publish it as a prebuilt checkpoint folder."""
    import shutil

    from psrlm.folders import FolderLock
    from psrlm.initdata.build import build_arith_data
    from psrlm.m0 import ensure_m0
    from psrlm.runfolder import Run

    no_prebuilt = dataclasses.replace(cfg, iterate=dataclasses.replace(cfg.iterate, m0_path=""))
    with FolderLock(Path(cfg.paths.run_dir), "model pretrain"):
        build_arith_data(cfg)
        m0 = ensure_m0(Run(no_prebuilt))
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(m0, tmp, ignore=shutil.ignore_patterns("*.trainer"))
        save_config(cfg, tmp / "build_config.yaml")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        m0 = out
    print(f"  M0: {m0}")
    return {"m0": str(m0)}
