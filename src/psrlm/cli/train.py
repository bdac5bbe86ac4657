"""`psrlm train sft|dpo|prm`: one training stage from files into a model folder (what `iterate` runs per model, and
what `accelerate launch -m psrlm.cli train ...` runs as a job; launch.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from psrlm.cli.common import add_config_args, command
from psrlm.configs import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one stage from files: sft, dpo or prm (what `iterate` runs per model)")
    train_sub = p.add_subparsers(dest="what", required=True, metavar="STAGE")
    for stage, help_text in (
        ("sft", "SFT (M0 -> M1) on IFT solutions, EFT judgments and/or SRLM scoring examples; settings from sft.*"),
        ("dpo", "step-wise DPO on preference pairs (EOS only after final steps); settings from dpo.*"),
        ("prm", "a token-classification PRM on stepwise-supervision rows; settings from initdata.prm_train.*"),
    ):
        q = train_sub.add_parser(stage, help=help_text, description=help_text + ". Writes the model folder (temp "
                                 "folder + rename) with psrlm_manifest.json: parent, data files + sha256, config, "
                                 "metrics, seeds.")  # fmt: skip
        add_config_args(q)
        q.add_argument("--model", required=True, help="the model to train from (folder, or a cached hub id)")
        q.add_argument("--out", required=True, help="the trained model's folder")
        q.add_argument(
            "--iteration",
            type=int,
            default=0,
            help="iteration number recorded in the manifest; dpo.lr_scale_by_iteration scales lr by it (2 = M2)",
        )
        q.add_argument(
            "--seed-offset", type=int, default=0, help="added to the stage's seed (iterate passes iterate.seed)"
        )
        if stage == "sft":
            q.add_argument("--ift", action="append", default=[], help="StepSolution JSONL (repeatable)")
            q.add_argument("--eft", action="append", default=[], help="JudgeExample JSONL (repeatable)")
            q.add_argument("--score", action="append", default=[], help="ScoreExample JSONL for an SRLM scorer")
        elif stage == "dpo":
            q.add_argument("--pairs", action="append", required=True, help="PreferencePair JSONL (repeatable)")
            q.add_argument("--ref", help="reference model (default: --model, as the loop does)")
        else:
            q.add_argument("--rows", action="append", required=True, help="{prompt, completions, labels} JSONL")
        command(q, cmd_train, f"train {stage}", computes=True)


def cmd_train(cfg: Config, args: argparse.Namespace) -> dict:
    """One training stage from files into a model folder with its manifest (the code path `iterate` uses)."""
    from psrlm.checkpoints import resolve_model
    from psrlm.folders import check_writable
    from psrlm.train import MANIFEST_NAME, is_main_process, train_stage

    model = resolve_model(args.model)
    ref = resolve_model(args.ref, "--ref") if getattr(args, "ref", None) else None
    out = Path(args.out)
    check_writable(out.parent)  # before a model loads
    if args.what == "sft":
        data = {"ift": args.ift, "eft": args.eft, "score": args.score}
    elif args.what == "dpo":
        data = {"pairs": args.pairs}
    else:
        data = {"rows": args.rows}
    data = {k: [Path(f) for f in v] for k, v in data.items() if v}
    manifest = train_stage(args.what, model, out, cfg, data, ref_dir=ref, iteration=args.iteration,
                           seed_offset=args.seed_offset)  # fmt: skip
    info = manifest.metrics["train"]
    _end_distributed()
    if not is_main_process():  # one summary line per job, from the main process
        return {"model": str(out), "train": info}
    print(f"  {args.what}: {info.get('steps')} steps, final loss {info.get('final_loss')}, "
          f"{info.get('truncated', 0)} examples truncated -> {out} ({MANIFEST_NAME} beside the weights)")  # fmt: skip
    return {"model": str(out), "train": info}


def _end_distributed() -> None:
    """Leave the process group before exit: a gloo/NCCL group still alive at interpreter exit aborts a rank
    ("terminate called without an active exception", SIGABRT) after the work is done, and the job fails."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
