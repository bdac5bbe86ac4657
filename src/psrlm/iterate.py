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
metrics, wall time, and the settings that determine it (data hashes, the parent's settings fingerprint, the
training / search configs and seeds). A rerun reuses a model only when those settings match; otherwise it stops
and names the keys that differ, or with `--fresh` moves the stale models, their pairs and evaluations to
`<run>/replaced/<time>/` and rebuilds them (and, through the parent fingerprint, everything after them).
Evaluations are caches: results made from another model or other settings are moved aside and recomputed.
The oracle is read only to *measure* (pair precision, evaluation), never to choose.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psrlm.benchmark_names import parse_benchmarks
from psrlm.configs import Config, ConfigError, config_to_dict
from psrlm.folders import FolderError, claim_settings, fingerprint, flatten, move_aside, settings_diff
from psrlm.m0 import check_prebuilt_m0, ensure_m0, m0_key, prebuilt_m0, prebuilt_m0_mismatch
from psrlm.records import (
    JudgeExample,
    Manifest,
    PreferencePair,
    Problem,
    SearchTrace,
    StepSolution,
    read_json,
    read_jsonl,
    read_problems,
    sha256_file,
    write_json,
    write_jsonl,
)
from psrlm.runfolder import Run, cached, is_model
from psrlm.summary_table import format_table

log = logging.getLogger(__name__)


class EngineFailure(RuntimeError):
    """Too many problems of a stage failed because their requests failed (a server in trouble)."""


def train_settings(tc) -> dict:
    """What a training stage's config contributes to a model's identity: precision and logging are how a machine
    ran it, not what it built (a run moved between a bf16 CPU and an fp32 one still resumes)."""
    # a setting added later counts only when it leaves its default, so runs made before it still resume
    return {k: v for k, v in dataclasses.asdict(tc).items()
            if k not in ("bf16", "logging_steps", "save_steps", "gradient_checkpointing", "padding_free")
            and not (k == "nll_weight" and v == 0) and not (k == "sampler" and v == "random")}  # fmt: skip


def generation_settings(cfg) -> dict:
    """What a search / SRLM config contributes: everything but how many problems share a batch (max_active),
    which cannot change a result (samples are seeded per problem). The oracle judge's knobs do nothing for the
    model's own judge: a self-judged search records them at their defaults, so a sweep that changes them still
    resumes its self-judged arm."""
    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "max_active"}
    for key, default in (("pairs_per_round", "best_worst"), ("ties", "rollback")):
        if out.get(key) == default:  # added later: at its default it keys nothing
            del out[key]
    if out.get("judge") == "self" and "judge_flip" in out:  # a search config
        out.update(judge_flip=0.0, oracle_ties="tie")
    elif out.get("judge") == "self":  # srlm's judge, added later: at its default it keys nothing
        del out["judge"]
    return out


def engine_settings(run: Run) -> dict:
    from psrlm import hardware

    e = run.cfg.engine
    if e.kind != "hf":
        return {"kind": e.kind, "model_name": e.model_name}
    return {"kind": "hf", "dtype": hardware.engine_dtype(e.dtype, hardware.pick_device(e.device))}


def reuse_model(run: Run, name: str, settings: dict) -> Path | None:
    """The finished model `name` if it was made with exactly `settings`; None when it must be (re)built. Made with
    other settings: a FolderError naming the keys, or with `run.fresh` its outputs are moved aside first."""
    out = run.layout.model(name)
    manifest = run.load_manifest(name) if is_model(out) else None
    if manifest is None:
        return None
    flat = flatten(settings)
    if manifest.settings == flat:
        return out
    why = (f"other settings ({settings_diff(manifest.settings, flat)})" if manifest.settings
           else "no record of its settings (an older psrlm?)")  # fmt: skip
    if not run.fresh:
        raise FolderError(f"{out} was made with {why}: rerun with the same settings to resume, or pass --fresh to "
                          "rebuild it and what follows (old outputs are moved to a replaced/ folder)")  # fmt: skip
    # the model, its manifest and its evaluation; the search folder that fed it answers to its own settings
    # (claim_settings in run_iteration): a change of dpo.* alone keeps the pairs, the costliest stage
    for path in (out, run.manifest_path(name), run.layout.evaluation(name)):
        move_aside(path, run.dir)
    run.forget_times(name)
    log.warning("%s was made with %s: rebuilding it (old outputs in %s/replaced/)", name, why, run.dir)
    return None


