"""EFT as the paper builds it (§3.2, §4 "Datasets"): PRM-scored tree search, teacher judgments, two filters.

    psrlm data eft --config configs/initdata-arith.yaml                 # PRM, MCTS, teacher, filters, split
    psrlm data eft --config configs/initdata-arith.yaml --compare-m1    # + M1 on it vs M1 on the oracle EFT

1. PRM: `initdata.prm_path`, or on arith a tiny token-classification PRM trained on oracle step labels (gold
   steps, realistic corruptions and the policy's own samples); its step accuracy against the oracle is reported.
2. Policy: `initdata.policy_path`, or on arith M0 fine-tuned on the IFT data.
3. MCTS over the policy (initdata/mcts.py): best and worst sibling steps by the PRM's P("+") are candidate pairs.
4. The teacher judges every pair twice, with A and B swapped (Fig. 5 prompt), writing an explanation. A pair is
   kept only if the two verdicts name the same step (consistency) and that step is the PRM's best (agreement).
   A teacher that fails, says nothing, stops mid-output or gives no verdict is counted and the pair skipped.
5. Kept pairs become JudgeExamples (A/B positions alternated, the explanation from the matching order), split by
   problem into train and test (paper: 4,179 / 500), and written with the per-filter counts.

The teacher is `initdata.teacher`: "engine" (an OpenAI-compatible server or an HF model directory) or, on arith,
"oracle": tasks/arith.py's step labels with a templated explanation. An oracle teacher that cannot tell two steps
apart (both right or both wrong) answers [[A]] in either order, like a position-biased judge, so the
consistency filter sees real work; every record it writes says `teacher: oracle`.

Outputs under `<run_dir>/initdata/`: mcts/ (traces, candidate pairs; resumable per problem), eft_train.jsonl,
eft_test.jsonl, eft_rejects.jsonl, eft_counts.json. Teacher answers are cached (teacher_cache.py). The teachers, the
two filters and the split (steps 4-5) are eft_judging.py's; here: the run that builds and feeds them.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from pathlib import Path

from psrlm.engines.base import GenParams
from psrlm.initdata.eft_judging import EngineJudgeTeacher, OracleJudgeTeacher, judge_and_filter, split_by_problem
from psrlm.records import JudgeExample, Problem, read_jsonl, write_json, write_jsonl
from psrlm.run_layout import RunLayout

log = logging.getLogger(__name__)

# -------------------------------------------------------------------------------------- arith end to end


def out_dir(cfg) -> Path:
    return RunLayout(cfg.paths.run_dir).initdata


def ensure_policy(run, m0: Path) -> Path:
    """The MCTS policy on arith: M0 fine-tuned on the IFT data (steps, no judging), cached in the run."""
    from psrlm import train
    from psrlm.records import StepSolution
    from psrlm.tiny import config_key

    key = config_key(str(m0), dataclasses.asdict(run.cfg.sft), run.cfg.data.ift_problems, run.cfg.prompts.variant)
    out = run.layout.model(f"policy-ift-{key}")
    if (out / "psrlm_build.json").exists():
        return out
    rows = train.ift_rows(read_jsonl(run.layout.ift, StepSolution), run.prompts)
    train.sft(m0, rows, run.seeded(run.cfg.sft), out)
    return out


def ensure_prm(run, m0: Path, policy_engine, problems: list[Problem]) -> tuple[Path, dict]:
    """A tiny token-classification PRM trained on oracle step labels (cached by its settings) and its info."""
    import json

    from psrlm import train
    from psrlm.prm import arith_prm_rows
    from psrlm.steps import clean_candidate
    from psrlm.tiny import config_key

    ic = run.cfg.initdata
    key = config_key(str(m0), dataclasses.asdict(ic.prm_train), ic.prm_problems, ic.prm_samples, ic.seed)
    out = run.layout.model(f"prm-{key}")
    if (out / "psrlm_build.json").exists():
        return out, json.loads((out / "train_log.json").read_text())
    samples: dict[str, list[tuple[int, str]]] = {}
    if ic.prm_samples:
        rng = random.Random(f"prm-samples:{ic.seed}")
        prefixes = [rng.randrange(len(p.meta["steps"])) for p in problems]
        asks = [
            run.prompts.step_prompt(p.question, p.meta["steps"][:k]) for p, k in zip(problems, prefixes, strict=True)
        ]
        from psrlm.steps import STEP_STOP

        params = GenParams(n=ic.prm_samples, temperature=ic.temperature, top_p=ic.top_p,
                           max_new_tokens=ic.max_step_tokens, stop=(STEP_STOP,), seed=ic.seed)  # fmt: skip
        for p, k, row in zip(problems, prefixes, policy_engine.generate(asks, params), strict=True):
            steps = {clean_candidate(c.text) for c in row} - {""}
            samples[p.id] = [(k, s) for s in sorted(steps)]
    rows = arith_prm_rows(problems, ic.seed, samples)
    info = train.prm(m0, rows, run.seeded(ic.prm_train), out, separator=ic.prm_step_separator)
    return out, info


def prm_accuracy_on(prm, problems: list[Problem], seed: int) -> dict:
    """PRM step accuracy on held-out oracle-labelled rows (gold steps and realistic corruptions)."""
    from psrlm.prm import arith_prm_rows, step_accuracy

    rows = arith_prm_rows(problems, seed + 1)
    scores = prm.score_last([r["prompt"] for r in rows], [r["completions"] for r in rows])
    read = [(s, bool(r["labels"][-1])) for s, r in zip(scores, rows, strict=True) if s is not None]
    return step_accuracy([s for s, _ in read], [y for _, y in read])


def prm_accuracy_on_search(traces, problems: dict[str, Problem]) -> dict:
    """PRM step accuracy on (a sample of) the very steps MCTS scored, labelled by the oracle."""
    from psrlm.prm import step_accuracy
    from psrlm.tasks.arith import label_step

    scores, labels = [], []
    for t in traces:
        p = problems[t.problem_id]
        for s in t.scored_steps:
            scores.append(s["p"])
            labels.append(label_step(p, s["prev"], s["step"]).correct)
    return step_accuracy(scores, labels)


def build_eft_pipeline(cfg, progress: bool = True) -> dict:
    """Everything from PRM to split on the embedded domain; returns (and writes) the counts."""
    from psrlm.engines import make_engine
    from psrlm.initdata.build import arith_splits, build_arith_data, data_dir, pool_blocks
    from psrlm.initdata.mcts import run_mcts
    from psrlm.m0 import ensure_m0
    from psrlm.prm import TokenClassificationPRM, load_prm
    from psrlm.runfolder import Run

    ic = cfg.initdata
    real = cfg.data.source == "files" or bool(ic.eft_problems)
    if (cfg.model.path or real) and not (ic.policy_path and ic.prm_path):
        raise ValueError("outside the tiny arith setup (model.path, initdata.eft_problems or data.source=files set), "
                         "set initdata.policy_path and initdata.prm_path")  # fmt: skip
    if real:
        return _build_eft_real(cfg, progress)
    if ic.teacher not in ("engine", "oracle"):
        raise ValueError(f"initdata.teacher={ic.teacher!r}: choose engine or oracle")
    out = out_dir(cfg)
    if not (data_dir(cfg) / "ift.jsonl").exists():
        build_arith_data(cfg)
    run = Run(cfg)
    splits = arith_splits(cfg)
    blocks = pool_blocks(cfg, splits["train"])
    m0 = ensure_m0(run)
    policy = Path(ic.policy_path) if ic.policy_path else ensure_policy(run, m0)
    engine = make_engine(cfg.engine, policy)
    counts: dict = {"policy": str(policy)}
    if ic.prm_path:
        prm = load_prm(ic.prm_format, ic.prm_path, ic)
        counts["prm"] = {"path": ic.prm_path, "format": ic.prm_format}
    else:
        prm_dir, info = ensure_prm(run, m0, engine, blocks["ift"][: ic.prm_problems])
        prm = TokenClassificationPRM(prm_dir, separator=ic.prm_step_separator)
        counts["prm"] = {"path": str(prm_dir), "format": "token_classification", "trainer": info.get("trainer"),
                         "rows": info.get("rows"), "final_loss": info.get("final_loss")}  # fmt: skip
    counts["prm"]["heldout_accuracy"] = prm_accuracy_on(prm, splits["test"], ic.seed)
    problems = blocks["eft_train"][: ic.mcts_problems]
    traces, pairs = run_mcts(problems, engine, prm, run.prompts, ic, out_dir=out / "mcts", progress=progress)
    by_id = {p.id: p for p in problems}
    counts["prm"]["search_accuracy"] = prm_accuracy_on_search(traces, by_id)
    counts["mcts"] = {
        "problems": len(traces),
        "iterations": sum(t.iterations for t in traces),
        "nodes": sum(t.nodes for t in traces),
        "answers_found": sum(t.answers for t in traces),
        "mean_max_depth": sum(t.max_depth for t in traces) / max(1, len(traces)),
        "gen_tokens": sum(t.gen_tokens for t in traces),
        "prm_scored": sum(t.prm_scored for t in traces),
        **mcts_dropped(traces),
        "candidate_pairs": len(pairs),
        "problems_without_pair": sum(t.pairs == 0 for t in traces),
    }
    oracle = OracleJudgeTeacher(by_id) if ic.teacher == "oracle" else None
    return judge_split_write(cfg, run, pairs, counts, oracle, by_id, progress)


def judge_split_write(cfg, run, pairs, counts: dict, oracle_teacher=None, by_id=None, progress: bool = True) -> dict:
    """Teacher judgments in both orders + filters, the train/test split, and every file and count written.
    `by_id` (arith problems) turns on the oracle's measurement of the kept pairs."""
    ic, out = cfg.initdata, out_dir(cfg)
    if oracle_teacher is not None:
        teacher = oracle_teacher
        kept, rejects, filt = judge_and_filter(pairs, teacher)
    else:
        from psrlm.initdata.teacher_cache import make_teacher

        with make_teacher(cfg, cfg.paths.run_dir, progress) as cached:
            teacher = EngineJudgeTeacher(cached, run.prompts, ic.judge_max_tokens)
            kept, rejects, filt = judge_and_filter(pairs, teacher)
            filt["teacher_cache_hits"] = cached.stats.cache_hits
    counts["teacher"] = teacher.name
    counts["filters"] = filt
    if by_id is not None:
        from psrlm.evaluate import pair_precision

        counts["oracle_pair_precision"] = pair_precision(kept, by_id)
    train_ex, test_ex = split_by_problem(kept, ic.eft_test, ic.seed)
    counts["split"] = {"train": len(train_ex), "test": len(test_ex)}
    write_jsonl(out / "eft_train.jsonl", train_ex)
    write_jsonl(out / "eft_test.jsonl", test_ex)
    write_jsonl(out / "eft_rejects.jsonl", rejects)
    write_json(out / "eft_counts.json", counts)
    return counts


