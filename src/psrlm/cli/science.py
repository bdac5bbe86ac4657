"""`psrlm sweep|frontier`: the science experiments on the arith domain (psrlm.sweep, psrlm.frontier), each many runs
under one output folder; oracle arms are labelled as such."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from psrlm.cli.common import add_config_args, command, positive
from psrlm.configs import Config, check_for_sweep


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="science (arith): one iteration with an oracle judge of each accuracy, over seeds; break-even accuracy",
        description="For each seed, M1 (as iterate builds it) searches the first question block with its own judge "
        "and with the oracle judge flipped to each accuracy; each search's pairs train an M2 by step-wise DPO; "
        "the M1 -> M2 accuracy change on the validation, test and hard splits, with 95 % CIs over seeds, goes to "
        "OUT/sweep.md, sweep.json and sweep.png. Oracle runs are labelled as such and never a default.",
    )
    add_config_args(p)
    p.add_argument("--accuracies", default="0.5,0.6,0.7,0.8,0.9,1.0", help="judge accuracies (default 0.5..1.0)")
    p.add_argument("--seeds", default="0,1,2", help="iterate.seed values (default 0,1,2)")
    p.add_argument("--oracle-only", action="store_true",
                   help="skip the self-judged arm (the upper bound alone: the oracle's searches make no judge calls, "
                   "so a seed takes about half the time)")  # fmt: skip
    p.add_argument("--questions", type=positive, help="questions each judge searches (default: the first block of "
                   "iterate.questions, 50 in the demo recipe; make upper uses 600: about 2 pairs per question with "
                   "the oracle, and one iteration on 50 questions is 3-4 DPO steps)")  # fmt: skip
    p.add_argument("--out", default="runs/sweep", help="output folder (one run folder per seed inside)")
    p.add_argument("--fresh", action="store_true",
                   help="rebuild what was made with other settings (the old outputs are moved to "
                        "<out>/seed<s>/replaced/<time>/) instead of stopping with the keys that differ")  # fmt: skip
    command(p, cmd_sweep, "sweep", computes=True)

    from psrlm.frontier import add_frontier_args, cmd_frontier

    p = sub.add_parser(
        "frontier",
        help="science (arith): iterations at the model's frontier; the method, an oracle upper bound and controls",
        description="For each seed: M1, then per arm a chain of iterations whose questions come from the easiest "
        "difficulty level the current model does not master (iterate.schedule=frontier, arith.levels): self = "
        "PSRLM; oracle = the same search with a perfect judge; rft = SFT on the oracle search's right solutions; "
        "outcome = whole right-vs-wrong solutions (oracle), plain DPO; srlm = the baseline. Every model is "
        "evaluated on the validation, test and hard splits; OUT/frontier.md, frontier.json and frontier.png hold "
        "the table and the figure with 95 % intervals over seeds. ORACLE arms are labelled as such.",
    )
    add_config_args(p)
    add_frontier_args(p)
    command(p, cmd_frontier, "frontier", computes=True)


def cmd_sweep(cfg: Config, args: argparse.Namespace) -> dict:
    """The judge-quality sweep (science, arith): M1 -> M2 with an oracle judge of each accuracy, over seeds."""
    from psrlm.sweep import format_table, run_sweep

    check_for_sweep(cfg)
    out = Path(args.out)
    accuracies = [float(a) for a in args.accuracies.split(",") if a.strip()]
    if not accuracies or any(not 0.0 <= a <= 1.0 for a in accuracies):
        raise ValueError(f"--accuracies {args.accuracies!r}: give judge accuracies in [0, 1], e.g. 0.5,0.8,1.0")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    if args.questions is not None:
        cfg = dataclasses.replace(cfg, iterate=dataclasses.replace(cfg.iterate, questions=[args.questions]))
    summary = run_sweep(cfg, accuracies, seeds, out, self_arm=not args.oracle_only, fresh=args.fresh)
    print(format_table(summary))
    print(f"sweep: {out / 'sweep.md'}, {out / 'sweep.png'}")
    return {"break_even": summary["break_even"]}