def model_status(run: Run, name: str, settings: dict) -> tuple[str, str]:
    """What `reuse_model` would do with model `name` under `settings`, without doing it: ("kept" | "built" |
    "rebuilt", the keys that differ)."""
    manifest = run.load_manifest(name) if is_model(run.layout.model(name)) else None
    if manifest is None:
        return "built", ""
    flat = flatten(settings)
    if manifest.settings == flat:
        return "kept", ""
    return "rebuilt", settings_diff(manifest.settings, flat) if manifest.settings else "no record of its settings"


def check_paths(cfg: Config, rebuild_m0: bool = False) -> None:
    """Paths given explicitly must exist, and data files must read as their records, before any model loads: a
    typo must not start hours of work on a default, nor fail an hour in. A prebuilt M0 built with other settings
    stops here too (unless `rebuild_m0`)."""
    from psrlm.records import JudgeExample, ScoreExample, validate_jsonl

    if cfg.engine.kind == "openai" and cfg.engine.model_name:
        # every checkpoint of the loop generates in turn; a fixed served name would search and evaluate with one
        # model throughout, without a word
        raise ConfigError(f"engine.model_name={cfg.engine.model_name!r} with engine.kind=openai: iterate generates "
                          "with each new checkpoint, and a running server serves one model. Use engine.kind vllm, "
                          "sglang or transformers (psrlm serves each checkpoint), or leave model_name empty for a "
                          "server that loads the model named by its path (transformers serve)")  # fmt: skip
    if cfg.model.path:
        from psrlm.checkpoints import resolve_model

        resolve_model(cfg.model.path, key="model.path")
    if cfg.iterate.m0_path and not cfg.model.path:
        check_prebuilt_m0(cfg, rebuild_m0)
    d = cfg.data
    if d.source != "files":
        return
    from psrlm.initdata.pool import pool_path
    from psrlm.tasks.benchmarks import benchmark_path

    files = [(f"data.ift_files[{i}]", f, StepSolution) for i, f in enumerate(d.ift_files)]
    files += [("data.eft_train_file", d.eft_train_file, JudgeExample), ("data.eft_test_file", d.eft_test_file,
                                                                           JudgeExample)]  # fmt: skip
    if "srlm" in cfg.iterate.methods:
        files.append(("data.srlm_eft_file", d.srlm_eft_file, ScoreExample))
    for key, path, cls in files:
        if not Path(path).is_file():
            raise ConfigError(f"{key}: {path} does not exist")
        if validate_jsonl(Path(path), cls) == 0:
            raise ConfigError(f"{key}: {path} is empty")
    for sol in (s for f in d.ift_files for s in read_jsonl(Path(f), StepSolution)):
        if not sol.meta.get("question"):
            raise ConfigError(f"data.ift_files: solution {sol.problem_id!r} has no meta.question (what `psrlm data "
                              "ift` writes has it)")  # fmt: skip
    if not pool_path(cfg).is_file():
        raise ConfigError(f"data.questions: {pool_path(cfg)} does not exist")
    for name in parse_benchmarks(cfg.iterate.eval_benchmarks):
        path = benchmark_path(name, cfg.paths.resolved_data_dir())
        if not path.is_file():
            raise ConfigError(f"iterate.eval_benchmarks: {name} needs {path} (paths.data_dir / $PSRLM_DATA)")


# ------------------------------------------------------------------------------------------------ M1


def srlm_eft_file(run: Run) -> Path:
    from psrlm.initdata.build import arith_splits, pool_blocks
    from psrlm.initdata.eft import build_srlm_eft

    path = run.srlm_eft_path()
    if run.arith and not path.exists():
        blocks = pool_blocks(run.cfg, arith_splits(run.cfg)["train"])
        n = run.cfg.iterate.srlm_eft or run.cfg.data.eft_train
        write_jsonl(path, build_srlm_eft(blocks["eft_train"], n, run.cfg.arith.seed))
    return path


