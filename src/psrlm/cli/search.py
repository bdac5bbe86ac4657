"""`psrlm search`: the self-judging step search (or the SRLM baseline) over a problem file -> preference pairs and
traces in --out (resumable)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from psrlm.cli.common import add_config_args, command, count
from psrlm.configs import Config
from psrlm.run_layout import RunLayout


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="self-judging step search over problems -> preference pairs + traces (resumable)",
        description="Sample `search.width` candidate steps, let the model judge them pairwise, keep the best, and "
        "write (best, worst) step pairs. Rerun with the same --out to resume.",
    )
    add_config_args(p)
    p.add_argument("--model", help="model directory (default: model.path)")
    p.add_argument("--problems", required=True, help="Problem JSONL (e.g. runs/demo/data/fresh_questions.jsonl)")
    p.add_argument("--out", required=True, help="output folder: pairs.jsonl, traces.jsonl, summary.json")
    p.add_argument("--limit", type=count, default=0, help="only the first N problems (0 = all)")
    p.add_argument(
        "--method", choices=["psrlm", "srlm"], default="psrlm", help="psrlm: step search (default); srlm: baseline"
    )
    p.add_argument("--iteration", type=int, default=0, help="iteration number recorded in each pair's meta")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="start --out over when it holds results made with other settings (they are moved to a replaced/ folder "
        "beside it) instead of stopping with the keys that differ",
    )
    command(p, cmd_search, "search", computes=True)


def cmd_search(cfg: Config, args: argparse.Namespace) -> dict:
    """Self-judging step search (or the SRLM baseline) over a problem file, resumable into --out."""
    from psrlm.engines import engine_for
    from psrlm.folders import FolderLock, claim_settings, recorded_extra
    from psrlm.identity import generation_identity
    from psrlm.prompts import prompts_of
    from psrlm.records import read_problems

    problems = read_problems(Path(args.problems))
    if not problems:
        raise ValueError(f"--problems {args.problems}: no problems in the file: nothing to search")
    if args.limit:
        problems = problems[: args.limit]
    model = args.model or cfg.model.path or (cfg.engine.model_name if cfg.engine.kind == "openai" else "")
    if not model:
        raise ValueError("no model: pass --model DIR or set model.path (engine.model_name for a server)")
    if cfg.engine.kind == "hf":
        from psrlm.checkpoints import resolve_model

        model = resolve_model(model, "--model" if args.model else "model.path")
    out = Path(args.out)
    lock = FolderLock(out, f"search --method {args.method}")  # checks the folder is writable, before any model loads
    lock.acquire()
    try:
        from psrlm.evaluate import eval_settings

        ident, extra = eval_settings(cfg.engine, model, cfg.prompts.variant, 0, None, recorded_extra(out))
        gen_cfg = cfg.search if args.method == "psrlm" else cfg.srlm
        # the prompts and generation keys as iterate's search folders record them
        settings = {"method": args.method, "model": ident["model"], "engine": ident["engine"],
                    **generation_identity(args.method, gen_cfg, cfg.prompts.variant)}  # fmt: skip
        claim_settings(out, settings, fresh=args.fresh, extra=extra)
        with engine_for(cfg.engine, model, RunLayout(cfg.paths.run_dir).servers, "search") as engine:
            return _search(args, problems, engine, prompts_of(cfg), gen_cfg, model, out)
    finally:
        lock.release()


def _search(args: argparse.Namespace, problems, engine, prompts, gen_cfg, model, out: Path) -> dict:
    from psrlm.records import write_json
    from psrlm.stages import generate_pairs

    started = time.time()
    result = generate_pairs(args.method, problems, engine, prompts, gen_cfg, out, args.iteration)
    summary = {**result.summary(), "method": args.method, "model": str(model), "wall_s": time.time() - started}
    write_json(out / "summary.json", summary)
    for k, v in summary.items():
        print(f"  {k:<22} {v:.3f}" if isinstance(v, float) else f"  {k:<22} {v}")
    return summary
