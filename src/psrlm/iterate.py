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

from psrlm.configs import REPO_ROOT, Config, ConfigError, config_to_dict
from psrlm.folders import FolderError, claim_settings, fingerprint, flatten, move_aside, settings_diff
from psrlm.records import (
    JudgeExample,
    Manifest,
    PreferencePair,
    Problem,
    StepSolution,
    from_dict,
    read_json,
    read_jsonl,
    sha256_file,
    write_json,
    write_jsonl,
)

log = logging.getLogger(__name__)


def _is_model(path: Path) -> bool:
    return (Path(path) / "psrlm_build.json").exists()


class Run:
    """Paths and shared pieces of one run folder. `fresh`: rebuild what was made with other settings (the old
    outputs are moved to <run>/replaced/) instead of stopping with the keys that differ."""

    def __init__(self, cfg: Config, fresh: bool = False):
        from psrlm.prompts import get_prompts

        self.cfg = cfg
        self.fresh = fresh
        self.dir = Path(cfg.paths.run_dir)
        self.data = self.dir / "data"
        self.models = self.dir / "models"
        self.manifests = self.dir / "manifests"
        self.prompts = get_prompts(cfg.prompts.variant)
        self.seed = cfg.iterate.seed
        self.timings_path = self.dir / "timings.json"

    def manifest_path(self, name: str) -> Path:
        return self.manifests / f"{name}.json"

    def load_manifest(self, name: str) -> Manifest | None:
        p = self.manifest_path(name)
        return from_dict(Manifest, read_json(p), str(p)) if p.exists() else None

    def write_manifest(self, name: str, m: Manifest) -> None:
        write_json(self.manifest_path(name), dataclasses.asdict(m))

    def engine(self, model_dir: Path):
        from psrlm.engines import make_engine

        return make_engine(self.cfg.engine, model_dir)

    def seeded(self, tc):
        return dataclasses.replace(tc, seed=tc.seed + self.seed)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage, summed over the models of each stage ("psrlm search", "evaluation", ...), over every
        process that worked on this run: a rerun that finds everything done keeps what the first run measured."""
        out: dict[str, float] = {}
        for key, seconds in self._stage_times().items():
            stage = key.split("/", 1)[0]
            out[stage] = out.get(stage, 0.0) + seconds
        return out

    def _stage_times(self) -> dict[str, float]:
        return read_json(self.timings_path) if self.timings_path.exists() else {}

    def timed(self, key: str, start: float, model: str = "") -> None:
        """Add the time since `start` to stage `key` (for `model`), persisted at once so a kill keeps it."""
        times = self._stage_times()
        k = f"{key}/{model}" if model else key
        times[k] = times.get(k, 0.0) + time.time() - start
        write_json(self.timings_path, times)

    def forget_times(self, model: str) -> None:
        times = self._stage_times()
        kept = {k: v for k, v in times.items() if not k.endswith(f"/{model}")}
        if kept != times:
            write_json(self.timings_path, kept)


def train_settings(tc) -> dict:
    """What a training stage's config contributes to a model's identity: precision and logging are how a machine
    ran it, not what it built (a run moved between a bf16 CPU and an fp32 one still resumes)."""
    return {k: v for k, v in dataclasses.asdict(tc).items() if k not in ("bf16", "logging_steps")}


def generation_settings(cfg) -> dict:
    """What a search / SRLM config contributes: everything but how many problems share a batch (max_active),
    which cannot change a result (samples are seeded per problem)."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "max_active"}


def engine_settings(run: Run) -> dict:
    from psrlm import hardware

    e = run.cfg.engine
    if e.kind != "hf":
        return {"kind": e.kind, "model_name": e.model_name}
    return {"kind": "hf", "dtype": hardware.engine_dtype(e.dtype, hardware.pick_device(e.device))}


