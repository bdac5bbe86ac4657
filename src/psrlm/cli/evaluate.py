"""`psrlm eval`: one model's greedy accuracy and step statistics per benchmark, judge accuracy, test-time search
and the Appendix B comparison, into <run>/eval/<name>/ (resumable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from psrlm.cli.common import add_config_args, command, count, positive
from psrlm.configs import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="greedy accuracy and step statistics per benchmark, judge accuracy, test-time search, Appendix B",
        description="Evaluate one model. Per-problem results (prompt, response, extracted answer, gold, correct) go "
        "to <run>/eval/<name>/<benchmark>.jsonl and resume when rerun; summary.json, judge.json, tts.json beside "
        "them; `psrlm report <run>` picks them up.",
    )
    add_config_args(p)
    p.add_argument("--model", required=True, help="model directory (hf engine) or served model name (openai engine)")
    p.add_argument(
        "--name", dest="result_name", help="name for the results (default: the folder name); results go to <run>/eval/"
    )
    p.add_argument(
        "--benchmarks",
        default="arith",
        help="comma-separated: arith_test, arith_hard, gsm8k, math, math500, gaokao2023en, olympiadbench, aime24, "
        "amc23; or arith (both arith splits), paper (the paper's six), all (default: arith)",
    )
    p.add_argument("--limit", type=count, default=0, help="only the first N problems of each benchmark (0 = all)")
    p.add_argument("--max-tokens", type=positive, help="token cap per solution (default: iterate.eval_max_tokens)")
    p.add_argument("--few-shot", action="store_true", help="3-shot prompting (for a base model such as M0)")
    p.add_argument(
        "--no-judge", dest="judge", action="store_false", help="skip judge accuracy on the EFT test split (Table 3)"
    )
    p.add_argument("--eft", help="JudgeExample JSONL for judge accuracy (default: the run's EFT test file)")
    p.add_argument(
        "--equations",
        type=count,
        default=0,
        metavar="N",
        help="also measure arithmetic alone on the first N problems of each arith split: the gold solution is given "
        "up to each equation's '=' and the model's next number is graded, in the loop's 'Step n:' layout and in "
        "the prose M0 is pre-trained on (per operator; equations.json). Separates arithmetic slips from wrong "
        "choices of operation",
    )
    p.add_argument(
        "--tts",
        type=count,
        default=0,
        help="also solve the first N problems of each TTS benchmark (iterate.eval_tts_benchmark; default arith_test, "
        "or every evaluated benchmark of a files run) with test-time search vs greedy, under iterate.eval_tts_rules",
    )
    p.add_argument(
        "--appendix-b",
        metavar="SCORER_MODEL",
        help="also compare this model judging step pairs with SCORER_MODEL (e.g. srlm-M1) scoring solutions",
    )
    command(p, cmd_eval, "eval", computes=True)


def _equation_accuracy(run, engine, names: list[str], n: int, name: str) -> dict:
    """Teacher-forced arithmetic on the first n problems of each arith split, in the loop's layout and in M0's."""
    from psrlm.benchmark_names import ARITH_NAMES
    from psrlm.evaluation import equations_cached

    splits = [b for b in names if b in ARITH_NAMES]
    if not splits:
        raise ValueError("--equations needs an arith split in --benchmarks (the gold step chains it forces)")
    found = equations_cached(run, name, engine, splits, n)
    print("| benchmark | layout | equations | right | + | - | * | / |\n|---|---|---|---|---|---|---|---|")
    for b in splits:
        for lay, e in found[b].items():
            ops = " | ".join(f"{e['per_operator'][o]['accuracy']:.2f}" if o in e["per_operator"] else "-"
                             for o in "+-*/")  # fmt: skip
            print(f"| {b} | {lay} | {e['equations']} | {e['accuracy']:.3f} | {ops} |")
    return {b: found[b] for b in splits}


def cmd_eval(cfg: Config, args: argparse.Namespace) -> dict:
    """Evaluate one model: greedy accuracy + step statistics per benchmark, judge accuracy, optionally test-time
    search vs greedy and the Appendix B comparison. Results go to <run>/eval/<name>/ (per-problem JSONL, resumable;
    recomputed when the model or a setting that changes results differs from what made them)."""
    from contextlib import nullcontext

    from psrlm.benchmark_names import ARITH_SPLITS, parse_benchmarks
    from psrlm.evaluate import evaluate_benchmarks
    from psrlm.evaluation import eval_folder, evaluate_appendix_b, judge_cached, measure_tts
    from psrlm.folders import check_writable
    from psrlm.runfolder import Run

    run = Run(cfg)
    names = parse_benchmarks(args.benchmarks)
    if not names:
        raise ValueError("--benchmarks is empty: name at least one (e.g. arith, gsm8k,math500, paper)")
    name = _result_name(args.result_name or Path(args.model).resolve().name)
    if args.judge and args.eft:
        _check_eft(Path(args.eft), "--eft")
    model = args.model
    if cfg.engine.kind == "hf":
        from psrlm.checkpoints import resolve_model

        model = resolve_model(args.model)
        scorer = resolve_model(args.appendix_b, "--appendix-b") if args.appendix_b else None
    else:
        scorer = args.appendix_b
    check_writable(run.layout.evals)  # before a model is loaded
    needs_arith = any(n in ARITH_SPLITS for n in names) or (args.judge and not args.eft) or args.tts or args.appendix_b
    if run.arith and needs_arith:
        from psrlm.initdata.build import build_arith_data

        build_arith_data(cfg)
    if args.judge and not args.eft:
        _check_eft(run.eft_test_file(), "the run's EFT test file (data.eft_test / data.eft_test_file; --no-judge "
                   "skips judge accuracy)")  # fmt: skip
    benchmarks = run.benchmarks(names, args.limit)
    for b, problems in benchmarks.items():
        if not problems:
            raise ValueError(f"--benchmarks: {b} has no problems{' (check --limit)' if args.limit else ''}: an "
                             "accuracy of nothing is not a measurement")  # fmt: skip
    shots = run.ift()[:3] if args.few_shot else None
    max_tokens = args.max_tokens if args.max_tokens is not None else cfg.iterate.eval_max_tokens
    result: dict = {"name": name}
    with eval_folder(run, name, model, max_tokens, shots) as out_dir, run.serving(model, name) as engine:
        summaries = evaluate_benchmarks(benchmarks, engine, run.prompts, out_dir, max_tokens, few_shot=shots,
                                        include_percentage=cfg.grading.include_percentage)  # fmt: skip
        print("| benchmark | n | accuracy | steps | tokens/step | no answer | skipped (context) | hit token cap |\n"
              "|---|---|---|---|---|---|---|---|")  # fmt: skip
        for b, s in summaries.items():
            print(f"| {b} | {s['n']} | {_num(s['accuracy'])} | {_num(s['mean_steps'], '.2f')} "
                  f"| {_num(s['mean_step_tokens'], '.1f')} | {_num(s['no_answer_rate'])} | {s['context_skipped']} "
                  f"| {s['hit_token_cap']} |")  # fmt: skip
        result["benchmarks"] = summaries
        if args.equations:
            result["equations"] = _equation_accuracy(run, engine, names, args.equations, name)
        if args.judge:
            judged = judge_cached(run, name, engine, args.few_shot, args.eft)
            print("judge: " + json.dumps({k: v for k, v in judged.items() if k != "settings"}))
            result.update(judged)
        if args.tts:
            # the loop's orchestration and cache (eval/<name>/tts.json); a standalone eval banks no stage time
            tts = measure_tts(run, name, out_dir, args.tts, max_tokens, lambda: nullcontext(engine), timed=False)
            for b, t in {**tts.get("benchmarks", {}), "all": tts}.items():
                print(f"TTS vs greedy on {t['n']} {b} problems: accuracy {t['greedy']['accuracy']:.3f} -> "
                      f"{t['tts']['accuracy']:.3f} at {t['token_ratio']:.1f}x the tokens")  # fmt: skip
            result["tts"] = tts
    if args.appendix_b:
        n = cfg.iterate.eval_appendix_b or cfg.iterate.eval_eft or 200
        ab = evaluate_appendix_b(run, Path(model), Path(scorer), n=n)
        print("Appendix B: " + json.dumps({k: ab[k] for k in ("pairwise", "pairwise_soft", "scoring")}))
        result["appendix_b"] = ab
    print(f"results: {out_dir}")
    return result


def _num(x, spec: str = ".3f") -> str:
    """A measured number, or "-" where nothing was measured (null)."""
    return "-" if x is None else format(x, spec)


def _check_eft(path: Path, key: str) -> None:
    """A judge-accuracy file holds judge examples: checked before a model loads (an empty one measured nothing)."""
    from psrlm.records import JudgeExample, validate_jsonl

    if not path.is_file():
        raise FileNotFoundError(f"{key}: {path} does not exist")
    if validate_jsonl(path, JudgeExample) == 0:
        raise ValueError(f"{key}: {path} holds no judge examples: judge accuracy needs at least one")


def _result_name(name: str) -> str:
    """`eval --name`: one folder name under <run>/eval/, never a path that leads elsewhere."""
    if not name.strip() or name != Path(name).name or name in (".", "..") or name.startswith("."):
        raise ValueError(f"--name {name!r}: give a plain folder name (no '/', not starting with '.'); results go to "
                         "<run>/eval/<name>/")  # fmt: skip
    return name
