"""Evaluation over a run folder, one orchestration for `psrlm iterate` and `psrlm eval`: each model's folder
eval/<name>/ checked against what decides its results (eval_folder), greedy accuracy and judge accuracy (metrics.json),
test-time search vs greedy (tts.json), teacher-forced arithmetic (equations.json) and Appendix B; every result cached
with the settings that made it, and made afresh when they differ; a model that is an unchanged copy of its parent
(an iteration with nothing to train on) takes its parent's metrics instead of being served (parent_evaluation). The
measurements themselves are evaluate.py's (solving) and judge_eval.py's (judging).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psrlm.benchmark_names import parse_benchmarks
from psrlm.folders import claim_settings, flatten
from psrlm.identity import engine_settings, generation_settings
from psrlm.records import JudgeExample, Problem, read_json, read_jsonl, sha256_file
from psrlm.runfolder import Run, cached

log = logging.getLogger(__name__)


@contextmanager
def eval_folder(run: Run, name: str, model: Path | str, max_tokens: int, shots=None) -> Iterator[Path]:
    """<run>/eval/<name>/, locked for this process and checked against what decides its results (the model's
    identity, engine precision, prompts, token cap, few-shot examples). Results made otherwise are moved to
    <run>/replaced/ and computed afresh, never reused."""
    from psrlm.evaluate import eval_settings
    from psrlm.folders import FolderLock, recorded_extra

    out = run.layout.evaluation(name)
    with FolderLock(out, "eval"):
        settings, extra = eval_settings(run.cfg.engine, model, run.cfg.prompts.variant, max_tokens, shots,
                                        recorded_extra(out), dataclasses.asdict(run.cfg.grading))  # fmt: skip
        claim_settings(out, settings, replace=True, root=run.dir, extra=extra)
        yield out


def metrics_settings(run: Run, judge: bool = True, few_shot: bool = False, judge_few_shot: bool | None = None) -> dict:
    """What decides a model's metrics.json besides the evaluation folder's own settings (eval_folder)."""
    cfg = run.cfg.iterate
    settings = {"limit": cfg.eval_limit, "eft": cfg.eval_eft, "judge_max_tokens": run.cfg.search.judge_max_tokens,
                "benchmarks": cfg.eval_benchmarks, "benchmark_limit": cfg.eval_benchmark_limit,
                "eft_file": sha256_file(run.eft_test_file()), "judge": judge}  # fmt: skip
    judge_few_shot = few_shot if judge_few_shot is None else judge_few_shot
    if judge_few_shot != few_shot:  # keyed only when they differ: results made before the setting still match
        settings["judge_few_shot"] = judge_few_shot
    return settings


def shots_of(run: Run, name: str) -> tuple[bool, bool]:
    """(benchmarks 3-shot, judge 3-shot) for the model `name`: only M0 is prompted with shots (iterate.m0_three_shot;
    the paper: M0's judge 3-shot, its benchmark answers zero-shot)."""
    shots = set(run.cfg.iterate.m0_three_shot) if name == "M0" else set()
    return "benchmarks" in shots, "judge" in shots


def evaluate_model(
    run: Run,
    name: str,
    model_dir: Path,
    few_shot: bool = False,
    judge: bool = True,
    judge_few_shot: bool | None = None,
) -> dict:
    """Greedy accuracy per held-out split (and any `iterate.eval_benchmarks`) + judge accuracy on the EFT test
    split (unless `judge` is off); cached in <run>/eval/<name>/metrics.json, per-problem results in
    <run>/eval/<name>/<benchmark>.jsonl. `few_shot`: three IFT solutions before every benchmark problem;
    `judge_few_shot` (default: as `few_shot`): three EFT-train items before every judge item (M0: see
    iterate.m0_three_shot). metrics.json records both."""
    from psrlm.evaluate import evaluate_benchmarks
    from psrlm.steps import split_steps
    from psrlm.tasks.arith import label_solution

    cfg = run.cfg.iterate
    judge_few_shot = few_shot if judge_few_shot is None else judge_few_shot
    shots = run.ift()[:3] if few_shot else None
    settings = metrics_settings(run, judge, few_shot, judge_few_shot)

    def compute() -> dict:
        reused = parent_evaluation(run, name, model_dir, out, settings)
        if reused is not None:
            return reused
        with run.serving(model_dir, name) as engine:
            return measure(engine)

    def measure(engine) -> dict:
        start = time.time()
        metrics: dict = {"model": str(model_dir), "few_shot": few_shot, "judge_few_shot": judge_few_shot}
        benchmarks = run.benchmarks(["arith_test", "arith_hard"], cfg.eval_limit) if run.arith else {}
        benchmarks.update(run.benchmarks(parse_benchmarks(cfg.eval_benchmarks), cfg.eval_benchmark_limit))
        summaries = evaluate_benchmarks(benchmarks, engine, run.prompts, out, cfg.eval_max_tokens, few_shot=shots,
                                        desc=f"eval {name}",
                                        include_percentage=run.cfg.grading.include_percentage)  # fmt: skip
        for split in ("test", "hard") if run.arith else ():  # step precision: the arith oracle labels each step
            problems = benchmarks[f"arith_{split}"]
            by_id = {r["problem_id"]: r for r in read_jsonl(run.layout.eval_rows(name, f"arith_{split}"))}
            labels = [label_solution(p, split_steps(by_id[p.id]["response"])) for p in problems]
            flat = [lab.correct for ls in labels for lab in ls]
            metrics[split] = {**summaries[f"arith_{split}"], "step_precision": sum(flat) / len(flat) if flat else None}
        metrics["benchmarks"] = summaries
        if judge:
            metrics.update(evaluate_judge(run, engine, judge_few_shot))
        metrics["wall_s"] = time.time() - start
        run.timed("evaluation", start, name)
        return metrics

    with eval_folder(run, name, model_dir, cfg.eval_max_tokens, shots) as out:
        metrics = cached(out / "metrics.json", settings, compute)
    from psrlm.tracking import Tracker, evaluation_metrics

    Tracker(run.cfg).log(*evaluation_metrics(name, metrics))
    return metrics


def copy_of(run: Run, name: str) -> str | None:
    """The parent that model `name` is an unchanged copy of, by its manifest (an iteration whose search left
    nothing to train on: run_iteration copied the parent's folder and recorded train.skipped), else None."""
    from psrlm.summary_table import manifest_facts  # the one reading of a manifest's copy mark, as the tables show it

    m = run.load_manifest(name)
    return None if m is None else manifest_facts(dataclasses.asdict(m)).get("copy_of")


def parent_evaluation(run: Run, name: str, model_dir: Path, out: Path, settings: dict) -> dict | None:
    """The metrics of model `name` taken from its parent's evaluation, without serving it, where `name` is an
    unchanged copy of that parent (copy_of) and the results are the same by construction: the copy's weights hash
    as the parent's, the parent's evaluation folder was made with the settings `out` was just claimed with but for
    the model's identity (eval_folder), and its metrics.json with `settings`. Greedy decoding and judging are
    deterministic, so measuring again would give these numbers. The rows behind them are copied into `out` beside a
    metrics.json that says whose they are (`copy_of`); None where anything differs (then the copy is measured)."""
    from psrlm.folders import model_identity, recorded_extra, recorded_settings
    from psrlm.records import write_json

    parent = copy_of(run, name)
    if parent is None:
        return None
    src, parent_dir = run.layout.evaluation(parent), run.layout.model(parent)
    path = src / "metrics.json"
    if not path.is_file() or not parent_dir.is_dir():
        return None
    metrics = read_json(path)
    if metrics.get("settings") != flatten(settings):
        return None

    def but_model(flat: dict | None) -> dict | None:
        return None if flat is None else {k: v for k, v in flat.items() if not k.startswith("model.")}

    theirs = recorded_settings(src)
    if theirs is None or but_model(theirs) != but_model(recorded_settings(out)):
        return None
    # the hashes eval_folder keeps beside the settings (hf), so a checkpoint is not read again to compare
    ours, parents = (
        model_identity(d, recorded_extra(f).get("model")) for d, f in ((model_dir, out), (parent_dir, src))
    )
    if ours != parents:
        return None
    rows = {b: run.layout.eval_rows(parent, b) for b in metrics.get("benchmarks") or {}}
    if not all(r.is_file() for r in rows.values()):
        return None
    for b, r in rows.items():  # whole or not at all: a resumed evaluation would read a torn file as its rows
        tmp = run.layout.eval_rows(name, b).with_suffix(".tmp")
        shutil.copyfile(r, tmp)
        tmp.replace(run.layout.eval_rows(name, b))
    summary = run.layout.eval_summary(parent)
    if summary.is_file():
        kept = {b: v for b, v in read_json(summary).items() if b in (metrics.get("benchmarks") or {})}
        write_json(run.layout.eval_summary(name), kept)
    metrics = {k: v for k, v in metrics.items() if k != "settings"}
    log.info("%s is an unchanged copy of %s: its evaluation is %s's, not measured again", name, parent, parent)
    return {**metrics, "model": str(model_dir), "copy_of": parent, "wall_s": 0.0}


def evaluate_judge(run: Run, engine, few_shot: bool = False, eft_file: Path | None = None) -> dict:
    """Table 3: the first `iterate.eval_eft` items of the EFT test split (or `eft_file`) in both A/B orders; with
    `few_shot`, three EFT-train items are prepended (how M0 is asked)."""
    from psrlm.judge_eval import judge_metrics

    cfg = run.cfg.iterate
    eft = read_jsonl(Path(eft_file) if eft_file else run.eft_test_file(), JudgeExample)
    eft = eft[: cfg.eval_eft] if cfg.eval_eft else eft
    few = read_jsonl(run.eft_train_file(), JudgeExample)[:3] if few_shot else None
    return judge_metrics(eft, engine, run.prompts, run.cfg.search.judge_max_tokens, few_shot=few)


def tts_search_cfg(run: Run):
    """The search test-time scaling runs: `search.*` (w, T, top-p, the pairwise judge) with, under the default
    iterate.eval_tts_rules=inference, none of the training search's rules the paper does not state for inference:
    a round of equal scores keeps its most-sampled candidate (no rollback, no pair), and a problem ends at an
    answer or after search.max_steps steps (rounds capped at 2 x max_steps, which only rounds without a usable
    candidate can reach), not at search.max_rounds."""
    s = run.cfg.search
    cfg = dataclasses.replace(s, seed=s.seed + run.seed)
    if run.cfg.iterate.eval_tts_rules == "inference":
        cfg = dataclasses.replace(cfg, ties="accept", max_rounds=2 * s.max_steps)
    return cfg


def tts_problems(run: Run, n: int) -> tuple[list[Problem], dict[str, list[str]]]:
    """The first `n` problems (-1: all) of each TTS benchmark, and benchmark -> their ids."""
    limit = 0 if n < 0 else n
    by_bench = run.benchmarks(run.tts_benchmarks(), limit)
    return [p for ps in by_bench.values() for p in ps], {b: [p.id for p in ps] for b, ps in by_bench.items()}


def tts_settings(run: Run, n: int) -> dict:
    """What decides a model's tts.json: how many problems of which benchmarks, and the search that ran on them."""
    return {"n": n, "benchmarks": run.tts_benchmarks(), "search": generation_settings(tts_search_cfg(run))}


def measure_tts(run: Run, name: str, out: Path, n: int, max_tokens: int, engine, timed: bool = True) -> dict:
    """Tables 5/9: test-time search vs greedy on the first `n` (-1: all) problems of every TTS benchmark
    (`Run.tts_benchmarks`), per benchmark and over all, cached in <out>/tts.json (`out`: the model's eval folder)
    with the search settings it was run with; the traces resume under <out>/tts/. `engine()` opens the model's
    engine, only when the result must be computed. `timed`: bank the time as the run's "tts evaluation" stage (the
    loop; a standalone `psrlm eval` does not count towards the run's stage times)."""
    from psrlm.evaluate import tts_vs_greedy

    search_cfg = tts_search_cfg(run)
    settings = tts_settings(run, n)

    def compute() -> dict:
        start = time.time()
        problems, groups = tts_problems(run, n)
        with engine() as live:
            result = tts_vs_greedy(problems, live, run.prompts, search_cfg, out, max_tokens, settings=settings,
                                   root=run.dir, groups=groups, include_percentage=run.cfg.grading.include_percentage)  # fmt: skip
        if timed:
            run.timed("tts evaluation", start, name)
        return {"model": name, "benchmark": ", ".join(settings["benchmarks"]), **result}

    return cached(out / "tts.json", settings, compute)


def evaluate_tts(run: Run, name: str, model_dir: Path) -> dict:
    """The loop's test-time search of model `name` (iterate.eval_tts problems per TTS benchmark): measure_tts in its
    evaluation folder, serving the model only when the cached result does not match."""
    max_tokens = run.cfg.iterate.eval_max_tokens
    with eval_folder(run, name, model_dir, max_tokens) as out:
        return measure_tts(run, name, out, run.cfg.iterate.eval_tts, max_tokens, lambda: run.serving(model_dir, name))


def judge_cached(run: Run, name: str, engine, few_shot: bool = False, eft_file: Path | None = None) -> dict:
    """`psrlm eval --judge`: evaluate_judge cached in eval/<name>/judge.json with the EFT file's hash, the item count,
    the shots and the judge's token cap (the loop keeps the same numbers inside metrics.json: metrics_settings)."""
    eft = Path(eft_file) if eft_file else run.eft_test_file()
    settings = {"eft_file": sha256_file(eft), "n": run.cfg.iterate.eval_eft, "few_shot": few_shot,
                "judge_max_tokens": run.cfg.search.judge_max_tokens}  # fmt: skip
    return cached(run.layout.eval_judge(name), settings, lambda: evaluate_judge(run, engine, few_shot, eft_file))


def equations_cached(run: Run, name: str, engine, splits: list[str], n: int) -> dict:
    """Teacher-forced arithmetic (evaluate.equation_accuracy) on the first `n` problems of each arith split, in the
    loop's layout and in M0's, cached in eval/<name>/equations.json: {split: {layout: result}}."""
    from psrlm.evaluate import EQUATION_LAYOUTS, equation_accuracy

    benchmarks = run.benchmarks(splits, n)

    def compute() -> dict:
        return {b: {lay: equation_accuracy(ps, engine, run.prompts, lay) for lay in EQUATION_LAYOUTS}
                for b, ps in benchmarks.items()}  # fmt: skip

    return cached(run.layout.eval_equations(name), {"n": n, "splits": splits}, compute)


def evaluate_appendix_b(run: Run, pair_model: Path, score_model: Path, n: int = 0) -> dict:
    """Appendix B: `pair_model` (psrlm-M1) judging step pairs vs `score_model` (srlm-M1) scoring solutions, on the
    same first `n` (default `iterate.eval_appendix_b`) EFT test items; cached with both models' identities and
    the settings it was run with."""
    from psrlm.folders import FolderLock, model_identity
    from psrlm.judge_eval import appendix_b_result, judge_metrics, score_preferences

    n = n or run.cfg.iterate.eval_appendix_b
    s = run.cfg.srlm
    settings = {"pair_judge": model_identity(Path(pair_model)), "scorer": model_identity(Path(score_model)), "n": n,
                "judge_max_tokens": run.cfg.search.judge_max_tokens, "prompts": run.cfg.prompts.variant,
                "score_max_tokens": s.judge_max_tokens, "score_temperature": s.judge_temperature,
                "seed": s.seed + run.seed, "engine": engine_settings(run),
                "eft_file": sha256_file(run.eft_test_file())}  # fmt: skip

    def compute() -> dict:
        start = time.time()
        items = read_jsonl(run.eft_test_file(), JudgeExample)[:n]
        # one model served at a time: at scale each side's servers take every GPU
        with run.serving(pair_model, "pair-judge") as pairs:
            judged = judge_metrics(items, pairs, run.prompts, run.cfg.search.judge_max_tokens)
        with run.serving(score_model, "scorer") as scorer:
            scored = score_preferences(items, scorer, run.prompts, s.judge_max_tokens, s.judge_temperature,
                                       seed=s.seed + run.seed)  # fmt: skip
        result = appendix_b_result(items, judged, scored)
        run.timed("appendix B", start)
        return {"pair_judge": str(pair_model), "scorer": str(score_model), **result}

    with FolderLock(run.layout.evals, "appendix B"):
        return cached(run.layout.appendix_b, settings, compute)


def evaluation_kept(run: Run, name: str, model: Path) -> bool:
    """Whether evaluate_model would reuse <run>/eval/<name>/ for `model` as it is now (see eval_folder, cached)."""
    from psrlm.evaluate import eval_settings
    from psrlm.folders import recorded_extra, recorded_settings

    out = run.layout.evaluation(name)
    metrics = run.layout.eval_metrics(name)
    if not metrics.is_file() or not run.eft_test_file().is_file():
        return False
    few_shot, judge_few_shot = shots_of(run, name)
    if read_json(metrics).get("settings") != flatten(metrics_settings(run, True, few_shot, judge_few_shot)):
        return False
    shots = run.ift()[:3] if few_shot else None
    settings, _ = eval_settings(run.cfg.engine, model, run.cfg.prompts.variant, run.cfg.iterate.eval_max_tokens,
                                shots, recorded_extra(out), dataclasses.asdict(run.cfg.grading))  # fmt: skip
    return recorded_settings(out) == flatten(settings)