def reuse_model(run: Run, name: str, settings: dict) -> Path | None:
    """The finished model `name` if it was made with exactly `settings`; None when it must be (re)built. Made with
    other settings: a FolderError naming the keys, or with `run.fresh` its outputs are moved aside first."""
    out = run.models / name
    manifest = run.load_manifest(name) if _is_model(out) else None
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
    method, it = name.rsplit("-M", 1)
    for path in (out, run.manifest_path(name), run.dir / method / f"it{it}", run.dir / "eval" / name):
        move_aside(path, run.dir)
    run.forget_times(name)
    log.warning("%s was made with %s: rebuilding it (old outputs in %s/replaced/)", name, why, run.dir)
    return None


def check_paths(cfg: Config) -> None:
    """Paths given explicitly must exist: a typo must not start hours of work on a default."""
    if cfg.model.path:
        from psrlm.checkpoints import resolve_model

        resolve_model(cfg.model.path, key="model.path")
    if cfg.iterate.m0_path:
        prebuilt_m0(cfg)


def prebuilt_m0(cfg: Config) -> Path:
    pre = Path(cfg.iterate.m0_path).expanduser()
    if not pre.is_absolute() and not pre.exists():
        pre = REPO_ROOT / pre
    if not pre.exists():
        raise ConfigError(f"iterate.m0_path: {cfg.iterate.m0_path} does not exist (looked in the current folder "
                          f"and in {REPO_ROOT}); fix the path, or set it empty to pre-train M0")  # fmt: skip
    if not _is_model(pre):
        raise ConfigError(f"iterate.m0_path: {pre} is not a psrlm-built model (no psrlm_build.json)")
    return pre


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
    # precision and logging are how a machine runs the recipe, not what it builds: a prebuilt M0 must serve a CPU
    # with native bf16 and one without alike
    recipe = {k: v for k, v in dataclasses.asdict(cfg.pretrain).items() if k not in ("bf16", "logging_steps")}
    return config_key(dataclasses.asdict(cfg.model), pool, recipe)


def ensure_m0(run: Run) -> Path:
    """A prebuilt M0 whose recorded key matches this config, else pre-train one (cached by the same key)."""
    from psrlm import train
    from psrlm.initdata.build import init_tiny_model

    cfg = run.cfg
    if cfg.model.path:  # a real checkpoint is M0 as it is
        from psrlm.checkpoints import resolve_model

        return resolve_model(cfg.model.path, key="model.path")
    key = m0_key(cfg)
    if cfg.iterate.m0_path:
        pre = prebuilt_m0(cfg)
        built_from = read_json(pre / "psrlm_build.json").get("m0_key")
        if built_from == key:
            return pre
        log.warning("the prebuilt M0 at %s was built from other model/arith/pretrain settings (key %s, this config "
                    "%s): pre-training a new one", pre, built_from, key)  # fmt: skip
    target = run.models / f"M0-{key}"
    if _is_model(target):
        return target
    start = time.time()
    init = init_tiny_model(cfg)
    info = train.pretrain(init, m0_texts(run), cfg.pretrain, target)
    meta = read_json(target / "psrlm_build.json")
    meta.update(m0_key=key, model=dataclasses.asdict(cfg.model), pretrain=dataclasses.asdict(cfg.pretrain))
    write_json(target / "psrlm_build.json", meta)
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


def m0_identity(m0: Path) -> dict:
    """How a run names its M0: the build key of a psrlm-built one, else the checkpoint's path and file stats."""
    from psrlm.folders import model_files

    info = read_json(m0 / "psrlm_build.json") if _is_model(m0) else {}
    if info.get("m0_key"):
        return {"m0_key": info["m0_key"]}
    return {"path": str(m0), "files": model_files(m0)}


def m1_settings(run: Run, method: str, m0: Path) -> dict:
    ift_file = run.data / "ift.jsonl"
    eft_file = run.data / "eft_train.jsonl" if method == "psrlm" else srlm_eft_file(run)
    return {"method": method, "m0": m0_identity(m0), "prompts": {"variant": run.cfg.prompts.variant},
            "data": {"ift": sha256_file(ift_file), "eft": sha256_file(eft_file)},
            "sft": train_settings(run.seeded(run.cfg.sft))}  # fmt: skip


