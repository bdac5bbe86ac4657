"""The self-rewarding loop: M0 -> M1 -> PPD(M1) -> M2 -> ... -> Mn, for PSRLM and the SRLM baseline.

    psrlm iterate --config configs/demo.yaml

Stages, each skipped when its output is already complete, so `kill -9` anywhere and a rerun continues:
  data      problems, IFT, EFT (deterministic in the config)
  M0        base model: a prebuilt checkpoint whose build config matches, else pre-trained on raw domain text
  M1        SFT of M0: PSRLM on IFT + EFT (step-pair judging), SRLM on IFT + solution-scoring EFT
  M(n+1)    search with M(n) on fresh questions (resumable per problem), then DPO of M(n) against itself as
            reference; every model is written to a temp folder and renamed when whole
  oracle    (iterate.oracle_iterations, science) oracle-M2.. from psrlm-M1: the same search on the same questions
            with the step oracle as judge, then the same DPO; labelled ORACLE in every table
  eval      greedy accuracy on the held-out splits, judge accuracy on the EFT test split, step statistics
Each model gets a Manifest (`<run>/manifests/<name>.json`): parent, data files with hashes, config, seeds,
metrics, wall time, and the settings that determine it (data hashes, the parent's settings fingerprint, the
training / search configs and seeds). A rerun reuses a model only when those settings match; otherwise it stops
and names the keys that differ, or with `--fresh` moves the stale models, their pairs and evaluations to
`<run>/replaced/<time>/` and rebuilds them (and, through the parent fingerprint, everything after them).
Evaluations are caches: results made from another model or other settings are moved aside and recomputed; a
model that is a byte copy of its parent (its search made no pairs) takes its parent's evaluation.
In the method the oracle is read only to *measure* (pair precision, evaluation), never to choose; the oracle arm
is the one place it judges, and every table says so.

Where each part lives: the stage list and the model-building stages in stages.py (`loop_stages`, M1, one
iteration), the data and each iteration's questions in questions.py, the fingerprints in identity.py, evaluation
in evaluation.py, the dry run in dry_run.py; this module checks the recipe's paths and runs the list (`run_all`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from psrlm.benchmark_names import parse_benchmarks
from psrlm.configs import Config, ConfigError, check_for_iterate
from psrlm.evaluation import evaluate_appendix_b, evaluate_model, evaluate_tts, shots_of
from psrlm.m0 import check_prebuilt_m0, ensure_m0
from psrlm.questions import iteration_questions, prepare_data, question_blocks
from psrlm.records import StepSolution, read_jsonl, write_json
from psrlm.runfolder import Run
from psrlm.stages import ensure_m1, ensure_policy_eft, loop_stages, run_iteration, stage_run
from psrlm.summary_table import format_table, manifest_facts

log = logging.getLogger(__name__)


def check_paths(cfg: Config, rebuild_m0: bool = False) -> None:
    """Paths given explicitly must exist, and data files must read as their records, before any model loads: a
    typo must not start hours of work on a default, nor fail an hour in. A prebuilt M0 built with other settings
    stops here too (unless `rebuild_m0`)."""
    from psrlm.records import JudgeExample, ScoreExample, validate_jsonl

    check_for_iterate(cfg)  # the config rules of this command (configs/rules.py)
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
        models: dict[str, Path] = {}  # name -> folder, as each stage makes it
        results: dict[str, dict] = {}  # name -> metrics
        summary: dict = {"models": results}
        for stage in loop_stages(cfg):
            if stage.kind == "data":
                t, before = time.time(), _files_state(run.data)
                prepare_data(run)
                if _files_state(run.data) != before:  # checking data that is already there is not building it
                    run.timed("data", t)
            elif stage.kind == "m0":
                models["M0"] = ensure_m0(run)
                ensure_policy_eft(run, models["M0"])
                if cfg.iterate.schedule == "fixed":
                    question_blocks(run)  # a pool too small for the schedule stops here, before any M1 is built
            elif stage.kind == "m1":
                models[stage.name] = ensure_m1(run, stage.method, models["M0"])
            elif stage.kind == "iteration":
                parent = models[stage.parent]
                # an arm (the oracle's) searches exactly the questions of the method's iteration of its number
                method_parent = models[f"{stage.method}-M{stage.it - 1}"] if stage.label else parent
                questions, schedule = iteration_questions(run, stage.method, stage.it, method_parent)
                if stage.label:
                    schedule = {**schedule, "questions_of": f"{stage.method}-M{stage.it}"}
                models[stage.name] = run_iteration(stage_run(run, stage), stage.method, stage.it, parent, questions,
                                                   label=stage.label or None, schedule=schedule)  # fmt: skip
            elif stage.kind == "evaluate":
                few_shot, judge_few_shot = shots_of(run, stage.name)
                results[stage.name] = evaluate_model(run, stage.name, models[stage.name], few_shot,
                                                     judge_few_shot=judge_few_shot)  # fmt: skip
                m = run.load_manifest(stage.name)
                if m is not None:
                    results[stage.name]["manifest"] = manifest_facts(dataclasses.asdict(m))
            elif stage.kind == "tts":  # Table 5: PSRLM's first and last model
                summary.setdefault("tts", {})[stage.name] = evaluate_tts(run, stage.name, models[stage.name])
            elif stage.kind == "appendix_b":
                summary["appendix_b"] = evaluate_appendix_b(run, models[stage.name], models[stage.parent])
        # stage and wall times over every process that worked on the run (a rerun that finds all done keeps them)
        run.timed(None)
        summary.update(timings_s=run.timings, wall_s=run.wall_s, stage_total_s=sum(run.timings.values()),
                       this_process_wall_s=time.time() - start)  # fmt: skip
        write_json(run.layout.summary, summary)
    print(format_table(results))
    return summary


def _files_state(folder: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in folder.glob("*") if f.is_file()}
