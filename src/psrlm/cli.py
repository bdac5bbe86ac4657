"""`psrlm <stage>`: the command-line entry points.

    psrlm data arith --config configs/demo.yaml
    psrlm model init --config configs/demo.yaml
    psrlm demo --config configs/demo.yaml

Every stage takes `--config RECIPE.yaml` and any number of `--set section.key=value`, and records what ran, with
the effective config, under `<run_dir>/logs/`. Heavy libraries are imported inside the stages so `--help` is fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

from psrlm.configs import Config, ConfigError, config_to_dict, load_config, save_config
from psrlm.records import RecordError

log = logging.getLogger("psrlm")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="recipe YAML (e.g. configs/demo.yaml); defaults apply to what it omits")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one option (repeatable), e.g. --set arith.n_train=500; the value is read as YAML",
    )


def _record_run(cfg: Config, stage: str, started: float, result: dict) -> None:
    """Append what ran, with which config, to <run_dir>/logs/runs.jsonl and save the config beside it."""
    from psrlm.records import JsonlAppender

    logs = Path(cfg.paths.run_dir) / "logs"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    save_config(cfg, logs / f"{stage.replace(' ', '_')}-{stamp}.yaml")
    entry = {
        "stage": stage,
        "started": stamp,
        "wall_s": round(time.time() - started, 2),
        "argv": sys.argv[1:],
        "result": result,
        "config": config_to_dict(cfg),
    }
    with JsonlAppender(logs / "runs.jsonl") as out:
        out.append(entry)


def cmd_data_arith(cfg: Config) -> dict:
    from psrlm.initdata.build import build_arith_data
    from psrlm.records import read_jsonl

    paths = build_arith_data(cfg)
    counts = {name: len(read_jsonl(p)) for name, p in paths.items()}
    for name, p in paths.items():
        print(f"  {name:<12} {counts[name]:>6}  {p}")
    return {"files": {k: str(v) for k, v in paths.items()}, "counts": counts}


def cmd_model_init(cfg: Config) -> dict:
    from psrlm.initdata.build import init_tiny_model

    path = init_tiny_model(cfg)
    info = json.loads((path / "psrlm_build.json").read_text())
    print(f"  tiny model: {info['parameters'] / 1e6:.2f}M parameters -> {path}")
    return {"model_path": str(path), "parameters": info["parameters"]}


def cmd_demo(cfg: Config) -> dict:
    """The main job on the embedded default: the whole method (iterate), then the report."""
    from psrlm.initdata.build import data_dir
    from psrlm.records import JudgeExample, Problem, read_jsonl

    print("[data] domain data")
    cmd_data_arith(cfg)
    p = read_jsonl(data_dir(cfg) / "arith_test.jsonl", Problem)[0]
    ex = read_jsonl(data_dir(cfg) / "eft_train.jsonl", JudgeExample)[0]
    print(f"\nexample problem ({p.id}): {p.question}")
    print(f"example EFT item ({ex.meta['error_kind']}): A: {ex.step_a} | B: {ex.step_b} -> {ex.explanation} "
          f"[[{ex.verdict}]]\n")  # fmt: skip
    result = cmd_iterate(cfg)
    from psrlm.report import report

    out = Path(cfg.paths.run_dir) / "report.md"
    report([Path(cfg.paths.run_dir)], out)
    print(f"report: {out}")
    return result


def cmd_search(cfg: Config, args: argparse.Namespace) -> dict:
    """Self-judging step search (or the SRLM baseline) over a problem file, resumable into --out."""
    from psrlm.engines import make_engine
    from psrlm.prompts import get_prompts
    from psrlm.records import Problem, read_jsonl, write_json

    problems = read_jsonl(Path(args.problems), Problem)
    if args.limit:
        problems = problems[: args.limit]
    model = args.model or cfg.model.path
    if not model:
        raise ValueError("no model: pass --model DIR or set model.path")
    engine = make_engine(cfg.engine, model)
    prompts = get_prompts(cfg.prompts.variant)
    out = Path(args.out)
    started = time.time()
    if args.method == "srlm":
        from psrlm.srlm import run_srlm

        result = run_srlm(problems, engine, prompts, cfg.srlm, out_dir=out)
    else:
        from psrlm.search import run_search

        result = run_search(problems, engine, prompts, cfg.search, out_dir=out, iteration=args.iteration)
    summary = {**result.summary(), "method": args.method, "model": str(model), "wall_s": time.time() - started}
    write_json(out / "summary.json", summary)
    for k, v in summary.items():
        print(f"  {k:<22} {v:.3f}" if isinstance(v, float) else f"  {k:<22} {v}")
    return summary


def cmd_iterate(cfg: Config) -> dict:
    from psrlm.iterate import run_all

    summary = run_all(cfg)
    print("\nstage timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_s"].items()))
    print(f"summary: {Path(cfg.paths.run_dir) / 'summary.json'}")
    return {"wall_s": summary["wall_s"], "timings_s": summary["timings_s"]}


def cmd_model_pretrain(cfg: Config, args: argparse.Namespace) -> dict:
    """Pre-train M0 and (with --out) publish it as a prebuilt checkpoint folder."""
    import shutil

    from psrlm.initdata.build import build_arith_data
    from psrlm.iterate import Run, ensure_m0

    build_arith_data(cfg)
    no_prebuilt = dataclasses.replace(cfg, iterate=dataclasses.replace(cfg.iterate, m0_path=""))
    m0 = ensure_m0(Run(no_prebuilt))
    if args.out:
        out = Path(args.out)
        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(m0, tmp, ignore=shutil.ignore_patterns("*.trainer"))
        save_config(cfg, tmp / "build_config.yaml")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        m0 = out
    print(f"  M0: {m0}")
    return {"m0": str(m0)}


def cmd_bench(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.bench import print_report, run_bench
    from psrlm.initdata.build import build_arith_data
    from psrlm.iterate import Run, ensure_m0, ensure_m1

    build_arith_data(cfg)
    model = Path(args.model) if args.model else None
    if model is None:  # the demo's M1 (built on first use: a trained judge makes the numbers meaningful)
        run = Run(cfg)
        model = ensure_m1(run, "psrlm", ensure_m0(run))
    report = run_bench(cfg, model, args.problems, args.naive_problems)
    print_report(report)
    return {k: report[k] for k in ("search_vs_raw", "search_vs_naive")}


def cmd_eval(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.initdata.build import build_arith_data
    from psrlm.iterate import Run, evaluate_model

    build_arith_data(cfg)
    name = args.result_name or Path(args.model).name
    metrics = evaluate_model(Run(cfg), name, Path(args.model), few_shot=args.few_shot)
    print(json.dumps({k: v for k, v in metrics.items() if k in ("test", "hard", "judge")}, indent=2))
    return {"name": name}


def cmd_report(args: argparse.Namespace) -> int:
    from psrlm.report import report

    print(report([Path(d) for d in args.run_dirs], Path(args.out) if args.out else None))
    return 0


def cmd_show_config(cfg: Config) -> dict:
    import yaml

    print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
    return {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="psrlm",
        description="Process-based Self-Rewarding Language Models: step search with self-judging, step-wise DPO.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")

    p = sub.add_parser("data", help="build data files")
    data_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = data_sub.add_parser(
        "arith",
        help="embedded domain: training pool, held-out test splits (in-distribution and hard), IFT and EFT files",
    )
    _add_config_args(q)
    q.set_defaults(func=cmd_data_arith, name="data arith")

    p = sub.add_parser("model", help="build models")
    model_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = model_sub.add_parser("init", help="train the tokenizer and build the tiny model from `model.*` (cached)")
    _add_config_args(q)
    q.set_defaults(func=cmd_model_init, name="model init")

    q = model_sub.add_parser(
        "pretrain",
        help="pre-train the base model M0 on raw domain text (cached by config); --out publishes a prebuilt copy",
    )
    _add_config_args(q)
    q.add_argument("--out", help="copy the finished M0 here with its build config (e.g. checkpoints/arith-m0)")
    q.set_defaults(func=cmd_model_pretrain, name="model pretrain", wants_args=True)

    p = sub.add_parser(
        "iterate",
        help="the whole method: M0, M1, PSRLM M2..Mn and SRLM M2..Mn, evaluation, summary table (resumable)",
    )
    _add_config_args(p)
    p.set_defaults(func=cmd_iterate, name="iterate")

    p = sub.add_parser(
        "bench",
        help="search throughput vs raw generation and vs a naive loop (what `make bench` runs)",
        description="Measures, in one run on the same problems: (a) raw batched generation, (b) the batched "
        "search, (c) a naive one-problem/one-judge-prompt loop; plus judge-mode agreement.",
    )
    _add_config_args(p)
    p.add_argument("--model", help="model directory (default: the run's psrlm-M1, built if missing)")
    p.add_argument("--problems", type=int, default=32, help="problems for (a) and (b) (default 32)")
    p.add_argument("--naive-problems", type=int, default=8, help="problems for the slow naive loop (default 8)")
    p.set_defaults(func=cmd_bench, name="bench", wants_args=True)

    p = sub.add_parser("eval", help="greedy accuracy on the arith test splits + judge accuracy on the EFT test split")
    _add_config_args(p)
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument(
        "--name", dest="result_name", help="name for the results (default: the folder name); results go to <run>/eval/"
    )
    p.add_argument("--few-shot", action="store_true", help="3-shot prompting (for a base model such as M0)")
    p.set_defaults(func=cmd_eval, name="eval", wants_args=True)

    p = sub.add_parser("demo", help="run the main job on the embedded default (what `make demo` runs)")
    _add_config_args(p)
    p.set_defaults(func=cmd_demo, name="demo")

    p = sub.add_parser(
        "search",
        help="self-judging step search over problems -> preference pairs + traces (resumable)",
        description="Sample `search.width` candidate steps, let the model judge them pairwise, keep the best, and "
        "write (best, worst) step pairs. Rerun with the same --out to resume.",
    )
    _add_config_args(p)
    p.add_argument("--model", help="model directory (default: model.path)")
    p.add_argument("--problems", required=True, help="Problem JSONL (e.g. runs/demo/data/fresh_questions.jsonl)")
    p.add_argument("--out", required=True, help="output folder: pairs.jsonl, traces.jsonl, summary.json")
    p.add_argument("--limit", type=int, default=0, help="only the first N problems (0 = all)")
    p.add_argument(
        "--method", choices=["psrlm", "srlm"], default="psrlm", help="psrlm: step search (default); srlm: baseline"
    )
    p.add_argument("--iteration", type=int, default=0, help="iteration number recorded in each pair's meta")
    p.set_defaults(func=cmd_search, name="search", wants_args=True)

    p = sub.add_parser(
        "report",
        help="tables from finished runs; with several runs (seeds) the M1 -> Mn science check with 95%% CIs",
    )
    p.add_argument("run_dirs", nargs="+", help="run folders holding summary.json")
    p.add_argument("--out", help="also write the report here (markdown; JSON beside it for several runs)")
    p.set_defaults(func=cmd_report, name="report", no_config=True)

    p = sub.add_parser("show-config", help="print the effective config (defaults + recipe + --set)")
    _add_config_args(p)
    p.set_defaults(func=cmd_show_config, name="show-config")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if getattr(args, "no_config", False):
        try:
            return args.func(args)
        except (FileNotFoundError, ValueError) as e:
            print(f"psrlm: error: {e}", file=sys.stderr)
            return 2
    try:
        cfg = load_config(args.config, args.overrides)
        started = time.time()
        result = args.func(cfg, args) if getattr(args, "wants_args", False) else args.func(cfg)
        if args.name != "show-config":
            _record_run(cfg, args.name, started, result)
            print(f"done in {time.time() - started:.1f}s")
    except (ConfigError, RecordError, FileNotFoundError, ValueError) as e:
        print(f"psrlm: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