def ensure_m1(run: Run, method: str, m0: Path) -> Path:
    from psrlm import train
    from psrlm.prompts import score_target
    from psrlm.records import ScoreExample

    name = f"{method}-M1"
    out = run.models / name
    settings = m1_settings(run, method, m0)
    if reuse_model(run, name, settings):
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
            settings=flatten(settings),
        ),
    )
    run.timed(f"{method} M1 SFT", start, name)
    return out


# ----------------------------------------------------------------------------------------- iterations


def question_blocks(run: Run) -> list[list[Problem]]:
    from psrlm.records import read_problems

    fresh = read_problems(run.data / "fresh_questions.jsonl")
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


def _search_cfg(run: Run, method: str, it: int):
    cfg = run.cfg
    if method == "psrlm":
        return dataclasses.replace(cfg.search, seed=cfg.search.seed + 1000 * it + run.seed)
    return dataclasses.replace(cfg.srlm, seed=cfg.srlm.seed + 1000 * it + run.seed)


def iteration_settings(run: Run, method: str, it: int, parent: str, questions: list[Problem]) -> tuple[dict, dict]:
    """(search-folder settings, model settings) of M_it: the pairs depend on the parent, the questions, the search
    config, the prompts and the engine's precision; the model adds DPO's config."""
    parent_manifest = run.load_manifest(parent)
    section = "search" if method == "psrlm" else "srlm"  # keys read as the config's own: search.width, dpo.beta
    search = {"method": method, "parent": fingerprint(parent_manifest.settings),
              "questions": fingerprint({"ids": [q.id for q in questions], "text": [q.question for q in questions]}),
              "prompts": {"variant": run.cfg.prompts.variant}, "engine": engine_settings(run),
              section: generation_settings(_search_cfg(run, method, it))}  # fmt: skip
    return search, {**search, "dpo": train_settings(run.seeded(run.cfg.dpo))}


def run_iteration(run: Run, method: str, it: int, parent: Path, questions: list[Problem]) -> Path:
    from psrlm import train

    name = f"{method}-M{it}"
    out = run.models / name
    search_settings, settings = iteration_settings(run, method, it, parent.name, questions)
    if reuse_model(run, name, settings):
        return out
    cfg = run.cfg
    search_dir = run.dir / method / f"it{it}"
    claim_settings(search_dir, search_settings, fresh=run.fresh, root=run.dir)
    start = time.time()
    engine = run.engine(parent)
    if method == "psrlm":
        from psrlm.search import run_search

        result = run_search(questions, engine, run.prompts, _search_cfg(run, method, it), out_dir=search_dir,
                            iteration=it)  # fmt: skip
    else:
        from psrlm.srlm import run_srlm

        result = run_srlm(questions, engine, run.prompts, _search_cfg(run, method, it), out_dir=search_dir,
                          iteration=it)  # fmt: skip
    del engine
    run.timed(f"{method} search", start, name)
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
    run.timed(f"{method} DPO", start_train, name)
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
            settings=flatten(settings),
        ),
    )
    return out


# ------------------------------------------------------------------------------------------ evaluation


@contextmanager
def eval_folder(run: Run, name: str, model: Path | str, max_tokens: int, shots=None) -> Iterator[Path]:
    """<run>/eval/<name>/, locked for this process and checked against what decides its results (the model's
    identity, engine precision, prompts, token cap, few-shot examples). Results made otherwise are moved to
    <run>/replaced/ and computed afresh, never reused."""
    from psrlm.evaluate import eval_settings
    from psrlm.folders import FolderLock, recorded_extra

    out = run.dir / "eval" / name
    with FolderLock(out, "eval"):
        settings, extra = eval_settings(run.cfg.engine, model, run.cfg.prompts.variant, max_tokens, shots,
                                        recorded_extra(out))  # fmt: skip
        claim_settings(out, settings, replace=True, root=run.dir, extra=extra)
        yield out


