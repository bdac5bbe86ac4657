"""The run's data as Hugging Face dataset repos: IFT, EFT, PPD pairs, search traces, evaluation samples.

One repo folder per kind, because each is used on its own (a researcher takes the PPD pairs to train with TRL, or
the EFT items to test a judge), and a kind's parts are its configs: the PPD repo has one config per method and
iteration (`psrlm_it2`, `srlm_it2`, ...), the eval repo one per model with a split per benchmark. Every function
returns (tables, card metadata, card body) for `tables.write_dataset`; `kinds` says which exist.
"""

from __future__ import annotations

import re
from pathlib import Path

from psrlm.export.run_folder import RunFolder
from psrlm.export.tables import Table, record_features, to_row
from psrlm.folders import flatten
from psrlm.records import JudgeExample, PreferencePair, ScoreExample, SearchTrace, StepSolution, read_json, read_jsonl

TAGS = ["psrlm", "process-based-self-rewarding", "math", "step-by-step"]
PAPER = "[Process-based Self-Rewarding Language Models](https://arxiv.org/abs/2503.03746) (Zhang et al., 2025)"
META = ("`meta` is the record's free-form `meta` dict as JSON text (`json.loads(row['meta'])`): nested dicts have no "
        "single parquet schema, and JSON text gives every value back exactly as the run wrote it. Typed columns "
        "named after meta fields are copies, for filtering.")  # fmt: skip


def _columns(features: dict, notes: dict[str, str]) -> str:
    lines = ["| column | type | what it is |", "| --- | --- | --- |"]
    for name, feature in features.items():
        kind = getattr(feature, "dtype", None) or f"list of {feature.feature.dtype}"
        lines.append(f"| `{name}` | {kind} | {notes.get(name, '')} |")
    return "\n".join(lines)


def _read(files: list[Path], cls: type) -> list:
    return [r for f in files for r in read_jsonl(f, cls)]


def _prompts(run: RunFolder):
    from psrlm.prompts import get_prompts

    p = run.section("prompts")
    return get_prompts(p.get("variant", "compact"), bool(p.get("verdict_first")))


def _data_settings(run: RunFolder, files: list[Path]) -> dict:
    from psrlm.records import sha256_file

    keep = {k: v for k, v in run.config.items() if k in ("data", "prompts") or (k == "arith" and run.arith)}
    return {**flatten(keep), "files": {str(f): sha256_file(f) for f in files}}


# ------------------------------------------------------------------------------------------------ IFT


def ift(run: RunFolder) -> tuple[list[Table], dict, str] | None:
    from datasets import Value

    from psrlm.train import ift_rows

    files = [f for f in run.data_files()["ift"] if f.exists()]
    if not files:
        return None
    solutions = _read(files, StepSolution)
    text = ift_rows(solutions, _prompts(run))
    features = {**record_features(StepSolution), "question": Value("string"), "prompt": Value("string"),
                "completion": Value("string")}  # fmt: skip
    rows = [{**to_row(s), "question": s.meta.get("question"), **t} for s, t in zip(solutions, text, strict=True)]
    notes = {"problem_id": "the problem the solution belongs to", "steps": "the solution, one string per step "
             "(without the `Step n:` labels)", "final_answer": "the `\\boxed{}` answer, if any",
             "meta": "JSON text (see below)", "question": "copy of `meta.question`",
             "prompt": "the solve prompt SFT trained on (the run's prompts)",
             "completion": "the solution as SFT trained on it (`Step 1: ...`; TRL appends EOS)"}  # fmt: skip
    body = f"""# Instruction fine-tuning (IFT) data

Worked solutions split into steps without changing their text: the IFT half of the SFT that makes M1 from M0 in
{PAPER}. One row is one solution (psrlm's `StepSolution` record); `prompt` + `completion` is the exact text the
run's SFT trained on, in TRL's prompt-completion format.

{_columns(features, notes)}

{META}
"""
    return (
        [Table("default", "train", rows, features, _data_settings(run, files))],
        {"task_categories": ["text-generation"]},
        body,
    )


# ------------------------------------------------------------------------------------------------ EFT


