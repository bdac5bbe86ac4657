"""The data stage and the questions each iteration searches: the run's data files and its cleaned question pool
(prepare_data), the pool cut into the schedule's blocks (schedule fixed, the paper), or each iteration's questions
drawn from the difficulty level at the parent's frontier (schedule frontier: probe_levels, frontier_questions).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from psrlm.benchmark_names import parse_benchmarks
from psrlm.configs import ConfigError
from psrlm.evaluation import eval_folder
from psrlm.folders import flatten
from psrlm.records import (
    JudgeExample,
    Problem,
    read_json,
    read_jsonl,
    read_problems,
    sha256_file,
    write_json,
    write_jsonl,
)
from psrlm.runfolder import Run

log = logging.getLogger(__name__)


def prepare_data(run: Run) -> None:
    """`<run>/data/`: the embedded domain's files (arith), or the cleaned question pool of a real run (files); and
    `questions.json`, what the pool lost to test-set overlaps, initialisation data and repeats."""
    from psrlm.initdata.build import build_arith_data
    from psrlm.initdata.pool import clean_pool, read_pool

    cfg = run.cfg
    if run.arith:
        build_arith_data(cfg)
    counts_path = run.layout.question_counts
    # the pool depends on the initialisation files of a real run (their questions are removed from it); arith's EFT
    # may not exist yet (data.eft_source=policy samples it from M0 later) and its pool is disjoint by construction
    init_files = [] if run.arith else [*run.ift_files(), run.eft_train_file()]
    settings = {"source": cfg.data.source, "questions": cfg.data.questions, "seed": cfg.data.seed,
                "benchmarks": cfg.iterate.eval_benchmarks, "files": [sha256_file(f) for f in init_files]}  # fmt: skip
    if cfg.data.split_ift or cfg.data.split_eft:  # keyed only when set: pools made before the split still match
        settings["split"] = [cfg.data.split_ift, cfg.data.split_eft]
    if not run.arith and counts_path.exists() and read_json(counts_path).get("settings") == flatten(settings):
        return  # (arith rewrites its pool on every run above, so it is always checked again)
    tests = run.benchmarks(parse_benchmarks(cfg.iterate.eval_benchmarks), limit=0)
    if run.arith:  # generated disjoint from its own splits and blocks by construction; checked against any other
        pool, read = read_problems(run.layout.fresh_questions), {}
        tests.update(run.benchmarks(["arith_test", "arith_hard"], limit=0))
        kept, counts = clean_pool(pool, tests, [], seed=None)
        if len(kept) != len(pool):
            write_jsonl(run.layout.fresh_questions, kept)
    else:
        from psrlm.initdata.pool import split_active, split_source, test_overlap

        used = [s.meta["question"] for s in run.ift()]
        used += [e.question for e in read_jsonl(run.eft_train_file(), JudgeExample)]
        for key, questions in (("data.ift_files", [s.meta["question"] for s in run.ift()]),
                               ("data.eft_train_file", [e.question for e in read_jsonl(run.eft_train_file(),
                                                                                        JudgeExample)])):  # fmt: skip
            if hits := test_overlap(questions, tests):  # training on a test question would void its benchmark
                raise ConfigError(f"{key}: {sum(hits.values())} of {len(questions)} training questions are in "
                                  f"evaluated test sets ({hits}): rebuild it with `psrlm data ift|eft` (which leave "
                                  "them out) or remove them")  # fmt: skip
        if split_active(cfg):  # the split's pool block, disjoint from IFT and EFT by construction; the init files'
            split = split_source(cfg, tests)  # questions are still removed, should they come from elsewhere
            kept, counts = clean_pool(split.pool, {}, used, seed=None)
            read = {k: split.counts[k] for k in ("read", "no_answer", "split")}
            counts.update(test_overlap=split.counts["test_overlap"], repeats=split.counts["repeats"])
        else:
            pool, read = read_pool(cfg)
            kept, counts = clean_pool(pool, tests, used, seed=cfg.data.seed)
        write_jsonl(run.layout.fresh_questions, kept)
    write_json(counts_path, {**read, **counts, "settings": flatten(settings)}, unless_same=True)
    removed = sum(counts["test_overlap"].values())
    if removed:
        log.warning("removed %d questions from the pool that are in an evaluated test set: %s", removed,
                    counts["test_overlap"])  # fmt: skip


def question_blocks(run: Run) -> list[list[Problem]]:
    fresh = read_problems(run.layout.fresh_questions)
    sizes = run.cfg.iterate.questions
    if sum(sizes) > len(fresh):
        hint = "raise arith.n_train" if run.arith else "use a larger data.questions pool"
        raise ValueError(f"iterate.questions={sizes} needs {sum(sizes)} fresh questions but the pool has "
                         f"{len(fresh)} (see {run.layout.question_counts}); {hint} or lower the counts")  # fmt: skip
    blocks, start = [], 0
    for n in sizes:
        blocks.append(fresh[start : start + n])
        start += n
    return blocks


def iteration_questions(run: Run, label: str, it: int, parent: Path) -> tuple[list[Problem], dict]:
    """The questions M_it of `label` searches, and how they were chosen (recorded in its manifest): the next block of
    the fresh pool (schedule fixed, the paper), or the frontier level's next unused questions (schedule frontier)."""
    if run.cfg.iterate.schedule == "fixed":
        return question_blocks(run)[it - 2], {"kind": "fixed"}
    return frontier_questions(run, label, it, parent)


