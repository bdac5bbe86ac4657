"""`psrlm bench`: search throughput against raw generation and a naive loop (psrlm.bench; `make bench`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from psrlm.cli.common import add_config_args, command, positive
from psrlm.configs import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="search throughput vs raw generation and vs a naive loop (what `make bench` runs)",
        description="Measures, in one run on the same problems: (a) raw batched generation, (b) the batched "
        "search, (c) a naive one-problem/one-judge-prompt loop; plus judge-mode agreement.",
    )
    add_config_args(p)
    p.add_argument("--model", help="model directory (default: the run's psrlm-M1, built if missing)")
    p.add_argument("--problems", type=positive, default=32, help="problems for (a) and (b) (default 32)")
    p.add_argument("--naive-problems", type=positive, default=8, help="problems for the slow naive loop (default 8)")
    command(p, cmd_bench, "bench", computes=True)


def cmd_bench(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.bench import print_report, run_bench
    from psrlm.folders import FolderLock
    from psrlm.initdata.build import build_arith_data
    from psrlm.iterate import check_paths
    from psrlm.m0 import ensure_m0
    from psrlm.runfolder import Run
    from psrlm.stages import ensure_m1

    check_paths(cfg)
    with FolderLock(Path(cfg.paths.run_dir), "bench"):
        build_arith_data(cfg)
        if args.model:
            from psrlm.checkpoints import resolve_model

            model = resolve_model(args.model)
        else:  # the demo's M1 (built on first use: a trained judge makes the numbers meaningful)
            run = Run(cfg)
            model = ensure_m1(run, "psrlm", ensure_m0(run))
        report = run_bench(cfg, model, args.problems, args.naive_problems)
    print_report(report)
    return {k: report[k] for k in ("search_vs_raw", "search_vs_naive")}