def eft(run: RunFolder) -> tuple[list[Table], dict, str] | None:
    from datasets import Value

    from psrlm.prompts import score_target
    from psrlm.train import eft_rows

    prompts = _prompts(run)
    files = run.data_files()
    tables = []
    text_features = {"prompt": Value("string"), "completion": Value("string")}
    pairwise = {**record_features(JudgeExample), **text_features}
    settings = _data_settings(run, [f for f in files["eft_train"] + files["eft_test"] if f.exists()])
    for split in ("train", "test"):
        present = [f for f in files[f"eft_{split}"] if f.exists()]
        if present:
            items = _read(present, JudgeExample)
            rows = [{**to_row(e), **t} for e, t in zip(items, eft_rows(items, prompts), strict=True)]
            tables.append(Table("pairwise", split, rows, pairwise, settings))
    scoring = {**record_features(ScoreExample), **text_features}
    present = [f for f in files["srlm_eft"] if f.exists()]
    if present:
        items = _read(present, ScoreExample)
        rows = [{**to_row(e), "prompt": prompts.score_prompt(e.question, e.response),
                 "completion": score_target(e.explanation, e.score)} for e in items]  # fmt: skip
        tables.append(Table("scoring", "train", rows, scoring, _data_settings(run, present)))
    if not tables:
        return None
    notes = {"question": "the problem", "prev_steps": "the accepted steps so far", "step_a": "candidate A",
             "step_b": "candidate B", "explanation": "why one step is better", "verdict": "`A` or `B`: the better step",
             "meta": "JSON text (see below), e.g. the wrong step's error kind", "prompt": "the judge prompt "
             "(Fig. 5) SFT trained on", "completion": "explanation + `[[A]]`/`[[B]]` as SFT trained on it"}  # fmt: skip
    score_notes = {"question": "the problem", "response": "a whole solution", "explanation": "the justification",
                   "score": "0-5 on Yuan et al.'s additive scale", "meta": "JSON text (see below)",
                   "prompt": "the scoring prompt SFT trained on", "completion": "justification + `Score: X`"}  # fmt: skip
    body = f"""# Evaluation fine-tuning (EFT) data

Judge training data for {PAPER}. Config `pairwise` (psrlm's `JudgeExample`): one row is a question, the steps
so far, two candidate next steps and which one is better, with an explanation; `train` is the EFT half of the SFT
that makes the PSRLM M1, `test` is held out and measures judge accuracy (in both A/B orders). Config `scoring`
(`ScoreExample`, if the run had the SRLM baseline): one row is a whole solution scored 0-5, what the SRLM M1 is
trained on. `prompt` + `completion` is the exact text SFT trained on.

`pairwise`:

{_columns(pairwise, notes)}

`scoring`:

{_columns(scoring, score_notes)}

{META}
"""
    return tables, {"task_categories": ["text-generation", "text-classification"]}, body


# ------------------------------------------------------------------------------------------------ PPD


def ppd_rows(pairs: list[PreferencePair]) -> list[dict]:
    """Each pair as TRL's preference row (train.dpo_rows: prompt/chosen/rejected + where EOS stays), the record's
    fields, and copies of its stable meta fields."""
    from psrlm.train import dpo_rows

    return [{**to_row(p), **trl, **{k: p.meta.get(k) for k in ("problem_id", "iteration", "step", "chosen_score",
                                                                  "rejected_score")}}
            for p, trl in zip(pairs, dpo_rows(pairs), strict=True)]  # fmt: skip


def ppd_features() -> dict:
    from datasets import Value

    return {**record_features(PreferencePair), "chosen_final": Value("bool"), "rejected_final": Value("bool"),
            "problem_id": Value("string"), "iteration": Value("int64"), "step": Value("int64"),
            "chosen_score": Value("float64"), "rejected_score": Value("float64")}  # fmt: skip


def _search_settings(folder: Path) -> dict:
    stamp = folder / "psrlm_settings.json"
    return read_json(stamp).get("settings", {}) if stamp.exists() else {}


def ppd(run: RunFolder) -> tuple[list[Table], dict, str] | None:
    tables = []
    for s in run.searches():
        pairs_file = s.dir / "pairs.jsonl"
        if pairs_file.exists():
            pairs = read_jsonl(pairs_file, PreferencePair)
            settings = {**_search_settings(s.dir), "trained_into": s.trained or "", "sha256_as_trained": s.hash_ok}
            tables.append(Table(s.config, "train", ppd_rows(pairs), ppd_features(), settings))
    if not any(t.rows for t in tables):
        return None
    notes = {"prompt": "question + the accepted steps so far + the next step's label", "chosen": "the best "
             "candidate step by the model's own pairwise judgments", "rejected": "the worst candidate",
             "meta": "JSON text (see below)", "chosen_final": "the chosen step ends the solution (`\\boxed{}`): "
             "only then does DPO keep TRL's EOS after it", "rejected_final": "the same for the rejected step",
             "problem_id": "copy of `meta.problem_id`", "iteration": "n of M_n+1, which trains on it",
             "step": "1-based index of the step (PSRLM; empty for SRLM's whole solutions)",
             "chosen_score": "wins of the chosen step (SRLM: its mean score)", "rejected_score": "the same, rejected"}  # fmt: skip
    body = f"""# Process preference data (PPD)

Step-level preference pairs of {PAPER}: at each step of a solution the model M_n samples candidate next steps,
judges every pair of them itself, and the best and worst become one pair; step-wise DPO of M_n on these pairs makes
M_n+1. One config per method and iteration: `psrlm_it2` trains psrlm-M2, `psrlm_it3` psrlm-M3, and so on; `srlm_itN`
holds the SRLM baseline's whole-solution pairs. One row is one pair (psrlm's `PreferencePair`); `prompt`, `chosen`,
`rejected` are TRL's preference format, ready for `DPOTrainer`. A config's YAML settings say which model trained on
it (`trained_into`) and whether the file still had the sha256 that model's manifest recorded. A search that made no
pairs has no config here (its traces are in the traces repo).

{_columns(ppd_features(), notes)}

{META} Rebuild the records with `PreferencePair(row['prompt'], row['chosen'], row['rejected'], json.loads(row['meta']))`.
"""
    return tables, {"task_categories": ["text-generation"]}, body


