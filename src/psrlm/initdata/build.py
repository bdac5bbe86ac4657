"""Writes the embedded domain's files under `<run_dir>/data/` and builds the tiny model.

    psrlm data all --config configs/demo.yaml     # problems, IFT, EFT
    psrlm model init --config configs/demo.yaml   # tokenizer + model from a config, cached by that config

The training pool is cut into disjoint blocks, so no problem is used for two purposes:
IFT gold solutions | EFT train | EFT test | fresh questions for the self-rewarding iterations (the rest).

`arith_solutions.jsonl` holds the training pool once more as a question/solution source in NuminaMath's layout
(id, problem, solution in prose, answer): what a real-data recipe (configs/paper-7b.yaml) reads as `data.questions`
when the tiny model, which knows only this domain, stands in for Qwen on a CPU (docs/paper-run.md, "Running the paper's
experiment").
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from psrlm.configs import Config
from psrlm.initdata.eft import build_eft
from psrlm.initdata.ift import arith_ift, gsm8k_ift
from psrlm.prompts import VARIANTS, judge_target
from psrlm.records import JudgeExample, Problem, StepSolution, read_jsonl, write_jsonl
from psrlm.run_layout import RunLayout
from psrlm.steps import render_steps
from psrlm.tasks.arith import Difficulty, free_form_solution, generate_split

log = logging.getLogger(__name__)

SPLITS = ("train", "test", "hard")


def data_dir(cfg: Config) -> Path:
    return RunLayout(cfg.paths.run_dir).data


def arith_splits(cfg: Config) -> dict[str, list[Problem]]:
    """Training pool and held-out test splits, disjoint by canonical problem hash."""
    a = cfg.arith
    easy = Difficulty(a.min_ops, a.max_ops, a.max_number)
    hard = Difficulty(a.hard_min_ops, a.hard_max_ops, a.hard_max_number)
    train = generate_split(a.seed, a.n_train, easy, "arith-train")
    seen = {p.meta["hash"] for p in train}
    test = generate_split(a.seed, a.n_test, easy, "arith-test", exclude=seen)
    seen |= {p.meta["hash"] for p in test}
    hard_test = generate_split(a.seed, a.n_test, hard, "arith-hard", exclude=seen)
    return {"train": train, "test": test, "hard": hard_test}


def pretrain_stream(
    cfg: Config, splits: dict[str, list[Problem]] | None = None
) -> tuple[list[Problem], list[Problem]]:
    """The raw problems M0 is pre-trained on (in-distribution and hard-style), disjoint from the train pool and the
    test splits by canonical hash."""
    a = cfg.arith
    seen = {p.meta["hash"] for split in (splits or arith_splits(cfg)).values() for p in split}
    easy = generate_split(a.seed, a.n_pretrain // 2, Difficulty(a.min_ops, a.max_ops, a.max_number), "arith-pre", seen)
    seen |= {p.meta["hash"] for p in easy}
    hard_diff = Difficulty(a.hard_min_ops, a.hard_max_ops, a.hard_max_number)
    return easy, generate_split(a.seed, a.n_pretrain - len(easy), hard_diff, "arith-prehard", seen)


def arith_valid(cfg: Config, splits: dict[str, list[Problem]]) -> list[Problem]:
    """A validation split (in-distribution, `arith.n_test` problems) for choices made by experiment, so the test
    split is never used to choose: disjoint from the train pool, both test splits and M0's pre-training stream."""
    a = cfg.arith
    easy, hard = pretrain_stream(cfg, splits)
    seen = {p.meta["hash"] for ps in (*splits.values(), easy, hard) for p in ps}
    return generate_split(a.seed, a.n_test, Difficulty(a.min_ops, a.max_ops, a.max_number), "arith-valid", seen)


def arith_valid_hard(cfg: Config, splits: dict[str, list[Problem]], valid: list[Problem]) -> list[Problem]:
    """The validation split at the hard split's difficulty (`arith.n_test` problems): choices meant to move the hard
    split are read here, never on it. Disjoint from every other split and M0's pre-training stream."""
    a = cfg.arith
    easy, hard = pretrain_stream(cfg, splits)
    seen = {p.meta["hash"] for ps in (*splits.values(), valid, easy, hard) for p in ps}
    diff = Difficulty(a.hard_min_ops, a.hard_max_ops, a.hard_max_number)
    return generate_split(a.seed, a.n_test, diff, "arith-valid-hard", seen)


def arith_levels(cfg: Config, splits: dict[str, list[Problem]], valid: list[Problem]) -> dict[str, list[Problem]]:
    # `valid`: every validation split (both levels of difficulty)
    """The difficulty ladder of `iterate.schedule: frontier` (arith.levels): `level<k>` question pools for k >= 1
    and a `level<k>_probe` for every level, level 0 (in-distribution) included, whose pool is the fresh questions.
    Disjoint by canonical hash from the training pool, both test splits, the validation split, M0's pre-training
    stream and each other: a probe is never a test split, and no level question was ever seen or held out."""
    a = cfg.arith
    if not a.levels:
        return {}
    easy, hard = pretrain_stream(cfg, splits)
    seen = {p.meta["hash"] for ps in (*splits.values(), valid, easy, hard) for p in ps}
    out: dict[str, list[Problem]] = {}
    ladder = [(a.min_ops, a.max_ops, a.max_number), *(tuple(v) for v in a.levels)]
    for k, (lo, hi, top) in enumerate(ladder):
        diff = Difficulty(lo, hi, top)
        if k:
            out[f"level{k}"] = generate_split(a.seed, a.level_pool, diff, f"arith-level{k}", seen)
            seen |= {p.meta["hash"] for p in out[f"level{k}"]}
        out[f"level{k}_probe"] = generate_split(a.seed, a.level_probe, diff, f"arith-probe{k}", seen)
        seen |= {p.meta["hash"] for p in out[f"level{k}_probe"]}
    return out