def mcts_dropped(traces) -> dict:
    """What the tree search dropped instead of scoring or pairing it (mcts.py), summed over the trees."""
    return {"capped_candidates": sum(t.capped for t in traces), "context_stops": sum(t.context for t in traces),
            "prm_skipped": sum(t.prm_skipped for t in traces)}  # fmt: skip


def eft_problems_path(cfg) -> Path:
    ic = cfg.initdata
    if ic.eft_problems == "math":
        return cfg.paths.resolved_data_dir() / "train" / "math" / "train.jsonl"
    return Path(ic.eft_problems)


def read_eft_problems(cfg) -> tuple[list[Problem], dict]:
    """The problems MCTS searches outside arith, and how they were chosen: the split's EFT block when
    `data.split_eft` is set and they come from the split's source (eft_problems empty or the same file); else
    `initdata.mcts_problems` drawn with `initdata.seed` from the whole file (MATH train is sorted by subject: its
    first rows are all algebra). Questions of an evaluated test set are left out and counted."""
    from psrlm.initdata.pool import evaluated_test_sets, pool_path, split_active, split_source, test_overlap
    from psrlm.initdata.segment import read_rows

    ic = cfg.initdata
    tests = evaluated_test_sets(cfg)
    if split_active(cfg) and cfg.data.split_eft:
        if not ic.eft_problems or eft_problems_path(cfg).resolve() == pool_path(cfg).resolve():
            split = split_source(cfg, tests)
            return split.eft, {"from": "split", "split": split.counts["split"], "problems": len(split.eft)}
        log.warning("initdata.eft_problems=%s is not the split's source %s: the split's %d EFT problems stay unused",
                    ic.eft_problems, pool_path(cfg), cfg.data.split_eft)  # fmt: skip
    if not ic.eft_problems:
        raise ValueError("data.source=files without data.split_eft: name the problems MCTS searches in "
                         "initdata.eft_problems (math, or a question/answer JSONL)")  # fmt: skip
    path = eft_problems_path(cfg)
    if ic.eft_problems == "math":
        rows = read_rows(path, "math")
    else:  # the solution field is not needed here: read the question as both
        rows = read_rows(path, "jsonl", ic.question_field, ic.question_field, ic.answer_field, ic.id_field)
    problems = [Problem(r.id, r.question, r.answer or "", "eft_problems") for r in rows]
    overlap = test_overlap([p.question for p in problems], tests)
    if overlap:
        from psrlm.initdata.pool import normalise_question

        seen = {normalise_question(p.question) for ps in tests.values() for p in ps}
        problems = [p for p in problems if normalise_question(p.question) not in seen]
    picked = sorted(random.Random(f"eft-problems:{ic.seed}").sample(range(len(problems)),
                                                                    min(ic.mcts_problems, len(problems))))  # fmt: skip
    return [problems[i] for i in picked], {"from": str(path), "rows": len(rows), "test_overlap": overlap,
                                           "problems": len(picked), "seed": ic.seed}  # fmt: skip


