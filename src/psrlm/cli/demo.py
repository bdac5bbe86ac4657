"""`psrlm demo`: the main job on the embedded default (`make demo`): data, the whole method, the report, with a time
estimate before it starts."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from psrlm.cli.common import add_config_args, add_fresh_arg, command
from psrlm.cli.data import cmd_data_arith
from psrlm.cli.iterate import cmd_iterate
from psrlm.configs import Config
from psrlm.run_layout import RunLayout


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the main job on the embedded default (what `make demo` runs)",
        description="Data, then the whole method (iterate), then the report. Before it starts, an estimate of its "
        "time on this machine from a few seconds of calibration (when the recipe has a reference run beside it, "
        "<recipe>.reference.json); each stage prints its time when it ends.",
    )
    add_config_args(p)
    add_fresh_arg(p)
    p.add_argument(
        "--calibrate-reference",
        action="store_true",
        help="after the run, calibrate this machine and write its stage times as the recipe's reference "
        "(<recipe>.reference.json), from which other machines estimate their time; run it on a quiet machine",
    )
    command(p, cmd_demo, "demo", computes=True)


def cmd_demo(cfg: Config, args: argparse.Namespace) -> dict:
    """The main job on the embedded default: the whole method (iterate), then the report."""
    from psrlm.initdata.build import data_dir
    from psrlm.records import JudgeExample, Problem, read_jsonl

    print("[data] domain data")
    cmd_data_arith(cfg, args)
    p = read_jsonl(data_dir(cfg) / "arith_test.jsonl", Problem)[0]
    ex = read_jsonl(data_dir(cfg) / "eft_train.jsonl", JudgeExample)[0]
    print(f"\nexample problem ({p.id}): {p.question}")
    print(f"example EFT item ({ex.meta['error_kind']}): A: {ex.step_a} | B: {ex.step_b} -> {ex.explanation} "
          f"[[{ex.verdict}]]\n")  # fmt: skip
    from psrlm import estimate

    recipe = Path(args.config[-1]) if args.config and len(args.config) == 1 else None
    m0 = Path(cfg.iterate.m0_path) if cfg.iterate.m0_path else None
    started = time.time()
    guess = estimate.say_estimate(cfg, recipe, m0) if m0 is not None and m0.is_dir() else None
    result = cmd_iterate(cfg, args)
    from psrlm.report import report

    out = RunLayout(cfg.paths.run_dir).report
    report([Path(cfg.paths.run_dir)], out)
    print(f"report: {out}")
    took = time.time() - started
    print(estimate.say_work(estimate.work(Path(cfg.paths.run_dir))))
    if guess is not None:
        print(f"demo: {took / 60:.1f} min (estimated {guess['seconds'] / 60:.1f} min)")
    if args.calibrate_reference:
        if recipe is None or m0 is None:
            raise ValueError("--calibrate-reference needs one recipe (-c) with iterate.m0_path set")
        from psrlm.records import read_json

        timings = read_json(RunLayout(cfg.paths.run_dir).timings)
        path = estimate.write_reference(recipe, cfg, estimate.calibrate(cfg, m0), timings,
                                        estimate.recipe_fingerprint(cfg))  # fmt: skip
        print(f"reference: {path}")
    return result
