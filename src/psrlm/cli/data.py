"""`psrlm data arith|ift|eft`: the data files a run starts from."""

from __future__ import annotations

import argparse
import json

from psrlm.cli.common import add_config_args, command, count
from psrlm.configs import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="build data files")
    data_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = data_sub.add_parser(
        "arith",
        help="embedded domain: training pool, held-out test splits (in-distribution and hard), IFT and EFT files",
    )
    add_config_args(q)
    command(q, cmd_data_arith, "data arith")
    q = data_sub.add_parser(
        "ift",
        help="IFT from worked solutions: teacher segmentation into steps, content checked unchanged (initdata.*)",
    )
    add_config_args(q)
    command(q, cmd_data_ift, "data ift", computes=True)
    q = data_sub.add_parser(
        "eft",
        help="EFT by PRM-scored MCTS, teacher judgments, agreement and A/B-consistency filters (initdata.*)",
    )
    add_config_args(q)
    q.add_argument(
        "--compare-m1",
        action="store_true",
        help="also train M1 on IFT + this EFT and on IFT + as many oracle EFT examples, and compare judge accuracy",
    )
    q.add_argument("--eval-eft", type=count, default=0, help="EFT test items per judge evaluation (0 = all)")
    command(q, cmd_data_eft, "data eft", computes=True)


def cmd_data_arith(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.initdata.build import build_arith_data
    from psrlm.records import read_jsonl

    paths = build_arith_data(cfg)
    counts = {name: len(read_jsonl(p)) for name, p in paths.items()}
    width = max(map(len, paths), default=0)
    for name, p in paths.items():
        print(f"  {name:<{width}} {counts[name]:>6}  {p}")
    return {"files": {k: str(v) for k, v in paths.items()}, "counts": counts}


def cmd_data_ift(cfg: Config, args: argparse.Namespace) -> dict:
    """IFT from worked solutions: teacher segmentation (MATH / any JSONL), or GSM8K lines with no teacher."""
    from psrlm.initdata.eft_pipeline import out_dir
    from psrlm.initdata.ift import build_ift

    counts = build_ift(cfg)
    print(json.dumps(counts, indent=2))
    print(f"IFT and counts: {out_dir(cfg)}")
    return counts


def cmd_data_eft(cfg: Config, args: argparse.Namespace) -> dict:
    """EFT by PRM-scored MCTS, teacher judgments and the agreement + consistency filters (embedded domain)."""
    from psrlm.initdata.eft_pipeline import build_eft_pipeline, compare_m1, out_dir

    counts = build_eft_pipeline(cfg)
    print(json.dumps(counts, indent=2))
    print(f"EFT train/test and counts: {out_dir(cfg)}")
    if args.compare_m1:
        counts["m1_comparison"] = compare_m1(cfg, args.eval_eft)
        print(json.dumps(counts["m1_comparison"], indent=2))
    return counts
