"""`psrlm <stage>`: the command-line entry points.

    psrlm data arith --config configs/demo.yaml
    psrlm model init --config configs/demo.yaml
    psrlm demo --config configs/demo.yaml

Every stage takes `--config RECIPE.yaml` and any number of `--set section.key=value`, and records what ran, with
the effective config, under `<run_dir>/logs/`. Heavy libraries are imported inside the stages so `--help` is fast.

main.py builds the parser from one module per command group (data.py, model.py, train.py, ...), each with
`register(subparsers)`; common.py holds what they share, errors.py how failures are reported.
"""

from psrlm.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