def policy_context(cfg) -> int | None:
    """How long a prompt the MCTS policy reads: the servers' engine.max_model_len, or the model's own config."""
    if cfg.engine.kind != "hf":
        return cfg.engine.max_model_len
    import json

    config = Path(cfg.initdata.policy_path) / "config.json"
    return json.loads(config.read_text()).get("max_position_embeddings") if config.exists() else None


def prm_device(cfg) -> str:
    """initdata.prm_device resolved; a GPU the policy's own servers take is a ConfigError naming both, before any
    model loads (the PRM would share it with a server that holds most of its memory)."""
    from psrlm.configs import ConfigError
    from psrlm.hardware import pick_device

    ic, ec = cfg.initdata, cfg.engine
    device = pick_device(ic.prm_device)
    if not device.startswith("cuda") or ec.kind not in ("vllm", "sglang") or not ec.assign_gpus or ec.server_hosts:
        return device
    index = int(device.split(":")[1]) if ":" in device else 0
    servers = ic.policy_servers or ec.servers
    taken = servers * ec.tensor_parallel
    if index < taken:
        fix = (f"set initdata.policy_servers={servers - 1} and initdata.prm_device=cuda:{(servers - 1) * ec.tensor_parallel}"
               if servers > 1 else "give the PRM a GPU after the policy's, or initdata.prm_device=cpu")  # fmt: skip
        raise ConfigError(f"initdata.prm_device={ic.prm_device} is GPU {index}, which the policy's {servers} server(s) "
                          f"x engine.tensor_parallel {ec.tensor_parallel} take (GPUs 0-{taken - 1}): {fix}")  # fmt: skip
    return device


