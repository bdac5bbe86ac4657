"""`psrlm plan`: the dry-run planner of a recipe (psrlm.plan): tokens, memory, disk and GPU-hours per stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from psrlm.cli.common import add_config_args, command
from psrlm.configs import Config
from psrlm.run_layout import RunLayout


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="dry-run planner: tokens, prefill with and without prefix caching, GPU memory, disk, GPU-hours",
        description="Per stage and iteration of a recipe: generated and prefill tokens of the search (from the IFT "
        "data before a run, from finished iterations after), training tokens, GPU memory per GPU of SFT and DPO "
        "under the ZeRO stage and offloading of launch.accelerate_config (else plan.zero_stage), with and without "
        "activation checkpointing, disk, and GPU-hours from plan.* rates. "
        "The derivation is in plan.py's docstring.",
    )
    add_config_args(p)
    p.add_argument("--run", help="a run folder whose finished iterations re-estimate the rest (default paths.run_dir)")
    p.add_argument("--calibrate", metavar="RUN_DIR", help="also compare the IFT-prior prediction with what a finished "
                   "run's searches recorded")  # fmt: skip
    command(p, cmd_plan, "plan")


def cmd_plan(cfg: Config, args: argparse.Namespace) -> dict:
    """A dry-run planner: tokens, memory, disk and GPU-hours per stage and iteration."""
    from psrlm.plan import calibration, format_plan, plan

    run_dir = Path(args.run) if args.run else None
    if cfg.data.source == "arith" and not RunLayout(run_dir or cfg.paths.run_dir).ift.exists():
        from psrlm.initdata.build import build_arith_data

        build_arith_data(cfg)
    result = plan(cfg, run_dir)
    print(format_plan(result))
    if args.calibrate:
        cal = calibration(cfg, Path(args.calibrate))
        print("\ncalibration (IFT priors against the search tokens recorded in " + args.calibrate + "):")
        for name, c in cal.items():
            print(f"  {name}: predicted {c['predicted_tokens']:,} vs recorded {c['recorded_tokens']:,} tokens "
                  f"({c['ratio']:.2f}x); judgments {c['predicted_judgments']:,} vs {c['recorded_judgments']:,}")  # fmt: skip
        result["calibration"] = cal
    return {"plan": {k: result[k] for k in ("parameters", "disk_gb")}}