def ensure_policy_eft(run: Run, m0: Path) -> None:
    """data.eft_source=policy (arith): EFT train/test items from the IFT policy's own candidate steps, labelled by the
    oracle (initdata/eft.py: build_policy_eft); built once per settings, counts in data/eft_policy.json."""
    from psrlm.initdata.build import arith_splits, pool_blocks
    from psrlm.initdata.eft import build_policy_eft
    from psrlm.initdata.eft_pipeline import ensure_policy

    cfg = run.cfg
    if not run.arith or cfg.data.eft_source != "policy":
        return
    s = cfg.search
    stamp = run.layout.eft_policy_stamp
    settings = {"m0": m0_identity(m0), "sft": train_settings(run.seeded(cfg.sft)), "width": cfg.data.eft_policy_width,
                "temperature": s.temperature, "top_p": s.top_p, "max_step_tokens": s.max_step_tokens,
                "n": [cfg.data.eft_train, cfg.data.eft_test], "seed": cfg.arith.seed + run.seed,
                "ift": sha256_file(run.layout.ift), "prompts": cfg.prompts.variant}  # fmt: skip
    files = (run.eft_train_file(), run.eft_test_file())
    if stamp.exists() and all(f.exists() for f in files) and read_json(stamp).get("settings") == flatten(settings):
        return
    start = time.time()
    blocks = pool_blocks(cfg, arith_splits(cfg)["train"])
    counts = {}
    with run.serving(ensure_policy(run, m0), "policy") as engine:
        for name, block, n, path in (("train", blocks["eft_train"], cfg.data.eft_train, files[0]),
                                     ("test", blocks["eft_test"], cfg.data.eft_test, files[1])):  # fmt: skip
            items, counts[name] = build_policy_eft(block, engine, run.prompts, n, settings["seed"] + len(name),
                                                   cfg.data.eft_policy_width, s.temperature, s.top_p,
                                                   s.max_step_tokens)  # fmt: skip
            if len(items) < n:
                log.warning("policy EFT %s: only %d of %d items (the policy's candidates rarely mix right and wrong)",
                            name, len(items), n)  # fmt: skip
            write_jsonl(path, items)
    write_json(stamp, {"counts": counts, "settings": flatten(settings)})
    run.timed("policy EFT", start)


def m0_identity(m0: Path) -> dict:
    """How a run names its M0: the build key of a psrlm-built one, else the checkpoint's path and file stats."""
    from psrlm.folders import model_files

    info = read_json(m0 / "psrlm_build.json") if is_model(m0) else {}
    if info.get("m0_key"):
        return {"m0_key": info["m0_key"]}
    return {"path": str(m0), "files": model_files(m0)}


def m1_settings(run: Run, method: str, m0: Path) -> dict:
    eft_file = run.eft_train_file() if method == "psrlm" else srlm_eft_file(run)
    return m1_settings_for(run, method, m0_identity(m0), eft_file)


def m1_settings_for(run: Run, method: str, m0: dict, eft_file: Path) -> dict:
    """M1's settings from M0's identity (m0_identity) and the EFT (or scoring) file it is trained on."""
    # verdict_first keys M1 only when set, so the M1s of runs made before the option still count as up to date
    prompts = {
        "variant": run.cfg.prompts.variant,
        **({"verdict_first": True} if run.cfg.prompts.verdict_first else {}),
    }
    return {"method": method, "m0": m0, "prompts": prompts,
            "data": {"ift": [sha256_file(f) for f in run.ift_files()], "eft": sha256_file(eft_file)},
            "sft": train_settings(run.seeded(run.cfg.sft))}  # fmt: skip


def ensure_m1(run: Run, method: str, m0: Path) -> Path:
    """M1 = SFT of M0 on IFT + EFT (PSRLM: step-pair judging; SRLM: solution scoring)."""
    name = f"{method}-M1"
    out = run.layout.model(name)
    settings = m1_settings(run, method, m0)
    if reuse_model(run, name, settings):
        return out
    start = time.time()
    data = {"ift": run.ift_files(), "eft" if method == "psrlm" else "score": [
        run.eft_train_file() if method == "psrlm" else srlm_eft_file(run)]}  # fmt: skip
    manifest = run.train("sft", m0, out, data, iteration=1, method=method, settings=settings)
    run.write_manifest(name, manifest)
    run.timed(f"{method} M1 SFT", start, name)
    return out


# ----------------------------------------------------------------------------------------- iterations


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


def _search_cfg(run: Run, method: str, it: int):
    cfg = run.cfg
    if method == "psrlm":
        return dataclasses.replace(cfg.search, seed=cfg.search.seed + 1000 * it + run.seed)
    return dataclasses.replace(cfg.srlm, seed=cfg.srlm.seed + 1000 * it + run.seed)