def _build_eft_real(cfg, progress: bool) -> dict:
    """The pipeline for a real policy and PRM on real problems: no oracle, so nothing is measured against one. Every
    check that can fail runs before the tree search: the problems, the PRM's device and context, and one request
    to an API teacher with the stage's own settings. The policy is served as `psrlm iterate` serves a model (in-process,
    or servers psrlm starts and stops: engine.kind), on `initdata.policy_servers` replicas."""
    from psrlm.engines import engine_for
    from psrlm.initdata.mcts import run_mcts
    from psrlm.initdata.teacher_cache import make_teacher
    from psrlm.prm import check_fits, load_prm
    from psrlm.runfolder import Run

    ic = cfg.initdata
    if ic.teacher != "engine":
        raise ValueError("outside arith the teacher must be a model: set initdata.teacher=engine")
    run, out = Run(cfg), out_dir(cfg)
    problems, chosen = read_eft_problems(cfg)
    if not problems:
        raise ValueError(f"no problems for the tree search ({chosen})")
    device = prm_device(cfg)
    fits = check_fits(ic, [p.question for p in problems], policy_context(cfg))
    if ic.teacher_engine.kind == "openai":  # an API can refuse the settings; an in-process teacher cannot
        with make_teacher(cfg, cfg.paths.run_dir, progress) as teacher:
            teacher.probe(GenParams(max_new_tokens=ic.judge_max_tokens))
    prm = load_prm(ic.prm_format, ic.prm_path, ic, device=device)
    policy = dataclasses.replace(cfg.engine, servers=ic.policy_servers or cfg.engine.servers)
    with engine_for(policy, ic.policy_path, run.layout.servers, "policy") as engine:
        traces, pairs = run_mcts(problems, engine, prm, run.prompts, ic, out_dir=out / "mcts", progress=progress)
    counts: dict = {"policy": ic.policy_path, "prm": {"path": ic.prm_path, "format": ic.prm_format, "device": device,
                                                      **fits},
                    "problems": chosen,
                    "mcts": {"problems": len(traces), "nodes": sum(t.nodes for t in traces),
                             "gen_tokens": sum(t.gen_tokens for t in traces), **mcts_dropped(traces),
                             "candidate_pairs": len(pairs),
                             "problems_without_pair": sum(t.pairs == 0 for t in traces)}}  # fmt: skip
    return judge_split_write(cfg, run, pairs, counts, progress=progress)


