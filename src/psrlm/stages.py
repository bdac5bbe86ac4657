"""The stages that build the models of a run: M1 (SFT of M0 on IFT + EFT, or on IFT + scoring data for SRLM) and
each iteration M_n -> M_n+1 (search or SRLM sampling with M_n on fresh questions, then DPO against M_n, or RFT).

    ensure_m1(run, "psrlm", m0); run_iteration(run, "psrlm", 2, m1, questions)

`loop_stages` lists every stage of `psrlm iterate` in order, the data and evaluation included: `run_all` runs that
list and `dry_run` describes it, so the two cannot disagree on what runs when.

Each stage reuses its model only when the settings recorded with it match (identity.reuse_model), writes its
search per problem (resumable) and its model to a temp folder renamed when whole, and banks its time on the run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from psrlm.configs import Config, config_to_dict
from psrlm.evaluate import pair_precision
from psrlm.folders import claim_settings, fingerprint, flatten
from psrlm.identity import engine_settings, generation_identity, m0_identity, reuse_model, train_settings
from psrlm.records import Manifest, Problem, SearchTrace, StepSolution, read_json, sha256_file, write_json, write_jsonl
from psrlm.runfolder import Run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One stage of the loop, in the order `run_all` runs it: `kind` is data, m0, m1, iteration, evaluate, tts or
    appendix_b; `name` the model it makes or reads; `method` and `it` (M_it) for a model of the loop; `parent` the
    model it starts from (appendix_b: the scorer, srlm-M1); `label` names an arm's chain instead of the method
    (ORACLE_ARM: the method's search judged by the step oracle, `oracle_config`)."""

    kind: str
    name: str = ""
    method: str = ""
    it: int = 0
    parent: str = ""
    label: str = ""


ORACLE_ARM = "oracle"  # the label of iterate.oracle_iterations' chain: oracle-M2, oracle-M3, ... from psrlm-M1


def oracle_config(cfg: Config) -> Config:
    """The method's config with the step oracle as a perfect judge (search.judge=oracle, judge_flip 0, oracle_ties
    accept: two right steps are both fine, so the search goes on): the oracle arm of `psrlm iterate`
    (iterate.oracle_iterations) and of `psrlm frontier`. Science only: the self-rewarding loop never reads it."""
    search = dataclasses.replace(cfg.search, judge="oracle", judge_flip=0.0, oracle_ties="accept")
    return dataclasses.replace(cfg, search=search)


def stage_run(run: Run, stage: Stage) -> Run:
    """The Run an iteration stage builds its model with: the run itself, or for the oracle arm one over the same
    folder whose search is judged by the oracle (`oracle_config`)."""
    if stage.label != ORACLE_ARM:
        return run
    return Run(oracle_config(run.cfg), fresh=run.fresh, rebuild_m0=run.rebuild_m0)


def loop_stages(cfg: Config) -> list[Stage]:
    """Every stage of `psrlm iterate` under `cfg`, in order: the one list that run_all runs and that the dry run and
    its plan describe. The data and M0; per method M1, then M2..Mn (iterate.questions), PSRLM's followed by the
    oracle arm's oracle-M2.. from psrlm-M1 (iterate.oracle_iterations, science); every model's evaluation;
    test-time search of PSRLM's first and last model (Table 5, iterate.eval_tts); Appendix B (iterate.eval_appendix_b,
    both methods' M1)."""
    it = cfg.iterate
    stages = [Stage("data"), Stage("m0", "M0")]
    for method in it.methods:
        stages.append(Stage("m1", f"{method}-M1", method, 1, "M0"))
        stages += [Stage("iteration", f"{method}-M{n}", method, n, f"{method}-M{n - 1}")
                   for n in range(2, len(it.questions) + 2)]  # fmt: skip
        if method == "psrlm":
            stages += [Stage("iteration", f"{ORACLE_ARM}-M{n}", method, n,
                             "psrlm-M1" if n == 2 else f"{ORACLE_ARM}-M{n - 1}", ORACLE_ARM)
                       for n in range(2, it.oracle_iterations + 2)]  # fmt: skip
    stages += [Stage("evaluate", s.name) for s in list(stages) if s.name]
    if it.eval_tts and "psrlm" in it.methods:
        stages += [Stage("tts", n, "psrlm") for n in dict.fromkeys(["psrlm-M1", f"psrlm-M{len(it.questions) + 1}"])]
    if it.eval_appendix_b and {"psrlm", "srlm"} <= set(it.methods):
        stages.append(Stage("appendix_b", "psrlm-M1", parent="srlm-M1"))
    return stages


class EngineFailure(RuntimeError):
    """Too many problems of a stage failed because their requests failed (a server in trouble)."""


# -------------------------------------------------------------------------------------------------------------------- M1


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


def m1_eft(run: Run, method: str) -> Path:
    """M1's judging data: EFT (PSRLM: step-pair judging) or solution-scoring data (SRLM; arith writes it on first
    use, srlm_eft_file). Only named here: planning reads it, never writes it."""
    return run.eft_train_file() if method == "psrlm" else run.srlm_eft_path()


def m1_data(run: Run, method: str) -> dict[str, list[Path]]:
    """M1's training files by the kind `train.sft` reads them as: IFT, and EFT or scoring data."""
    return {"ift": run.ift_files(), "eft" if method == "psrlm" else "score": [m1_eft(run, method)]}


def m1_settings(run: Run, method: str, m0: Path) -> dict:
    if method == "srlm":
        srlm_eft_file(run)  # arith: written on first use
    return m1_settings_for(run, method, m0_identity(m0), m1_eft(run, method))


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
    manifest = run.train("sft", m0, out, m1_data(run, method), iteration=1, method=method, settings=settings)
    run.write_manifest(name, manifest)
    run.timed(f"{method} M1 SFT", start, name)
    return out


# ---------------------------------------------------------------------------------------------------------- iterations


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
    # keys read as the config's own: search.width, dpo.beta
    search = {"method": method, "parent": fingerprint(flatten(parent_settings)),
              "questions": fingerprint({"ids": [q.id for q in questions], "text": [q.question for q in questions]}),
              "engine": engine_settings(run),
              **generation_identity(method, _search_cfg(run, method, it), run.cfg.prompts.variant)}  # fmt: skip
    if training == "rft":
        return search, {**search, "training": "rft", "rft": train_settings(run.seeded(run.cfg.rft.for_iteration(it)))}
    return search, {**search, "dpo": train_settings(run.seeded(run.cfg.dpo.for_iteration(it)))}


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


def generate_pairs(method: str, problems: list[Problem], engine, prompts, gen_cfg, out_dir: Path, iteration: int):
    """The step search with self-judging (psrlm) or SRLM's sampling and solution scoring (srlm) of `problems`,
    committed per problem into `out_dir` (resumable): the one call `iterate` and `psrlm search` both make. Returns
    the search's result (pairs, traces, failed problems, summary())."""
    if method == "psrlm":
        from psrlm.search import run_search

        return run_search(problems, engine, prompts, gen_cfg, out_dir=out_dir, iteration=iteration)
    from psrlm.srlm import run_srlm

    return run_srlm(problems, engine, prompts, gen_cfg, out_dir=out_dir, iteration=iteration)


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
        result = generate_pairs(method, questions, engine, run.prompts, _search_cfg(run, method, it), search_dir, it)
    run.timed(f"{label} search", start, name)
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
        rft_run = Run(dataclasses.replace(cfg, sft=cfg.rft.for_iteration(it)), fresh=run.fresh)
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
    run.timed(f"{label} {'RFT' if training == 'rft' else 'DPO'}", start_train, name)
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