def pool_blocks(cfg: Config, train: list[Problem]) -> dict[str, list[Problem]]:
    d = cfg.data
    n_eft_problems = max(1, min(d.eft_train, len(train) // 4))
    n_eft_test_problems = max(1, min(d.eft_test, len(train) // 8))
    edges = [0, d.ift_problems]
    edges.append(edges[-1] + n_eft_problems)
    edges.append(edges[-1] + n_eft_test_problems)
    if edges[-1] >= len(train):
        raise ValueError(
            f"arith.n_train={len(train)} is too small for data.ift_problems={d.ift_problems} plus the EFT blocks "
            f"({n_eft_problems} + {n_eft_test_problems} problems) and leaves no fresh questions for the iterations"
        )
    return {
        "ift": train[edges[0] : edges[1]],
        "eft_train": train[edges[1] : edges[2]],
        "eft_test": train[edges[2] : edges[3]],
        "fresh": train[edges[3] :],
    }


def build_arith_data(cfg: Config) -> dict[str, Path]:
    """Write problems, IFT and EFT files; returns name -> path. Deterministic in the config, so reruns agree: a
    file that already holds what would be written is left as it is."""
    out = data_dir(cfg)
    paths: dict[str, Path] = {}
    splits = arith_splits(cfg)
    valid = arith_valid(cfg, splits)
    valid_hard = arith_valid_hard(cfg, splits, valid)
    ladder = arith_levels(cfg, splits, valid + valid_hard)
    for name, problems in {**splits, "valid": valid, "valid_hard": valid_hard, **ladder}.items():
        paths[f"arith_{name}"] = out / f"arith_{name}.jsonl"
        write_jsonl(paths[f"arith_{name}"], problems, unless_same=True)
    paths["solutions"] = out / "arith_solutions.jsonl"
    rows = [{"id": p.id, "problem": p.question, "solution": free_form_solution(p), "answer": p.answer}
            for p in splits["train"]]  # fmt: skip
    write_jsonl(paths["solutions"], rows, unless_same=True)
    blocks = pool_blocks(cfg, splits["train"])
    paths["fresh"] = out / "fresh_questions.jsonl"
    write_jsonl(paths["fresh"], blocks["fresh"], unless_same=True)

    ift = arith_ift(blocks["ift"])
    for sol, p in zip(ift, blocks["ift"], strict=True):
        sol.meta["question"] = p.question
    if cfg.data.gsm8k_ift:
        gsm_path = cfg.paths.resolved_data_dir() / "train" / "gsm8k" / "train.jsonl"
        g_problems, g_solutions = gsm8k_ift(gsm_path, cfg.data.gsm8k_ift)
        for sol, p in zip(g_solutions, g_problems, strict=True):
            sol.meta["question"] = p.question
        ift += g_solutions
    paths["ift"] = out / "ift.jsonl"
    write_jsonl(paths["ift"], ift, unless_same=True)

    paths["eft_train"] = out / "eft_train.jsonl"
    write_jsonl(
        paths["eft_train"], build_eft(blocks["eft_train"], cfg.data.eft_train, cfg.arith.seed), unless_same=True
    )
    paths["eft_test"] = out / "eft_test.jsonl"
    write_jsonl(
        paths["eft_test"], build_eft(blocks["eft_test"], cfg.data.eft_test, cfg.arith.seed + 1), unless_same=True
    )
    return paths


def tokenizer_corpus(cfg: Config) -> list[str]:
    """Domain text plus every template, so prompts tokenize into few, stable tokens."""
    out = data_dir(cfg)
    texts: list[str] = []
    train = read_jsonl(out / "arith_train.jsonl", Problem)
    for p in train:
        texts += [p.question, free_form_solution(p), render_steps(p.meta["steps"])]
    for ex in read_jsonl(out / "eft_train.jsonl", JudgeExample)[:500]:
        texts.append(judge_target(ex.explanation, ex.verdict))
    for sol in read_jsonl(out / "ift.jsonl", StepSolution)[:200]:
        texts.append(render_steps(sol.steps))
    for prompts in VARIANTS.values():
        for p in train[:50]:
            texts.append(prompts.step_prompt(p.question, p.meta["steps"][:2]))
            texts.append(prompts.judge_prompt(p.question, p.meta["steps"][:1], p.meta["steps"][1], "x"))
            texts.append(prompts.score_prompt(p.question, render_steps(p.meta["steps"])))
    return texts


def init_model_dir(cfg: Config) -> Path:
    from psrlm.tiny import config_key

    key = config_key(asdict(cfg.model), asdict(cfg.arith))
    return RunLayout(cfg.paths.run_dir).init_model(key)


def init_tiny_model(cfg: Config) -> Path:
    """Tokenizer + random-weight model for `cfg.model`, reused when a folder for the same config exists."""
    from psrlm.tiny import build_model, count_parameters, save_model, train_tokenizer

    target = init_model_dir(cfg)
    if (target / "psrlm_build.json").exists():
        log.info("tiny model for this config already built: %s", target)
        return target
    if not (data_dir(cfg) / "arith_train.jsonl").exists():
        build_arith_data(cfg)
    tok = train_tokenizer(tokenizer_corpus(cfg), cfg.model.vocab_size, cfg.model.max_position)
    model = build_model(cfg.model, tok)
    info = {"model": asdict(cfg.model), "arith": asdict(cfg.arith), "parameters": count_parameters(model)}
    save_model(model, tok, target, info)
    return target