def compare_m1(cfg, n_eval: int = 0) -> dict:
    """M1 = SFT of M0 on IFT + EFT, once with the pipeline's EFT train split and once with as many oracle-built
    EFT examples; judge accuracy of both on the oracle EFT test set and on the pipeline's test split."""
    from psrlm import train
    from psrlm.engines import make_engine
    from psrlm.judge_eval import judge_accuracy, judge_accuracy_soft
    from psrlm.m0 import ensure_m0
    from psrlm.records import StepSolution
    from psrlm.runfolder import Run

    run = Run(cfg)
    out = out_dir(cfg)
    m0 = ensure_m0(run)
    ift = train.ift_rows(read_jsonl(run.layout.ift, StepSolution), run.prompts)
    pipeline = read_jsonl(out / "eft_train.jsonl", JudgeExample)
    if not pipeline:
        raise ValueError(f"{out / 'eft_train.jsonl'} is empty: run `psrlm data eft` first")
    oracle = read_jsonl(run.layout.eft("train"), JudgeExample)[: len(pipeline)]
    tests = {
        "oracle_eft_test": read_jsonl(run.layout.eft("test"), JudgeExample),
        "pipeline_eft_test": read_jsonl(out / "eft_test.jsonl", JudgeExample),
    }
    if n_eval:
        tests = {k: v[:n_eval] for k, v in tests.items()}
    result: dict = {"eft_train_examples": len(pipeline), "oracle_examples": len(oracle)}
    for name, eft in (("pipeline", pipeline), ("oracle", oracle)):
        model = out / "models" / f"M1-{name}-eft"
        if not (model / "psrlm_build.json").exists():
            train.sft(m0, ift + train.eft_rows(eft, run.prompts), run.seeded(cfg.sft), model)
        engine = make_engine(cfg.engine, model)
        result[name] = {
            t: {
                **judge_accuracy(ex, engine, run.prompts, cfg.search.judge_max_tokens),
                # the judge as `search.verdict: soft` reads it (P([[A]]) from logits, both orders): position bias
                # cancels, so this is the number that decides whether the self-rewarding search can use the judge
                "soft": judge_accuracy_soft(ex, engine, run.prompts) if hasattr(engine, "tokenizer") else None,
            }
            for t, ex in tests.items()
            if ex
        }
    write_json(out / "m1_comparison.json", result)
    return result