def cached(path: Path, settings: dict, compute) -> dict:
    """A JSON result that is reused only when it records exactly `settings`."""
    flat = flatten(settings)
    if path.exists():
        data = read_json(path)
        if data.get("settings") == flat:
            return data
    result = {**compute(), "settings": flat}
    write_json(path, result)
    return result


def evaluate_model(run: Run, name: str, model_dir: Path, few_shot: bool = False) -> dict:
    """Greedy accuracy per held-out split (and any `iterate.eval_benchmarks`) + judge accuracy on the EFT test
    split; cached in <run>/eval/<name>/metrics.json, per-problem results in <run>/eval/<name>/<benchmark>.jsonl."""
    from psrlm.evaluate import evaluate_benchmarks
    from psrlm.steps import split_steps
    from psrlm.tasks.arith import label_solution
    from psrlm.tasks.benchmarks import load_benchmark

    cfg = run.cfg.iterate
    shots = read_jsonl(run.data / "ift.jsonl", StepSolution)[:3] if few_shot else None
    settings = {"limit": cfg.eval_limit, "eft": cfg.eval_eft, "judge_max_tokens": run.cfg.search.judge_max_tokens,
                "benchmarks": cfg.eval_benchmarks, "benchmark_limit": cfg.eval_benchmark_limit,
                "eft_file": sha256_file(run.data / "eft_test.jsonl")}  # fmt: skip

    def compute() -> dict:
        start = time.time()
        engine = run.engine(model_dir)
        metrics: dict = {"model": str(model_dir), "few_shot": few_shot}
        benchmarks = {
            s: load_benchmark(s, run_data=run.data, limit=cfg.eval_limit) for s in ("arith_test", "arith_hard")
        }
        data_dir = run.cfg.paths.resolved_data_dir()
        for b in cfg.eval_benchmarks:
            benchmarks[b] = load_benchmark(b, data_dir, limit=cfg.eval_benchmark_limit)
        summaries = evaluate_benchmarks(benchmarks, engine, run.prompts, out, cfg.eval_max_tokens, few_shot=shots,
                                        desc=f"eval {name}")  # fmt: skip
        for split in ("test", "hard"):
            problems = benchmarks[f"arith_{split}"]
            by_id = {r["problem_id"]: r for r in read_jsonl(out / f"arith_{split}.jsonl")}
            labels = [label_solution(p, split_steps(by_id[p.id]["response"])) for p in problems]
            flat = [lab.correct for ls in labels for lab in ls]
            metrics[split] = {**summaries[f"arith_{split}"], "step_precision": sum(flat) / len(flat) if flat else 0.0}
        metrics["benchmarks"] = summaries
        metrics.update(evaluate_judge(run, engine, few_shot))
        metrics["wall_s"] = time.time() - start
        run.timed("evaluation", start, name)
        return metrics

    with eval_folder(run, name, model_dir, cfg.eval_max_tokens, shots) as out:
        return cached(out / "metrics.json", settings, compute)


def evaluate_judge(run: Run, engine, few_shot: bool = False, eft_file: Path | None = None) -> dict:
    """Table 3: the first `iterate.eval_eft` items of the EFT test split (or `eft_file`) in both A/B orders; with
    `few_shot`, three EFT-train items are prepended (how M0 is asked)."""
    from psrlm.evaluate import judge_metrics

    cfg = run.cfg.iterate
    eft = read_jsonl(Path(eft_file) if eft_file else run.data / "eft_test.jsonl", JudgeExample)
    eft = eft[: cfg.eval_eft] if cfg.eval_eft else eft
    few = read_jsonl(run.data / "eft_train.jsonl", JudgeExample)[:3] if few_shot else None
    return judge_metrics(eft, engine, run.prompts, run.cfg.search.judge_max_tokens, few_shot=few)


def tts_search_cfg(run: Run):
    return dataclasses.replace(run.cfg.search, seed=run.cfg.search.seed + run.seed)