def iteration_settings(
    run: Run,
    method: str,
    it: int,
    parent: str,
    questions: list[Problem],
    training: str = "dpo",
    parent_settings: dict | None = None,
) -> tuple[dict, dict]:
    """(search-folder settings, model settings) of M_it: the pairs depend on the parent, the questions, the search
    config, the prompts and the engine's precision; the model adds its training's config (DPO's, or RFT's). The
    parent is named by the fingerprint of its settings (its manifest's, or `parent_settings` when planning)."""
    if parent_settings is None:
        parent_settings = run.load_manifest(parent).settings
    section = "search" if method == "psrlm" else "srlm"  # keys read as the config's own: search.width, dpo.beta
    search = {"method": method, "parent": fingerprint(flatten(parent_settings)),
              "questions": fingerprint({"ids": [q.id for q in questions], "text": [q.question for q in questions]}),
              "prompts": {"variant": run.cfg.prompts.variant}, "engine": engine_settings(run),
              section: generation_settings(_search_cfg(run, method, it))}  # fmt: skip
    if training == "rft":
        return search, {**search, "training": "rft", "rft": train_settings(run.seeded(run.cfg.rft))}
    return search, {**search, "dpo": train_settings(run.seeded(run.cfg.dpo))}


def right_solutions(traces: list[SearchTrace], questions: list[Problem]) -> list[StepSolution]:
    """The complete solutions a search ended with whose final answer is right (graded against the gold answer):
    the training data of rejection-sampling fine-tuning (science control; the loop itself never grades)."""
    from psrlm.grading import is_equiv

    by_id = {q.id: q for q in questions}
    out = []
    for t in traces:
        q = by_id.get(t.problem_id)
        if q is not None and t.finished and t.final_answer is not None and is_equiv(q.answer, t.final_answer):
            out.append(StepSolution(problem_id=t.problem_id, steps=list(t.steps), final_answer=t.final_answer,
                                    meta={"question": q.question, "source": "rft"}))  # fmt: skip
    return out