# ------------------------------------------------------------------------------------------------ traces


def traces(run: RunFolder) -> tuple[list[Table], dict, str] | None:
    tables = []
    for s in run.searches():
        rows = [to_row(t) for t in read_jsonl(s.dir / "traces.jsonl", SearchTrace)]
        tables.append(Table(s.config, "train", rows, record_features(SearchTrace), _search_settings(s.dir)))
    for name, folder in run.eval_dirs().items():
        tts = folder / "tts" / "traces.jsonl"
        if tts.exists():
            rows = [to_row(t) for t in read_jsonl(tts, SearchTrace)]
            tables.append(
                Table(f"tts_{name}", "train", rows, record_features(SearchTrace), _search_settings(tts.parent))
            )
    if not any(t.rows for t in tables):
        return None
    notes = {"problem_id": "the problem searched", "steps": "the solution the search kept",
             "rounds": "JSON text: one object per round (candidates, every judgment `[a, b, verdict, P(A)]`, scores, "
             "the action taken, best/worst)", "rollbacks": "ties that discarded the previous step",
             "ties": "rounds whose scores all tied", "judge_calls": "pairwise judgments made",
             "no_verdicts": "judgments with no readable verdict", "gen_tokens": "tokens generated (candidates + judge)",
             "capped": "candidates dropped unjudged (cut at the token cap)", "rounds_used": "rounds run",
             "finished": "reached a `\\boxed{}` answer", "stop_reason": "`answer`, `max_steps` or `round_cap`",
             "final_answer": "the boxed answer, if any"}  # fmt: skip
    body = f"""# Search traces

How each preference pair of {PAPER} was made: one row is one problem's step search (psrlm's `SearchTrace`), with
every round's candidates and the model's judgments of them. Configs as in the PPD repo (`psrlm_it2`: the search of
psrlm-M1 whose pairs train psrlm-M2; `srlm_itN`: the SRLM baseline's sampling and scoring); `tts_<model>`: the same
search at inference (test-time scaling, paper Table 5).

{_columns(record_features(SearchTrace), notes)}

`rounds` is JSON text for the same reason as `meta` in the other repos: its objects differ by round kind.
"""
    return tables, {"task_categories": ["text-generation"]}, body


# ------------------------------------------------------------------------------------------------ eval


def evaluation(run: RunFolder) -> tuple[list[Table], dict, str] | None:
    from psrlm.evaluate import SolveResult

    tables = []
    for name, folder in run.eval_dirs().items():
        settings = _search_settings(folder)
        for bench in sorted(folder.glob("*.jsonl")):
            rows = [to_row(r) for r in read_jsonl(bench, SolveResult)]
            split = re.sub(r"\W", "_", bench.stem)  # a split name is \w+ on the Hub
            tables.append(Table(name, split, rows, record_features(SolveResult), settings))
    if not any(t.rows for t in tables):
        return None
    notes = {"problem_id": "the benchmark problem", "prompt": "what the model was given (M0: with 3 solved "
             "examples before it)", "response": "its greedy answer", "extracted": "the answer read from it",
             "gold": "the reference answer", "correct": "graded equal (Qwen2.5-Math rules)", "steps": "steps written",
             "step_chars": "mean characters per step", "tokens": "tokens generated",
             "finish_reason": "`stop`, `length` (hit the token cap) or `context` (prompt too long: skipped, wrong)"}  # fmt: skip
    body = f"""# Evaluation samples

Every greedy answer behind the accuracies of {PAPER}'s Table 1 for this run: one config per model (`M0`,
`psrlm-M1`, ...), one split per benchmark (`arith_test`, `arith_hard` on the embedded domain; `gsm8k`, `math500`, ...
on real data). One row is one problem (psrlm's `SolveResult`). The config's YAML settings are what the results belong
to (the model's sha256, engine precision, prompts, token cap, grading rule).

{_columns(record_features(SolveResult), notes)}
"""
    return tables, {"task_categories": ["text-generation"]}, body


KINDS = {"ift": ift, "eft": eft, "ppd": ppd, "traces": traces, "eval": evaluation}
