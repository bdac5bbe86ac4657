"""Where a run reads and writes, and what it trains and searches on: the `paths`, `arith` and `data` sections."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from psrlm.configs.checks import Rule, at_least

REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class PathsConfig:
    """Where data is read from and where a run writes.

    data_dir: folder holding `benchmarks/` and `train/` (the shared data). Empty means `$PSRLM_DATA`, else
        `../shared/data` next to the repository.
    run_dir: every artifact of a run (problems, models, pairs, manifests, report) goes under this folder.
    """

    data_dir: str = ""
    run_dir: str = "runs/demo"

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        if os.environ.get("PSRLM_DATA"):
            return Path(os.environ["PSRLM_DATA"]).expanduser()
        return REPO_ROOT.parent / "shared" / "data"

    def rules(self) -> list[Rule]:
        return [("run_dir", bool(self.run_dir.strip()), "must name a folder")]


@dataclass
class ArithConfig:
    """The embedded arithmetic word-problem domain (tasks/arith.py).

    seed: master seed; every split is derived from it deterministically.
    n_train: problems in the training pool (IFT gold solutions, EFT items, fresh questions per iteration).
    n_test: problems in each held-out test split.
    min_ops / max_ops: operations per in-distribution problem (each op is one or two solution steps).
    max_number: largest number written in an in-distribution problem.
    hard_min_ops / hard_max_ops / hard_max_number: the same for the harder held-out split.
    n_pretrain: raw problems (half in-distribution, half hard-style) whose free-form solutions pre-train the base
        model M0; disjoint from every split by canonical hash.
    pretrain_step_share: share of those problems whose worked solution is written as numbered "Step n:" lines
        instead of prose (0 = prose only). Measured: a model pre-trained on prose alone computes 0.93 of its
        additions right in prose and 0.19 in the step layout the loop uses, and IFT does not restore them; real
        math corpora carry both layouts.
    levels: a difficulty ladder above the in-distribution level for `iterate.schedule: frontier`, easiest first,
        each [min_ops, max_ops, max_number] (e.g. [[3, 5, 30], [4, 6, 40], [5, 7, 50]]); level 0 is the
        in-distribution pool (data/fresh_questions.jsonl). Each level above it gets a pool of `level_pool`
        questions (data/arith_level<k>.jsonl) and every level a probe of `level_probe` problems
        (data/arith_level<k>_probe.jsonl) that measures the current model's pass rate; all disjoint from the training
        pool, M0's pre-training stream and every held-out split by canonical hash. Empty = no ladder.
    """

    seed: int = 0
    n_train: int = 4000
    n_test: int = 200
    min_ops: int = 2
    max_ops: int = 4
    max_number: int = 20
    hard_min_ops: int = 5
    hard_max_ops: int = 8
    hard_max_number: int = 60
    n_pretrain: int = 20000
    pretrain_step_share: float = 0.0
    levels: list[list[int]] = field(default_factory=list)
    level_pool: int = 2000
    level_probe: int = 100

    def rules(self) -> list[Rule]:
        return [
            *at_least(self, 0, "n_train n_pretrain"),
            ("n_test", self.n_test >= 1,
             "must be >= 1: each held-out split is evaluated, and nothing is no measurement"),
            ("pretrain_step_share", 0 <= self.pretrain_step_share <= 1, "must be in [0, 1]"),
            ("min_ops", self.min_ops >= 1, "must be >= 1"),
            ("min_ops", self.min_ops <= self.max_ops, f"must be <= arith.max_ops ({self.max_ops})"),
            ("hard_min_ops", self.hard_min_ops >= 1, "must be >= 1"),
            ("hard_min_ops", self.hard_min_ops <= self.hard_max_ops,
             f"must be <= arith.hard_max_ops ({self.hard_max_ops})"),
            ("max_number", self.max_number >= 2, "must be >= 2"),
            ("hard_max_number", self.hard_max_number >= 2, "must be >= 2"),
            ("levels", all(len(v) == 3 and 1 <= v[0] <= v[1] and v[2] >= 2 for v in self.levels),
             "must list [min_ops, max_ops, max_number] per level, 1 <= min_ops <= max_ops, max_number >= 2"),
            *at_least(self, 1, "level_pool level_probe"),
        ]  # fmt: skip


@dataclass
class DataConfig:
    """What a run trains and searches on.

    source: "arith" = the embedded domain, generated from `arith:` and the four counts below; "files" = a real run
        on the files named below (what `psrlm data ift|eft` write, or your own), with `model.path` as M0.

    arith only:
    ift_problems: arith training-pool problems whose gold solutions become IFT examples.
    eft_train: EFT (judge) examples for training; eft_test: held-out EFT examples for judge accuracy
        (the paper holds out 500).
    gsm8k_ift: GSM8K train solutions added to IFT (0 = none; -1 = all). They need no teacher: one line per step.
    eft_source: "synthetic" = the gold next step against the same step with a made-up error (arithmetic slip, wrong
        operand, ...); "policy" = the paper's way: candidate steps sampled from the IFT policy (M0 after IFT) at the
        search temperature, one right and one wrong per item by the oracle (standing in for PRM + teacher), so the
        errors are the ones the model makes (initdata/eft.py: build_policy_eft).
    eft_policy_width: candidates sampled per policy-EFT round.

    files only (a path given here must exist; relative paths are read from the current folder):
    ift_files: StepSolution JSONL files with meta.question (`psrlm data ift` writes
        <run>/initdata/ift_segmented.jsonl, or ift_gsm8k.jsonl).
    eft_train_file / eft_test_file: JudgeExample JSONL (`psrlm data eft` writes <run>/initdata/eft_train.jsonl and
        eft_test.jsonl); the test file gives the judge accuracy of Table 3 and the Appendix B items.
    srlm_eft_file: ScoreExample JSONL (question, response, explanation, score 0-5) that teaches the SRLM baseline's
        M1 to score solutions; needed when iterate.methods has srlm.
    questions: the pool of fresh questions the iterations draw from: "math" (MATH train under paths.data_dir),
        "gsm8k" (GSM8K train), or a JSONL path holding Problem records or rows with question_field / answer_field
        (/ id_field, else the line number). Overlaps with the evaluated test sets and with the IFT/EFT questions
        are removed and counted (initdata/pool.py).
    question_field / answer_field / id_field: column names of such a JSONL (NuminaMath-style: problem / answer).
    seed: shuffles the pool before `iterate.questions` cuts it into disjoint blocks (and draws the split below).
    split_ift / split_eft: the paper's data flow from one source (initdata/pool.py: split_source). `data.questions`
        loses its test-set overlaps and repeats and is shuffled with `seed`; its first `split_ift` questions are the
        rows `psrlm data ift` segments, the next `split_eft` the problems `psrlm data eft` searches, and only the
        rest is the iterations' pool: the three are disjoint by construction, and a row the teacher fails to
        segment is never returned to the pool. 0 = no block (IFT / EFT from another file; the pool is the whole
        source less the questions of the IFT / EFT files). `psrlm plan` and `psrlm iterate --dry-run` print the
        sizes, and a source too small for split_ift + split_eft + sum(iterate.questions) stops with one line.
    """

    source: str = "arith"
    ift_problems: int = 2000
    eft_train: int = 2000
    eft_test: int = 500
    gsm8k_ift: int = 0
    eft_source: str = "synthetic"
    eft_policy_width: int = 6
    ift_files: list[str] = field(default_factory=list)
    eft_train_file: str = ""
    eft_test_file: str = ""
    srlm_eft_file: str = ""
    questions: str = "math"
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str = "id"
    seed: int = 0
    split_ift: int = 0
    split_eft: int = 0

    def rules(self) -> list[Rule]:
        files = self.source == "files"
        return [
            ("source", self.source in ("arith", "files"), "choose arith (the embedded domain) or files (a real run)"),
            *at_least(self, 0, "ift_problems eft_train eft_test split_ift split_eft"),
            ("split_ift", files or not (self.split_ift or self.split_eft),
             "splits a real run's question source: needs data.source=files"),
            ("gsm8k_ift", self.gsm8k_ift >= -1, "must be >= 0, or -1 for all"),
            ("eft_source", self.eft_source in ("synthetic", "policy"), "choose synthetic or policy"),
            ("eft_source", self.eft_source == "synthetic" or self.source == "arith",
             "policy EFT needs the arith oracle"),
            ("eft_policy_width", self.eft_policy_width >= 2, "must be >= 2"),
            *((k, not files or bool(getattr(self, k)), "must name a file when data.source=files")
              for k in ("ift_files", "eft_train_file", "eft_test_file", "questions")),
        ]  # fmt: skip