def run_iteration(
    run: Run,
    method: str,
    it: int,
    parent: Path,
    questions: list[Problem],
    label: str | None = None,
    schedule: dict | None = None,
    training: str = "dpo",
    search_label: str | None = None,
) -> Path:
    """M_it of `method` from its parent: search (or SRLM sampling) on `questions`, then DPO. `label` names the
    model and its folders instead of the method (the judge sweep keeps several M2 of one M1 side by side). A
    problem whose requests failed is left for a rerun; more than `engine.max_failed_share` of them stops here.
    `schedule` (how the questions were chosen) goes into the manifest. `training="rft"` (science control, arith):
    instead of DPO on the pairs, SFT of the parent (settings `rft.*`) on the search's complete solutions whose
    final answer is right. `search_label` names the search's folder instead of `label`: a chain whose search is
    another's exactly (same parent, questions and settings, checked like any resume) reads it instead of repeating it."""
    label = label or method
    name = f"{label}-M{it}"
    out = run.layout.model(name)
    search_settings, settings = iteration_settings(run, method, it, parent.name, questions, training)
    if reuse_model(run, name, settings):
        return out
    cfg = run.cfg
    search_dir = run.layout.search(search_label or label, it)
    claim_settings(search_dir, search_settings, fresh=run.fresh, root=run.dir)
    start = time.time()
    with run.serving(parent, name) as engine:
        if method == "psrlm":
            from psrlm.search import run_search

            result = run_search(questions, engine, run.prompts, _search_cfg(run, method, it), out_dir=search_dir,
                                iteration=it)  # fmt: skip
        else:
            from psrlm.srlm import run_srlm

            result = run_srlm(questions, engine, run.prompts, _search_cfg(run, method, it), out_dir=search_dir,
                              iteration=it)  # fmt: skip
    run.timed(f"{method} search", start, name)
    if result.failed:
        share = len(result.failed) / max(1, len(questions))
        if share > cfg.engine.max_failed_share:
            raise EngineFailure(f"{name}: {len(result.failed)} of {len(questions)} problems failed (requests failed "
                                f"after retries; engine.max_failed_share={cfg.engine.max_failed_share}): rerun to "
                                f"retry them; server logs in {run.layout.servers}")  # fmt: skip
        log.warning("%s: %d problems failed and are left out (rerun the search stage to retry them)", name,
                    len(result.failed))  # fmt: skip
    pairs = result.pairs
    summary = result.summary()
    precision = pair_precision(pairs, {p.id: p for p in questions}) if method == "psrlm" and run.arith else {}
    start_train = time.time()
    metrics = {"search": summary, "pair_precision": precision,
               "questions": {"block": len(questions), "pool": read_json(run.layout.question_counts),
                             "schedule": schedule or {"kind": "fixed"}}}  # fmt: skip
    if method == "psrlm":  # an oracle judge is a science run: said in every manifest it makes
        metrics["judge"] = {"kind": cfg.search.judge, "flip": cfg.search.judge_flip}
    else:
        metrics["judge"] = {"kind": cfg.srlm.judge}
    rft = right_solutions(result.traces, questions) if training == "rft" else []
    if training == "rft":
        metrics["rft"] = {"solutions": len(rft), "problems": len(questions)}
        write_jsonl(search_dir / "rft_solutions.jsonl", rft)
    if (
        training == "rft" and rft
    ):  # rft.* settings in the sft stage's place: the same code path, in-process or launched
        rft_run = Run(dataclasses.replace(cfg, sft=cfg.rft), fresh=run.fresh)
        manifest = rft_run.train("sft", parent, out, {"ift": [search_dir / "rft_solutions.jsonl"]}, iteration=it,
                                 method=f"{method}-rft", settings=settings, metrics=metrics)  # fmt: skip
    elif training == "dpo" and pairs:
        manifest = run.train("dpo", parent, out, {"pairs": [search_dir / "pairs.jsonl"]}, ref_dir=parent,
                             iteration=it, method=method, settings=settings, metrics=metrics)  # fmt: skip
    else:  # no preference (or no right solution) at all: the model carries over unchanged, and the manifest says so
        log.warning("%s: search produced no %s; %s is a copy of its parent", name,
                    "right solutions" if training == "rft" else "pairs", name)  # fmt: skip
        import shutil

        tmp = out.with_name(out.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(parent, tmp)
        tmp.rename(out)
        manifest = Manifest(iteration=it, method=method, parent_model=str(parent), model_path=str(out),
                            config=config_to_dict(cfg), settings=flatten(settings),
                            metrics={**metrics, "train": {"stage": "sft" if training == "rft" else "dpo",
                                                          "pairs": 0, "skipped": True}})  # fmt: skip
        from psrlm.train import MANIFEST_NAME

        write_json(out / MANIFEST_NAME, dataclasses.asdict(manifest))  # not the parent's, copied with the weights
    run.timed(f"{method} {'RFT' if training == 'rft' else 'DPO'}", start_train, name)
    manifest.seeds["search"] = _search_cfg(run, method, it).seed
    manifest.wall_time_s = time.time() - start
    run.write_manifest(name, manifest)
    _track_iteration(run, name, manifest)
    return out


def _track_iteration(run: Run, name: str, manifest: Manifest) -> None:
    from psrlm.tracking import Tracker, iteration_metrics

    seconds = {k.split("/", 1)[0].rsplit(" ", 1)[-1].lower(): v for k, v in run._stage_times().items()
               if k.endswith(f"/{name}")}  # fmt: skip
    Tracker(run.cfg).log(*iteration_metrics(name, manifest.metrics, seconds))


# ------------------------------------------------------------------------------------------ evaluation


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


def evaluate_judge(run: Run, engine, few_shot: bool = False, eft_file: Path | None = None) -> dict:
    """Table 3: the first `iterate.eval_eft` items of the EFT test split (or `eft_file`) in both A/B orders; with
    `few_shot`, three EFT-train items are prepended (how M0 is asked)."""
    from psrlm.evaluate import judge_metrics

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


def evaluate_tts(run: Run, name: str, model_dir: Path) -> dict:
    """Tables 5/9: test-time search vs greedy on the first `iterate.eval_tts` (-1: all) problems of every TTS
    benchmark (`Run.tts_benchmarks`), per benchmark and over all; cached with the search settings it was run with."""
    from psrlm.evaluate import tts_vs_greedy

    n = run.cfg.iterate.eval_tts
    search_cfg = tts_search_cfg(run)
    benches = run.tts_benchmarks()
    settings = {"n": n, "benchmarks": benches, "search": generation_settings(search_cfg)}

    def compute() -> dict:
        start = time.time()
        problems, groups = tts_problems(run, n)
        with run.serving(model_dir, name) as engine:
            result = tts_vs_greedy(problems, engine, run.prompts, search_cfg, out, run.cfg.iterate.eval_max_tokens,
                                   settings=settings, root=run.dir, groups=groups,
                                   include_percentage=run.cfg.grading.include_percentage)  # fmt: skip
        run.timed("tts evaluation", start, name)
        return {"model": name, "benchmark": ", ".join(benches), **result}

    with eval_folder(run, name, model_dir, run.cfg.iterate.eval_max_tokens) as out:
        return cached(out / "tts.json", settings, compute)


def evaluate_appendix_b(run: Run, pair_model: Path, score_model: Path, n: int = 0) -> dict:
    """Appendix B: `pair_model` (psrlm-M1) judging step pairs vs `score_model` (srlm-M1) scoring solutions, on the
    same first `n` (default `iterate.eval_appendix_b`) EFT test items; cached with both models' identities and
    the settings it was run with."""
    from psrlm.evaluate import appendix_b_result, judge_metrics, score_preferences
    from psrlm.folders import FolderLock, model_identity

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


# ----------------------------------------------------------------------------------------------- main


def run_all(cfg: Config, progress: bool = True, fresh: bool = False, rebuild_m0: bool = False) -> dict:
    """Every stage of the configured run, resumable; returns {model name: metrics} and prints the table. `fresh`:
    rebuild what was made with other settings instead of stopping; `rebuild_m0`: see Run."""
    from psrlm.folders import FolderLock
    from psrlm.tracking import check_installed

    check_paths(cfg, rebuild_m0)
    check_installed(cfg)
    run = Run(cfg, fresh=fresh, rebuild_m0=rebuild_m0)
    start = time.time()
    with FolderLock(run.dir, "iterate"):
        run.count_wall()
        t, before = time.time(), _files_state(run.data)
        prepare_data(run)
        if _files_state(run.data) != before:  # checking data that is already there is not building it
            run.timed("data", t)
        m0 = ensure_m0(run)
        ensure_policy_eft(run, m0)
        models: dict[str, Path] = {"M0": m0}
        if cfg.iterate.schedule == "fixed":
            question_blocks(run)  # a pool too small for the schedule stops here, before any model is built
        for method in cfg.iterate.methods:
            parent = ensure_m1(run, method, m0)
            models[f"{method}-M1"] = parent
            for it in range(2, len(cfg.iterate.questions) + 2):
                questions, schedule = iteration_questions(run, method, it, parent)
                parent = run_iteration(run, method, it, parent, questions, schedule=schedule)
                models[f"{method}-M{it}"] = parent
        results = {}
        for name, path in models.items():
            few_shot, judge_few_shot = shots_of(run, name)
            results[name] = evaluate_model(run, name, path, few_shot, judge_few_shot=judge_few_shot)
        for name, res in results.items():
            m = run.load_manifest(name)
            if m is not None:
                res["manifest"] = {
                    "pair_precision": m.metrics.get("pair_precision"),
                    "search": m.metrics.get("search"),
                    "judge": m.metrics.get("judge"),
                }
        summary = {"models": results}
        if cfg.iterate.eval_tts and "psrlm" in cfg.iterate.methods:  # Table 5: PSRLM's first and last model
            tts_models = dict.fromkeys(["psrlm-M1", f"psrlm-M{len(cfg.iterate.questions) + 1}"])
            summary["tts"] = {n: evaluate_tts(run, n, models[n]) for n in tts_models}
        if cfg.iterate.eval_appendix_b and {"psrlm-M1", "srlm-M1"} <= set(models):
            summary["appendix_b"] = evaluate_appendix_b(run, models["psrlm-M1"], models["srlm-M1"])
        # stage and wall times over every process that worked on the run (a rerun that finds all done keeps them)
        run.timed(None)
        summary.update(timings_s=run.timings, wall_s=run.wall_s, stage_total_s=sum(run.timings.values()),
                       this_process_wall_s=time.time() - start)  # fmt: skip
        write_json(run.layout.summary, summary)
    print(format_table(results))
    return summary


def _files_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in folder.glob("*") if f.is_file()}