def ladder(run: Run) -> list[tuple[int, int, int]]:
    """[min_ops, max_ops, max_number] per level: 0 = in-distribution (the fresh pool), then arith.levels."""
    a = run.cfg.arith
    return [(a.min_ops, a.max_ops, a.max_number), *(tuple(v) for v in a.levels)]


def level_pool(run: Run, level: int) -> list[Problem]:
    return read_problems(run.layout.level_pool(level))


def probe_levels(run: Run, model: Path) -> dict[int, float]:
    """Greedy pass rate of `model` (a model of this run, evaluated under its folder name) on every level's probe,
    cached with its evaluation (<run>/eval/<name>/arith_level<k>_probe.jsonl): a probe is never a test split."""
    from psrlm.evaluate import evaluate_benchmarks

    names = [f"arith_level{k}_probe" for k in range(len(ladder(run)))]
    cfg = run.cfg
    with eval_folder(run, model.name, model, cfg.iterate.eval_max_tokens) as out:
        done = {b: run.layout.eval_rows(model.name, b).exists() for b in names}
        problems = run.benchmarks(names, 0)
        start = time.time()
        if all(done.values()):  # read back without serving the model
            from psrlm.records import iter_json_rows

            rows = {b: [r for _, r in iter_json_rows(run.layout.eval_rows(model.name, b))] for b in names}
            if all(len(rows[b]) >= len(problems[b]) for b in names):
                return {k: sum(r["correct"] for r in rows[b]) / max(1, len(rows[b])) for k, b in enumerate(names)}
        with run.serving(model, model.name) as engine:
            summaries = evaluate_benchmarks(problems, engine, run.prompts, out, cfg.iterate.eval_max_tokens,
                                            desc=f"probe {model.name}",
                                            include_percentage=cfg.grading.include_percentage)  # fmt: skip
        run.timed("frontier probe", start, model.name)
    return {k: summaries[b]["accuracy"] for k, b in enumerate(names)}


def frontier_questions(run: Run, label: str, it: int, parent: Path) -> tuple[list[Problem], dict]:
    """schedule=frontier: probe the parent on every level, take the easiest level whose pass rate is at most the
    band's top (what the model does not yet master), and draw that level's next questions not yet searched by
    this chain's earlier iterations. Stops with one line when no level falls in the band or the level's pool is
    used up."""
    cfg = run.cfg.iterate
    low, high = cfg.frontier_band
    rates = probe_levels(run, parent)
    shown = ", ".join(f"level {k} {ladder(run)[k]}: {r:.2f}" for k, r in rates.items())
    level = next((k for k, r in rates.items() if r <= high), None)
    if level is None or rates[level] < low:
        why = "masters every level" if level is None else f"solves level {level} at {rates[level]:.2f}, below it"
        raise ConfigError(f"iterate.frontier_band={cfg.frontier_band}: {parent.name} {why} (pass rates {shown}); "
                          "widen the band or change arith.levels")  # fmt: skip
    used = 0  # questions of this level the chain's earlier iterations searched
    for k in range(2, it):
        m = run.load_manifest(f"{label}-M{k}")
        sched = ((m.metrics.get("questions") or {}).get("schedule") or {}) if m else {}
        if sched.get("level") == level:
            used += sched["count"]
    pool = level_pool(run, level)
    n = cfg.questions[it - 2]
    if used + n > len(pool):
        raise ConfigError(f"iterate.questions: {label}-M{it} needs {n} questions of level {level} {ladder(run)[level]}"
                          f" but its pool has {len(pool) - used} left of {len(pool)} (pass rates {shown}); raise "
                          "arith.level_pool (or arith.n_train for level 0)")  # fmt: skip
    schedule = {"kind": "frontier", "level": level, "difficulty": list(ladder(run)[level]), "band": [low, high],
                "pass_rates": {str(k): round(r, 4) for k, r in rates.items()}, "offset": used, "count": n,
                "probe": parent.name}  # fmt: skip
    log.info("%s-M%d: frontier level %d %s (pass rates %s)", label, it, level, ladder(run)[level], shown)
    return pool[used : used + n], schedule
