"""The self-rewarding loop: M0 -> M1 -> PPD(M1) -> M2 -> ... -> Mn, for PSRLM and the SRLM baseline.

    psrlm iterate --config configs/demo.yaml

Stages, each skipped when its output is already complete, so `kill -9` anywhere and a rerun continues:
  data      problems, IFT, EFT (deterministic in the config)
  M0        base model: a prebuilt checkpoint whose build config matches, else pre-trained on raw domain text
  M1        SFT of M0: PSRLM on IFT + EFT (step-pair judging), SRLM on IFT + solution-scoring EFT
  M(n+1)    search with M(n) on fresh questions (resumable per problem), then DPO of M(n) against itself as
            reference; every model is written to a temp folder and renamed when whole
  eval      greedy accuracy on the held-out splits, judge accuracy on the EFT test split, step statistics
Each model gets a Manifest (`<run>/manifests/<name>.json`): parent, data files with hashes, config, seeds,
metrics and wall time. The oracle is read only to *measure* (pair precision, evaluation), never to choose.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

from psrlm.configs import Config, config_to_dict
from psrlm.records import (
    JudgeExample,
    Manifest,
    PreferencePair,
    Problem,
    StepSolution,
    from_dict,
    read_jsonl,
    sha256_file,
    write_json,
    write_jsonl,
)

log = logging.getLogger(__name__)


def _is_model(path: Path) -> bool:
    return (Path(path) / "psrlm_build.json").exists()


class Run:
    """Paths and shared pieces of one run folder."""

    def __init__(self, cfg: Config):
        from psrlm.prompts import get_prompts

        self.cfg = cfg
        self.dir = Path(cfg.paths.run_dir)
        self.data = self.dir / "data"
        self.models = self.dir / "models"
        self.manifests = self.dir / "manifests"
        self.prompts = get_prompts(cfg.prompts.variant)
        self.seed = cfg.iterate.seed
        self.timings: dict[str, float] = {}

    def manifest_path(self, name: str) -> Path:
        return self.manifests / f"{name}.json"

    def load_manifest(self, name: str) -> Manifest | None:
        p = self.manifest_path(name)
        return from_dict(Manifest, json.loads(p.read_text()), str(p)) if p.exists() else None

    def write_manifest(self, name: str, m: Manifest) -> None:
        write_json(self.manifest_path(name), dataclasses.asdict(m))

    def engine(self, model_dir: Path):
        from psrlm.engines import make_engine

        return make_engine(self.cfg.engine, model_dir)

    def seeded(self, tc):
        return dataclasses.replace(tc, seed=tc.seed + self.seed)

    def timed(self, key: str, start: float) -> None:
        self.timings[key] = self.timings.get(key, 0.0) + time.time() - start


# ------------------------------------------------------------------------------------------------ M0


def m0_texts(run: Run) -> list[str]:
    """Raw domain text: problems with free-form solutions (no step markers, no judge data), from a pre-training
    stream disjoint from the training pool and the test splits, half of it hard-style (more operations, bigger
    numbers): the base model has seen the domain, not these problems."""
    from psrlm.initdata.build import arith_splits
    from psrlm.tasks.arith import Difficulty, free_form_solution, generate_split

    a = run.cfg.arith
    seen = {p.meta["hash"] for split in arith_splits(run.cfg).values() for p in split}
    easy = generate_split(a.seed, a.n_pretrain // 2, Difficulty(a.min_ops, a.max_ops, a.max_number), "arith-pre", seen)
    seen |= {p.meta["hash"] for p in easy}
    hard_diff = Difficulty(a.hard_min_ops, a.hard_max_ops, a.hard_max_number)
    hard = generate_split(a.seed, a.n_pretrain - len(easy), hard_diff, "arith-prehard", seen)
    mixed = [p for pair in zip(easy, hard, strict=False) for p in pair] + easy[len(hard) :] + hard[len(easy) :]
    return [f"{p.question} {free_form_solution(p)}" for p in mixed]


def m0_key(cfg: Config) -> str:
    from psrlm.tiny import config_key

    a = cfg.arith  # only what shapes the training pool M0 reads
    pool = [a.seed, a.n_train, a.n_test, a.min_ops, a.max_ops, a.max_number, a.n_pretrain, a.hard_min_ops,
            a.hard_max_ops, a.hard_max_number]  # fmt: skip
    return config_key(dataclasses.asdict(cfg.model), pool, dataclasses.asdict(cfg.pretrain))


def ensure_m0(run: Run) -> Path:
    """A prebuilt M0 whose recorded key matches this config, else pre-train one (cached by the same key)."""
    from psrlm import train
    from psrlm.initdata.build import init_tiny_model

    cfg = run.cfg
    if cfg.model.path:  # a real checkpoint is M0 as it is
        return Path(cfg.model.path)
    key = m0_key(cfg)
    if cfg.iterate.m0_path:
        pre = Path(cfg.iterate.m0_path)
        if not pre.is_absolute() and not pre.exists():
            from psrlm.configs import REPO_ROOT

            pre = REPO_ROOT / pre
        info = json.loads((pre / "psrlm_build.json").read_text()) if _is_model(pre) else {}
        if info.get("m0_key") == key:
            return pre
        log.warning("prebuilt M0 at %s was built from another config (key %s != %s): pre-training a new one",
                    pre, info.get("m0_key"), key)  # fmt: skip
    target = run.models / f"M0-{key}"
    if _is_model(target):
        return target
    start = time.time()
    init = init_tiny_model(cfg)
    info = train.pretrain(init, m0_texts(run), cfg.pretrain, target)
    meta = json.loads((target / "psrlm_build.json").read_text())
    meta.update(m0_key=key, model=dataclasses.asdict(cfg.model), pretrain=dataclasses.asdict(cfg.pretrain))
    (target / "psrlm_build.json").write_text(json.dumps(meta, indent=2) + "\n")
    run.timed("M0 pretrain", start)
    log.info("M0 pre-trained in %.0fs, final loss %.3f", time.time() - start, info["final_loss"])
    return target


# ------------------------------------------------------------------------------------------------ M1


def srlm_eft_file(run: Run) -> Path:
    from psrlm.initdata.build import arith_splits, pool_blocks
    from psrlm.initdata.eft import build_srlm_eft

    path = run.data / "srlm_eft_train.jsonl"
    if not path.exists():
        blocks = pool_blocks(run.cfg, arith_splits(run.cfg)["train"])
        n = run.cfg.iterate.srlm_eft or run.cfg.data.eft_train
        write_jsonl(path, build_srlm_eft(blocks["eft_train"], n, run.cfg.arith.seed))
    return path


def ensure_m1(run: Run, method: str, m0: Path) -> Path:
    from psrlm import train
    from psrlm.prompts import score_target
    from psrlm.records import ScoreExample

    name = f"{method}-M1"
    out = run.models / name
    if _is_model(out) and run.load_manifest(name):
        return out
    start = time.time()
    ift_file = run.data / "ift.jsonl"
    rows = train.ift_rows(read_jsonl(ift_file, StepSolution), run.prompts)
    if method == "psrlm":
        eft_file = run.data / "eft_train.jsonl"
        rows += train.eft_rows(read_jsonl(eft_file, JudgeExample), run.prompts)
    else:
        eft_file = srlm_eft_file(run)
        rows += [
            {
                "prompt": run.prompts.score_prompt(e.question, e.response),
                "completion": score_target(e.explanation, e.score),
            }
            for e in read_jsonl(eft_file, ScoreExample)
        ]
    info = train.sft(m0, rows, run.seeded(run.cfg.sft), out)
    run.write_manifest(
        name,
        Manifest(
            iteration=1,
            method=method,
            parent_model=str(m0),
            model_path=str(out),
            data_files={str(p): sha256_file(p) for p in (ift_file, eft_file)},
            config=config_to_dict(run.cfg),
            metrics={"train": info},
            seeds={"sft": run.cfg.sft.seed + run.seed},
            wall_time_s=time.time() - start,
        ),
    )
    run.timed(f"{method} M1 SFT", start)
    return out


# ----------------------------------------------------------------------------------------- iterations


def question_blocks(run: Run) -> list[list[Problem]]:
    fresh = read_jsonl(run.data / "fresh_questions.jsonl", Problem)
    sizes = run.cfg.iterate.questions
    if sum(sizes) > len(fresh):
        raise ValueError(
            f"iterate.questions={sizes} needs {sum(sizes)} fresh questions but the pool has {len(fresh)}; "
            "raise arith.n_train or lower the counts"
        )
    blocks, start = [], 0
    for n in sizes:
        blocks.append(fresh[start : start + n])
        start += n
    return blocks


def pair_precision(pairs: list[PreferencePair], problems: dict[str, Problem]) -> dict:
    """With the oracle: share of pairs whose chosen step is correct and rejected step wrong (arith only)."""
    from psrlm.tasks.arith import label_step

    counts = {"correct_wrong": 0, "both_correct": 0, "both_wrong": 0, "wrong_correct": 0}
    for p in pairs:
        prob = problems.get(p.meta.get("problem_id", ""))
        if prob is None or "equations" not in prob.meta:
            continue
        prev = p.meta.get("prev_steps", [])
        c = label_step(prob, prev, p.chosen).correct
        r = label_step(prob, prev, p.rejected).correct
        key = {(True, False): "correct_wrong", (True, True): "both_correct", (False, False): "both_wrong"}
        counts[key.get((c, r), "wrong_correct")] += 1
    n = sum(counts.values())
    return {"labelled": n, "precision": counts["correct_wrong"] / n if n else None, **counts}


def run_iteration(run: Run, method: str, it: int, parent: Path, questions: list[Problem]) -> Path:
    from psrlm import train

    name = f"{method}-M{it}"
    out = run.models / name
    if _is_model(out) and run.load_manifest(name):
        return out
    cfg = run.cfg
    search_dir = run.dir / method / f"it{it}"
    start = time.time()
    engine = run.engine(parent)
    if method == "psrlm":
        from psrlm.search import run_search

        search_cfg = dataclasses.replace(cfg.search, seed=cfg.search.seed + 1000 * it + run.seed)
        result = run_search(questions, engine, run.prompts, search_cfg, out_dir=search_dir, iteration=it)
    else:
        from psrlm.srlm import run_srlm

        srlm_cfg = dataclasses.replace(cfg.srlm, seed=cfg.srlm.seed + 1000 * it + run.seed)
        result = run_srlm(questions, engine, run.prompts, srlm_cfg, out_dir=search_dir, iteration=it)
    del engine
    run.timed(f"{method} search", start)
    pairs = result.pairs
    summary = result.summary()
    precision = pair_precision(pairs, {p.id: p for p in questions}) if method == "psrlm" else {}
    start_train = time.time()
    if pairs:
        info = train.dpo(parent, pairs, run.seeded(cfg.dpo), out, ref_dir=parent)
    else:  # no preference at all: the model carries over unchanged, and the manifest says so
        log.warning("%s: search produced no pairs; %s is a copy of its parent", name, name)
        import shutil

        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(parent, tmp)
        tmp.rename(out)
        info = {"stage": "dpo", "pairs": 0, "skipped": True}
    run.timed(f"{method} DPO", start_train)
    pairs_file = search_dir / "pairs.jsonl"
    run.write_manifest(
        name,
        Manifest(
            iteration=it,
            method=method,
            parent_model=str(parent),
            model_path=str(out),
            data_files={str(pairs_file): sha256_file(pairs_file)} if pairs_file.exists() else {},
            config=config_to_dict(cfg),
            metrics={"search": summary, "pair_precision": precision, "train": info},
            seeds={"search": cfg.search.seed + 1000 * it + run.seed, "dpo": cfg.dpo.seed + run.seed},
            wall_time_s=time.time() - start,
        ),
    )
    return out


# ------------------------------------------------------------------------------------------ evaluation


def evaluate_model(run: Run, name: str, model_dir: Path, few_shot: bool = False) -> dict:
    """Greedy accuracy per held-out split (and any `iterate.eval_benchmarks`) + judge accuracy on the EFT test
    split; cached in <run>/eval/<name>.json, per-problem results in <run>/eval/<name>/<benchmark>.jsonl."""
    from psrlm.evaluate import evaluate_benchmarks
    from psrlm.steps import split_steps
    from psrlm.tasks.arith import label_solution
    from psrlm.tasks.benchmarks import load_benchmark

    path = run.dir / "eval" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    start = time.time()
    cfg = run.cfg.iterate
    engine = run.engine(model_dir)
    shots = read_jsonl(run.data / "ift.jsonl", StepSolution)[:3] if few_shot else None
    metrics: dict = {"model": str(model_dir), "few_shot": few_shot}
    benchmarks = {s: load_benchmark(s, run_data=run.data, limit=cfg.eval_limit) for s in ("arith_test", "arith_hard")}
    data_dir = run.cfg.paths.resolved_data_dir()
    for b in cfg.eval_benchmarks:
        benchmarks[b] = load_benchmark(b, data_dir, limit=cfg.eval_benchmark_limit)
    out_dir = run.dir / "eval" / name
    summaries = evaluate_benchmarks(benchmarks, engine, run.prompts, out_dir, cfg.eval_max_tokens, few_shot=shots,
                                    desc=f"eval {name}")  # fmt: skip
    for split in ("test", "hard"):
        problems = benchmarks[f"arith_{split}"]
        by_id = {r["problem_id"]: r for r in read_jsonl(out_dir / f"arith_{split}.jsonl")}
        labels = [label_solution(p, split_steps(by_id[p.id]["response"])) for p in problems]
        flat = [lab.correct for ls in labels for lab in ls]
        metrics[split] = {**summaries[f"arith_{split}"], "step_precision": sum(flat) / len(flat) if flat else 0.0}
    metrics["benchmarks"] = summaries
    metrics.update(evaluate_judge(run, engine, few_shot))
    metrics["wall_s"] = time.time() - start
    write_json(path, metrics)
    run.timed("evaluation", start)
    return metrics


def evaluate_judge(run: Run, engine, few_shot: bool = False, eft_file: Path | None = None) -> dict:
    """Table 3: the first `iterate.eval_eft` items of the EFT test split (or `eft_file`) in both A/B orders; with
    `few_shot`, three EFT-train items are prepended (how M0 is asked)."""
    from psrlm.evaluate import judge_metrics

    cfg = run.cfg.iterate
    eft = read_jsonl(Path(eft_file) if eft_file else run.data / "eft_test.jsonl", JudgeExample)
    eft = eft[: cfg.eval_eft] if cfg.eval_eft else eft
    few = read_jsonl(run.data / "eft_train.jsonl", JudgeExample)[:3] if few_shot else None
    return judge_metrics(eft, engine, run.prompts, run.cfg.search.judge_max_tokens, few_shot=few)


def evaluate_tts(run: Run, name: str, model_dir: Path) -> dict:
    """Table 5: test-time search vs greedy on the first `iterate.eval_tts` arith test problems; cached."""
    from psrlm.evaluate import tts_vs_greedy
    from psrlm.tasks.benchmarks import load_benchmark

    path = run.dir / "eval" / name / "tts.json"
    if path.exists():
        return json.loads(path.read_text())
    start = time.time()
    problems = load_benchmark("arith_test", run_data=run.data, limit=run.cfg.iterate.eval_tts)
    search_cfg = dataclasses.replace(run.cfg.search, seed=run.cfg.search.seed + run.seed)
    result = tts_vs_greedy(problems, run.engine(model_dir), run.prompts, search_cfg, path.parent,
                           run.cfg.iterate.eval_max_tokens)  # fmt: skip
    write_json(path, {"model": name, **result})
    run.timed("tts evaluation", start)
    return result


def evaluate_appendix_b(run: Run, pair_model: Path, score_model: Path, n: int = 0, refresh: bool = False) -> dict:
    """Appendix B: `pair_model` (psrlm-M1) judging step pairs vs `score_model` (srlm-M1) scoring solutions, on the
    same first `n` (default `iterate.eval_appendix_b`) EFT test items; cached unless `refresh`."""
    from psrlm.evaluate import compare_judging

    path = run.dir / "eval" / "appendix_b.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text())
    start = time.time()
    items = read_jsonl(run.data / "eft_test.jsonl", JudgeExample)[: n or run.cfg.iterate.eval_appendix_b]
    s = run.cfg.srlm
    result = compare_judging(items, run.engine(pair_model), run.engine(score_model), run.prompts,
                             run.cfg.search.judge_max_tokens, s.judge_max_tokens, s.judge_temperature,
                             seed=s.seed + run.seed)  # fmt: skip
    result = {"pair_judge": str(pair_model), "scorer": str(score_model), **result}
    write_json(path, result)
    run.timed("appendix B", start)
    return result


# ----------------------------------------------------------------------------------------------- main


def run_all(cfg: Config, progress: bool = True) -> dict:
    """Every stage of the configured run, resumable; returns {model name: metrics} and prints the table."""
    from psrlm.initdata.build import build_arith_data

    run = Run(cfg)
    start = time.time()
    for method in cfg.iterate.methods:
        if method not in ("psrlm", "srlm"):
            raise ValueError(f"unknown method {method!r} in iterate.methods; choose psrlm and/or srlm")
    t = time.time()
    build_arith_data(cfg)
    run.timed("data", t)
    m0 = ensure_m0(run)
    models: dict[str, Path] = {"M0": m0}
    blocks = question_blocks(run)
    for method in cfg.iterate.methods:
        parent = ensure_m1(run, method, m0)
        models[f"{method}-M1"] = parent
        for it, questions in enumerate(blocks, start=2):
            parent = run_iteration(run, method, it, parent, questions)
            models[f"{method}-M{it}"] = parent
    results = {name: evaluate_model(run, name, path, few_shot=name == "M0") for name, path in models.items()}
    for name, res in results.items():
        m = run.load_manifest(name)
        if m is not None:
            res["manifest"] = {"pair_precision": m.metrics.get("pair_precision"), "search": m.metrics.get("search")}
    summary = {"models": results}
    if cfg.iterate.eval_tts and "psrlm" in cfg.iterate.methods:  # Table 5: PSRLM's first and last model
        tts_models = dict.fromkeys(["psrlm-M1", f"psrlm-M{len(blocks) + 1}"])
        summary["tts"] = {n: evaluate_tts(run, n, models[n]) for n in tts_models}
    if cfg.iterate.eval_appendix_b and {"psrlm-M1", "srlm-M1"} <= set(models):
        summary["appendix_b"] = evaluate_appendix_b(run, models["psrlm-M1"], models["srlm-M1"])
    summary.update(timings_s=run.timings, wall_s=time.time() - start)
    write_json(run.dir / "summary.json", summary)
    print(format_table(results))
    return summary


def format_table(results: dict) -> str:
    head = (
        "| model | test acc | hard acc | judge acc (generated) | consistency | judge acc (soft, both orders) "
        "| steps | step chars | pairs | pair precision |"
    )
    lines = [head, "|" + "---|" * 10]
    for name, r in results.items():
        man = r.get("manifest") or {}
        search = man.get("search") or {}
        prec = (man.get("pair_precision") or {}).get("precision")
        soft = f"{r['judge_soft']['accuracy']:.3f}" if r.get("judge_soft") else "-"
        lines.append(
            f"| {name} | {r['test']['accuracy']:.3f} | {r['hard']['accuracy']:.3f} | {r['judge']['judge_accuracy']:.3f} "
            f"| {r['judge']['consistency']:.3f} | {soft} | {r['test']['mean_steps']:.2f} "
            f"| {r['test']['mean_step_chars']:.1f} "
            f"| {search.get('pairs', '-')} | {'-' if prec is None else f'{prec:.3f}'} |"
        )
    return "\n".join(lines)