def plan_stages(run: Run) -> list[str]:
    """What the current settings would keep, build and rebuild in the run folder, stage by stage, read from what the
    folder records (manifests, settings stamps) and changing nothing: the same fingerprints `psrlm iterate`
    compares, a parent's planned settings feeding its children's. A rebuild stops without `--fresh`."""
    from psrlm.folders import recorded_settings

    cfg = run.cfg
    needs = "" if run.fresh else " (stops without --fresh)"
    lines = [f"what these settings would do in {run.dir} (read from what it records; nothing is changed):"]

    def say(stage: str, what: str) -> None:
        lines.append(f"  {stage:<12} {what}")

    if cfg.model.path:
        m0, m0_id = Path(cfg.model.path), None
        say("M0", f"the checkpoint model.path={cfg.model.path}")
    else:
        key = m0_key(cfg)
        m0, m0_id = run.layout.m0(key), {"m0_key": key}
        diff = prebuilt_m0_mismatch(cfg) if cfg.iterate.m0_path else None
        if cfg.iterate.m0_path and diff is None:
            m0 = prebuilt_m0(cfg)
            say("M0", f"kept: the prebuilt {m0}, built with these settings")
        elif cfg.iterate.m0_path and not run.rebuild_m0:
            say("M0", f"STOPS: iterate.m0_path was built with other settings ({diff}); --rebuild-m0 pre-trains one")
            return lines
        else:
            say("M0", f"kept: {m0}" if is_model(m0) else f"pre-trained into {m0}")
    m0_ident = m0_identity(m0) if m0.exists() or m0_id is None else m0_id  # not pre-trained yet: by its key
    evaluated: dict[str, tuple[str, Path]] = {"M0": ("kept" if m0.exists() else "built", m0)}
    for method in cfg.iterate.methods:
        name = f"{method}-M1"
        if method == "psrlm":
            eft = run.eft_train_file()
        else:  # srlm_eft_file(run) would write arith's scoring data: only read here
            eft = run.srlm_eft_path()
        if not all(f.is_file() for f in [*run.ift_files(), eft]):
            say(name, "built (its data is not written yet)")
            evaluated[name], parent = ("built", run.layout.model(name)), None
        else:
            settings = m1_settings_for(run, method, m0_ident, eft)
            status, diff = model_status(run, name, settings)
            say(name, status + (f": {diff}{needs}" if status == "rebuilt" else ""))
            evaluated[name], parent = (status, run.layout.model(name)), settings
        for it in range(2, len(cfg.iterate.questions) + 2):
            name = f"{method}-M{it}"
            if cfg.iterate.schedule != "fixed":
                say(name, "questions chosen by probing its parent first: kept or rebuilt is known then")
                evaluated[name], parent = ("unknown", run.layout.model(name)), None
                continue
            blocks = question_blocks(run) if run.layout.fresh_questions.is_file() else None
            if parent is None or blocks is None:
                say(name, "built (what it depends on is not built yet)")
                evaluated[name], parent = ("built", run.layout.model(name)), None
                continue
            search, settings = iteration_settings(run, method, it, "", blocks[it - 2], parent_settings=parent)
            search_dir = run.layout.search(method, it)
            recorded = recorded_settings(search_dir)
            done = _lines_in(run.layout.traces(method, it))
            if recorded == flatten(search):
                searched = f"search kept ({done} of {len(blocks[it - 2])} problems done)"
            elif recorded is None or not done:
                searched = "search run"
            else:
                searched = f"search rerun: {_why(recorded, search, f'{method}-M{it - 1}')}{needs}"
            status, _ = model_status(run, name, settings)
            manifest = run.load_manifest(name) if status == "rebuilt" else None
            why = _why(manifest.settings, settings, f"{method}-M{it - 1}") if manifest else ""
            trained = {"kept": "DPO kept", "built": "DPO run"}.get(status, f"DPO rerun: {why}{needs}")
            say(name, f"{searched}; {trained}")
            evaluated[name], parent = (status, run.layout.model(name)), settings
    cached = [n for n, (st, model) in evaluated.items() if st == "kept" and _evaluation_kept(run, n, model)]
    afresh = [n for n in evaluated if n not in cached]
    say("evaluation", "; ".join(filter(None, [f"kept for {', '.join(cached)}" if cached else "",
                                              f"afresh for {', '.join(afresh)}" if afresh else ""])))  # fmt: skip
    return lines


