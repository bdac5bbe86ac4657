"""`psrlm`: the top parser built from the command modules, and the one error boundary every command runs inside.

A command module has `register(subparsers)`, which adds its parser(s) and declares with `common.command` what each
runs and needs (a config, the machine line, the run log); `main` does those things for it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from psrlm.cli import bench, data, demo, evaluate, iterate, model, plan, runs, science, search, show_config, train
from psrlm.cli.common import machine, record_run
from psrlm.cli.errors import DISK_ERRNOS, disk_error, one_line, quiet_stdout, user_errors
from psrlm.configs import load_config_layers

# In the order `psrlm --help` lists them.
COMMANDS = [data, model, train, iterate, bench, evaluate, demo, search, runs, plan, science, show_config]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="psrlm",
        description="Process-based Self-Rewarding Language Models: step search with self-judging, step-wise DPO.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks behind errors")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="for batch jobs: no progress bars, no info lines, no per-step training metrics; warnings, errors and "
        "results only (where stderr is not a terminal, bars are written as a plain line every 30 s anyway)",
    )
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from psrlm.progress import configure

    configure(args.quiet)
    try:
        if not args.needs.config:
            return args.func(args)
        cfg, args.sources = load_config_layers(args.config, args.overrides)
        if args.needs.computes:
            from psrlm.hardware import one_line as machine_line

            print(machine_line(machine(cfg)), flush=True)
        started = time.time()
        result = args.func(cfg, args)
        dry = isinstance(result, dict) and result.get("dry_run")
        from psrlm.train import is_main_process

        if args.needs.recorded and not dry and is_main_process():  # one record per job
            record_run(cfg, args.name, started, result)
            print(f"done in {time.time() - started:.1f}s")
    except user_errors() as e:
        return one_line(e, args.verbose)
    except BrokenPipeError:  # `psrlm show-config | head`: the reader has all it wanted
        quiet_stdout()
        return 141
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        return one_line(disk_error(e), args.verbose, e)
    except KeyboardInterrupt:
        print("\npsrlm: interrupted; what finished is saved, rerun the same command to resume", file=sys.stderr)
        return 130
    try:
        sys.stdout.flush()  # a closed pipe shows here for output still buffered
    except BrokenPipeError:
        quiet_stdout()
        return 141
    return 0
