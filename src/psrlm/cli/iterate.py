"""`psrlm iterate`: the whole method over one run folder (psrlm.iterate drives it), or with --dry-run what it would
run."""

from __future__ import annotations

import argparse
from pathlib import Path

from psrlm.cli.common import add_config_args, add_fresh_arg, command
from psrlm.configs import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "iterate",
        help="the whole method: M0, M1, PSRLM M2..Mn and SRLM M2..Mn, evaluation, summary table (resumable)",
    )
    add_config_args(p)
    add_fresh_arg(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the servers, jobs and stages it would run, and which stages of an existing run folder these "
        "settings keep or rebuild (with the keys that differ); run none",
    )
    command(p, cmd_iterate, "iterate", computes=True)  # a --dry-run is not recorded (main)


def cmd_iterate(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.dry_run import dry_run
    from psrlm.iterate import run_all

    if getattr(args, "dry_run", False):  # (`psrlm demo` has no --dry-run)
        print("\n".join(dry_run(cfg, fresh=args.fresh, rebuild_m0=args.rebuild_m0)))
        return {"dry_run": True}
    summary = run_all(cfg, fresh=args.fresh, rebuild_m0=args.rebuild_m0)
    print("\nstage timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_s"].items()))
    print(f"summary: {Path(cfg.paths.run_dir) / 'summary.json'}")
    return {"wall_s": summary["wall_s"], "timings_s": summary["timings_s"]}