def _evaluation_kept(run: Run, name: str, model: Path) -> bool:
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


def _why(old: dict, new: dict, parent: str) -> str:
    """The keys that differ, with a parent's changed fingerprint said in words."""
    old, new = flatten(old), flatten(new)
    if old.get("parent") == new.get("parent"):
        return settings_diff(old, new)
    rest = settings_diff(
        {k: v for k, v in old.items() if k != "parent"}, {k: v for k, v in new.items() if k != "parent"}
    )
    return f"its parent {parent} is rebuilt" + (f"; {rest}" if rest else "")


def _lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def dry_run(cfg: Config, fresh: bool = False, rebuild_m0: bool = False) -> list[str]:
    """What `psrlm iterate` would run, in order, without running anything: the servers each stage starts, the
    training jobs (`accelerate launch` commands, or in-process stages), the searches and the evaluations; and,
    where the run folder exists, which stages its current settings would keep and which they would rebuild."""
    import shlex

    from psrlm.engines.servers import MANAGED_KINDS, plan_replicas
    from psrlm.launch import train_command

    run = Run(cfg, fresh=fresh, rebuild_m0=rebuild_m0)
    ec = cfg.engine
    lines: list[str] = plan_stages(run) + [""] if (run.manifests.is_dir() or run.data.is_dir()) else []

    def serve(model: Path, what: str) -> None:
        if ec.kind in MANAGED_KINDS:
            for i, r in enumerate(plan_replicas(ec, model, run.layout.servers, probe_ports=False)):
                env = "".join(f"{k}={v} " for k, v in r.env.items())
                lines.append(f"  serve {model.name} [{i}]: {env}{shlex.join(r.cmd)}")
        lines.append(f"  {what} with {ec.kind} engine on {model}")
        if ec.kind in MANAGED_KINDS:
            lines.append(f"  stop the {ec.servers} server(s) of {model.name}")

    def train(stage: str, model: Path, out: Path, data: dict, ref: Path | None = None, it: int = 0) -> None:
        if cfg.launch.accelerate_config:
            recipe = out.with_name(out.name + ".launch.yaml")
            cmd = train_command(cfg, recipe, stage, model, out, data, ref=ref, iteration=it, seed_offset=run.seed)
            lines.append(f"  train: {shlex.join(cmd)}")
        else:
            lines.append(f"  train {stage} in-process: {model} -> {out}")

    from psrlm.initdata.pool import data_lines

    m0 = Path(cfg.model.path) if cfg.model.path else run.layout.model("M0 (prebuilt or pre-trained)")
    lines.append(f"data: {'the arith domain' if run.arith else 'files'} -> {run.data}; M0 = {m0}")
    lines += data_lines(cfg)  # a real run: the source's blocks and sizes; one line and a stop when they cannot fill
    models = {"M0": m0}
    for method in cfg.iterate.methods:
        m1 = run.layout.model(f"{method}-M1")
        lines.append(f"{method}-M1:")
        eft = run.eft_train_file() if method == "psrlm" else run.srlm_eft_path()
        train("sft", m0, m1, {"ift": run.ift_files(), "eft" if method == "psrlm" else "score": [eft]}, it=1)
        parent, models[f"{method}-M1"] = m1, m1
        for it, n in enumerate(cfg.iterate.questions, start=2):
            out = run.layout.model(f"{method}-M{it}")
            pairs = run.layout.pairs(method, it)
            lines.append(f"{method}-M{it}:")
            source = "questions"
            if cfg.iterate.schedule == "frontier":
                levels = len(cfg.arith.levels) + 1
                serve(parent, f"probe {parent.name} on the {levels} level probes (greedy, "
                              f"{cfg.arith.level_probe} problems each); frontier band {cfg.iterate.frontier_band}")  # fmt: skip
                source = "questions of the frontier level"
            serve(
                parent,
                f"{'step search' if method == 'psrlm' else 'SRLM sampling + scoring'} of {n} {source} -> {pairs}",
            )
            train("dpo", parent, out, {"pairs": [pairs]}, ref=parent, it=it)
            parent, models[f"{method}-M{it}"] = out, out
    lines.append("evaluation:")
    it = cfg.iterate
    for name, path in models.items():
        shots = sorted(set(it.m0_three_shot)) if name == "M0" else []
        how = f" ({' and '.join(shots)} 3-shot)" if shots else ""
        serve(path, f"evaluate {name}{how}")
    if it.eval_tts and "psrlm" in it.methods:
        tc = tts_search_cfg(run)
        n = "every problem" if it.eval_tts < 0 else f"the first {it.eval_tts} problem(s)"
        rules = (f"a tie takes its most-sampled step, no rollback; ends at an answer or {tc.max_steps} steps"
                 if tc.ties == "accept" else f"the training search's rules: rollback on ties, {tc.max_rounds} rounds")  # fmt: skip
        lines.append(f"test-time search (Tables 5/9, iterate.eval_tts_rules={it.eval_tts_rules}: {rules}):")
        for name in dict.fromkeys(["psrlm-M1", f"psrlm-M{len(it.questions) + 1}"]):
            serve(models[name], f"step search (w={tc.width}, T={tc.temperature}, top-p {tc.top_p}, {tc.judge_mode}) "
                                f"vs greedy on {n} of {', '.join(run.tts_benchmarks())} with {name}")  # fmt: skip
    return lines