def evaluate_tts(run: Run, name: str, model_dir: Path) -> dict:
    """Table 5: test-time search vs greedy on the first `iterate.eval_tts` arith test problems; cached with the
    search settings it was run with."""
    from psrlm.evaluate import tts_vs_greedy
    from psrlm.tasks.benchmarks import load_benchmark

    search_cfg = tts_search_cfg(run)
    settings = {"n": run.cfg.iterate.eval_tts, "search": generation_settings(search_cfg)}

    def compute() -> dict:
        start = time.time()
        problems = load_benchmark("arith_test", run_data=run.data, limit=run.cfg.iterate.eval_tts)
        result = tts_vs_greedy(problems, run.engine(model_dir), run.prompts, search_cfg, out, run.cfg.iterate.eval_max_tokens,
                               settings=settings, root=run.dir)  # fmt: skip
        run.timed("tts evaluation", start, name)
        return {"model": name, **result}

    with eval_folder(run, name, model_dir, run.cfg.iterate.eval_max_tokens) as out:
        return cached(out / "tts.json", settings, compute)


def evaluate_appendix_b(run: Run, pair_model: Path, score_model: Path, n: int = 0) -> dict:
    """Appendix B: `pair_model` (psrlm-M1) judging step pairs vs `score_model` (srlm-M1) scoring solutions, on the
    same first `n` (default `iterate.eval_appendix_b`) EFT test items; cached with both models' identities and
    the settings it was run with."""
    from psrlm.evaluate import compare_judging
    from psrlm.folders import FolderLock, model_identity

    n = n or run.cfg.iterate.eval_appendix_b
    s = run.cfg.srlm
    settings = {"pair_judge": model_identity(Path(pair_model)), "scorer": model_identity(Path(score_model)), "n": n,
                "judge_max_tokens": run.cfg.search.judge_max_tokens, "prompts": run.cfg.prompts.variant,
                "score_max_tokens": s.judge_max_tokens, "score_temperature": s.judge_temperature,
                "seed": s.seed + run.seed, "engine": engine_settings(run),
                "eft_file": sha256_file(run.data / "eft_test.jsonl")}  # fmt: skip

    def compute() -> dict:
        start = time.time()
        items = read_jsonl(run.data / "eft_test.jsonl", JudgeExample)[:n]
        result = compare_judging(items, run.engine(pair_model), run.engine(score_model), run.prompts,
                                 run.cfg.search.judge_max_tokens, s.judge_max_tokens, s.judge_temperature,
                                 seed=s.seed + run.seed)  # fmt: skip
        run.timed("appendix B", start)
        return {"pair_judge": str(pair_model), "scorer": str(score_model), **result}

    with FolderLock(run.dir / "eval", "appendix B"):
        return cached(run.dir / "eval" / "appendix_b.json", settings, compute)


# ----------------------------------------------------------------------------------------------- main


def run_all(cfg: Config, progress: bool = True, fresh: bool = False) -> dict:
    """Every stage of the configured run, resumable; returns {model name: metrics} and prints the table. `fresh`:
    rebuild what was made with other settings instead of stopping (see Run)."""
    from psrlm.folders import FolderLock
    from psrlm.initdata.build import build_arith_data

    check_paths(cfg)
    run = Run(cfg, fresh=fresh)
    start = time.time()
    with FolderLock(run.dir, "iterate"):
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
                res["manifest"] = {
                    "pair_precision": m.metrics.get("pair_precision"),
                    "search": m.metrics.get("search"),
                }
        summary = {"models": results}
        if cfg.iterate.eval_tts and "psrlm" in cfg.iterate.methods:  # Table 5: PSRLM's first and last model
            tts_models = dict.fromkeys(["psrlm-M1", f"psrlm-M{len(blocks) + 1}"])
            summary["tts"] = {n: evaluate_tts(run, n, models[n]) for n in tts_models}
        if cfg.iterate.eval_appendix_b and {"psrlm-M1", "srlm-M1"} <= set(models):
            summary["appendix_b"] = evaluate_appendix_b(run, models["psrlm-M1"], models["srlm-M1"])
        # stage times over every process that worked on the run (a rerun that finds all done keeps them)
        summary.update(timings_s=run.timings, wall_s=time.time() - start, stage_total_s=sum(run.timings.values()))
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
