"""Evaluation: greedy accuracy per benchmark, judge accuracy (with A/B-swap consistency), step statistics,
test-time scaling vs greedy, and the Appendix B comparison of step-wise pairwise judging with solution scoring.

    psrlm eval --config configs/demo.yaml --model runs/demo/models/psrlm-M4 --benchmarks arith,gsm8k --limit 50

Greedy accuracy uses the solve prompt (Fig. 4) and grading.py (Qwen2.5-Math answer parsing + math-verify, in a
process pool with timeouts). Judge accuracy asks each EFT test item in both A/B orders: accuracy counts every
judgment, consistency the items whose two verdicts agree (Table 3). On arith the oracle also labels each
generated step, giving step precision. Benchmark runs append one JSON line per problem and resume.

Judge accuracy and Appendix B (how well a model judges) are measured in judge_eval.py; here: solving (greedy
accuracy, step statistics, test-time search vs greedy), pair precision and teacher-forced arithmetic.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path

from psrlm.answers import extract_answer
from psrlm.engines.base import Engine, GenParams
from psrlm.grading import is_equiv
from psrlm.prompts import Prompts
from psrlm.records import JudgeExample, PreferencePair, Problem, StepSolution
from psrlm.steps import render_steps, split_steps

log = logging.getLogger(__name__)


@dataclass
class SolveResult:
    problem_id: str
    prompt: str
    response: str
    extracted: str | None
    gold: str
    correct: bool
    steps: int
    step_chars: float
    tokens: int = 0  # generated tokens of the response
    finish_reason: str = ""  # the engine's: "stop", "length" (hit the token cap), "context" (prompt too long: skipped)


FEW_SHOT_SEP = "\n\n\n"


def solve_greedy(
    problems: list[Problem],
    engine: Engine,
    prompts: Prompts,
    max_tokens: int = 256,
    grader=None,
    few_shot: list[StepSolution] | None = None,
) -> list[SolveResult]:
    """Greedy solutions. `few_shot` solved examples are prepended (how a base model that never saw the format is
    measured); generation then also stops at the separator that would start another example."""
    prefix = "".join(
        prompts.solve_prompt(s.meta["question"]) + render_steps(s.steps) + FEW_SHOT_SEP for s in few_shot or []
    )
    texts = [prompts.solve_prompt(p.question) for p in problems]
    stop = (FEW_SHOT_SEP,) if few_shot else ()
    outs = engine.generate([prefix + t for t in texts], GenParams(n=1, max_new_tokens=max_tokens, stop=stop))
    responses = [o[0].text for o in outs]
    tokens = [o[0].tokens for o in outs]
    reasons = [o[0].finish_reason for o in outs]
    extracted = [extract_answer(r) for r in responses]
    if grader is not None:
        correct = grader.grade([(p.answer, e) for p, e in zip(problems, extracted, strict=True)])
    else:
        correct = [is_equiv(p.answer, e) for p, e in zip(problems, extracted, strict=True)]
    results = []
    for p, prompt, r, e, ok, t, why in zip(
        problems, texts, responses, extracted, correct, tokens, reasons, strict=True
    ):
        steps = split_steps(r)
        mean_len = statistics.mean(len(s) for s in steps) if steps else 0.0
        results.append(SolveResult(p.id, prompt, r, e, p.answer, bool(ok), len(steps), mean_len, t, why))
    return results


def accuracy_summary(results: list[SolveResult]) -> dict:
    """Accuracy plus the step statistics of Tables 4, 7, 8: steps per solution and step length (characters, and
    tokens as response tokens / steps). Of no results every share and mean is None (null), never 0."""
    n = len(results)
    stepped = [r for r in results if r.steps]
    return {
        "n": n,
        "accuracy": sum(r.correct for r in results) / n if n else None,
        "mean_steps": statistics.mean(r.steps for r in results) if results else None,
        "mean_step_chars": statistics.mean(r.step_chars for r in results) if results else None,
        "mean_step_tokens": statistics.mean(r.tokens / r.steps for r in stepped) if stepped else None,
        "mean_tokens": statistics.mean(r.tokens for r in results) if results else None,
        "no_answer_rate": sum(r.extracted is None for r in results) / n if n else None,
        # counted as wrong, and reported: a prompt too long for the context is never cut to fit
        "context_skipped": sum(r.finish_reason == "context" for r in results),
        "hit_token_cap": sum(r.finish_reason == "length" for r in results),
    }


# ------------------------------------------------------------------------------------------- benchmarks


def evaluate_benchmarks(
    benchmarks: dict[str, list[Problem]],
    engine: Engine,
    prompts: Prompts,
    out_dir: Path,
    max_tokens: int = 512,
    few_shot: list[StepSolution] | None = None,
    chunk: int = 64,
    progress: bool = True,
    desc: str = "eval",
    include_percentage: bool = True,
) -> dict[str, dict]:
    """Greedy accuracy and step statistics per benchmark; resumable.

    Writes `<out_dir>/<benchmark>.jsonl` (one SolveResult per problem: prompt, response, extracted answer, gold,
    correct, steps, tokens), appended a chunk at a time, and `<out_dir>/summary.json` (over every result on disk,
    rewritten atomically after each benchmark). A rerun skips the problems already on disk. Returns the summary
    of exactly the problems passed in. Every summary records the grading rule used (`include_percentage`)."""
    from psrlm.folders import move_aside
    from psrlm.grading import Grader
    from psrlm.progress import bar as progress_bar
    from psrlm.records import JsonlAppender, read_json, write_json

    out_dir = Path(out_dir)
    summary_path = out_dir / "summary.json"
    summaries: dict = read_json(summary_path) if summary_path.exists() else {}
    total = sum(len(v) for v in benchmarks.values())
    bar = progress_bar(total, desc, "problem", enabled=progress)
    asked: dict[str, dict] = {}
    with Grader(include_percentage=include_percentage) as grader:
        for name, problems in benchmarks.items():
            path = out_dir / f"{name}.jsonl"
            if path.exists() and _stale_rows(path, problems, prompts):
                moved = move_aside(path, out_dir.parent)
                summaries.pop(name, None)
                log.warning("%s answers other questions or golds than %s has now: recomputing (old rows in %s)",
                            path, name, moved)  # fmt: skip
            with JsonlAppender(path, SolveResult) as out:
                done = {r.problem_id: r for r in out.existing()}
                bar.update(sum(p.id in done for p in problems))
                todo = [p for p in problems if p.id not in done]
                for start in range(0, len(todo), chunk):
                    batch = todo[start : start + chunk]
                    results = solve_greedy(batch, engine, prompts, max_tokens, grader=grader, few_shot=few_shot)
                    out.append(*results)
                    done.update((r.problem_id, r) for r in results)
                    bar.update(len(batch))
                    bar.set_postfix_str(f"{name} acc {sum(r.correct for r in done.values()) / len(done):.3f}")
            grading = {"include_percentage": include_percentage}
            asked[name] = {**accuracy_summary([done[p.id] for p in problems]), "grading": grading}
            # summary.json describes every result on disk, so a quick rerun with a smaller --limit never
            # shrinks what the report shows; the return value describes exactly the problems asked for
            summaries[name] = {**accuracy_summary(list(done.values())), "grading": grading}
            write_json(summary_path, summaries)
    bar.close()
    return asked


def _stale_rows(path: Path, problems: list[Problem], prompts: Prompts) -> bool:
    """Rows on disk for these problem ids that were asked another way (another question text, another gold: the
    benchmark file changed) or with another prompt template."""
    from psrlm.records import read_jsonl

    want = {p.id: (prompts.solve_prompt(p.question), p.answer) for p in problems}
    return any(
        r.problem_id in want and (r.prompt, r.gold) != want[r.problem_id] for r in read_jsonl(path, SolveResult)
    )


def eval_settings(
    engine_cfg, model: str | Path, prompts_variant: str, max_tokens: int, few_shot, known: dict, grading=None
) -> tuple:
    """(settings, extra) that decide an evaluation folder's results: the model's identity (a hash of its weights,
    config and tokenizer; for a served model its name and URLs, which is all a client can know), the engine and
    its precision, the prompt template, the token cap and the few-shot examples. `known` is the previous record's
    extra, so an unchanged checkpoint is not hashed again. Computed before a model loads."""
    from psrlm import hardware
    from psrlm.folders import fingerprint, model_files, model_identity

    if engine_cfg.kind == "hf":
        sha = model_identity(Path(model), known.get("model"))
        ident = {"sha256": sha}
        # the folder the results came from, so a report can tell when that model has since been replaced
        extra = {"model": {"path": str(Path(model).resolve()), "files": model_files(Path(model)), "sha256": sha}}
        eng = {"kind": "hf", "dtype": hardware.engine_dtype(engine_cfg.dtype, hardware.pick_device(engine_cfg.device))}
    else:
        ident = {"served": engine_cfg.model_name or str(model), "urls": list(engine_cfg.base_urls)}
        extra, eng = {}, {"kind": engine_cfg.kind}
    shots = None
    if few_shot:
        shots = fingerprint({"shots": [[s.meta.get("question"), s.steps] for s in few_shot]})
    settings = {"model": ident, "engine": eng, "prompts": prompts_variant, "max_tokens": max_tokens, "few_shot": shots}
    if grading is not None:
        settings["grading"] = grading
    return settings, extra


# --------------------------------------------------------------------------------- test-time scaling


def tts_vs_greedy(
    problems: list[Problem],
    engine: Engine,
    prompts: Prompts,
    search_cfg,
    out_dir: Path,
    max_tokens: int = 512,
    progress: bool = True,
    settings: dict | None = None,
    root: Path | None = None,
    include_percentage: bool = True,
    groups: dict[str, list[str]] | None = None,
) -> dict:
    """Paper Tables 5/9: the step search with self-judging at inference vs greedy decoding, on the same problems,
    with the compute each spends (generated tokens, judge calls, wall time). The search commits to
    `<out_dir>/tts/` and resumes while `settings` (what decides its traces) stay the same; traces made otherwise
    are moved aside (under `root`) and searched afresh. The greedy half is cheap and simply rerun. `groups`
    (benchmark -> problem ids) adds the same numbers per benchmark under "benchmarks"; the top level is over all.
    Which rules the search follows is `search_cfg`'s (evaluation.tts_search_cfg: the inference rules by default)."""
    import time

    from psrlm.folders import FolderLock, claim_settings
    from psrlm.grading import Grader
    from psrlm.search import run_tts

    tts_dir = Path(out_dir) / "tts"
    with FolderLock(tts_dir, "tts"), Grader(include_percentage=include_percentage) as grader:
        claim_settings(tts_dir, settings or {}, replace=True, root=root)
        start = time.perf_counter()
        greedy = solve_greedy(problems, engine, prompts, max_tokens, grader=grader)
        greedy_s = time.perf_counter() - start
        start = time.perf_counter()
        traces = run_tts(problems, engine, prompts, search_cfg, out_dir=tts_dir, progress=progress)
        tts_s = time.perf_counter() - start
        by_id = {t.problem_id: t for t in traces}
        ordered = [by_id[p.id] for p in problems]
        correct = grader.grade([(p.answer, t.final_answer) for p, t in zip(problems, ordered, strict=True)])
    rows = {p.id: (g, t, bool(c)) for p, g, t, c in zip(problems, greedy, ordered, correct, strict=True)}
    result = {
        **_tts_summary(list(rows.values()), greedy_s, tts_s),
        "width": search_cfg.width,
        "judge_mode": search_cfg.judge_mode,
        "verdict": search_cfg.verdict,
        "rules": {"ties": search_cfg.ties, "max_rounds": search_cfg.max_rounds, "max_steps": search_cfg.max_steps},
        "grading": {"include_percentage": include_percentage},
    }
    if groups:  # seconds are measured over all the problems at once: shared out by tokens generated
        total_g = sum(g.tokens for g, _, _ in rows.values()) or 1
        total_t = sum(t.gen_tokens for _, t, _ in rows.values()) or 1
        result["benchmarks"] = {}
        for name, ids in groups.items():
            part = [rows[i] for i in ids]
            share_g = sum(g.tokens for g, _, _ in part) / total_g
            share_t = sum(t.gen_tokens for _, t, _ in part) / total_t
            result["benchmarks"][name] = _tts_summary(part, greedy_s * share_g, tts_s * share_t)
    return result


def _tts_summary(rows: list[tuple[SolveResult, object, bool]], greedy_s: float, tts_s: float) -> dict:
    """Greedy vs test-time search over (greedy result, search trace, search answer right) rows."""
    n = max(1, len(rows))
    greedy_tokens = sum(g.tokens for g, _, _ in rows)
    tts_tokens = sum(t.gen_tokens for _, t, _ in rows)
    return {
        "n": len(rows),
        "greedy": {"accuracy": sum(g.correct for g, _, _ in rows) / n, "tokens_per_problem": greedy_tokens / n,
                   "seconds": greedy_s},
        "tts": {
            "accuracy": sum(ok for _, _, ok in rows) / n,
            "tokens_per_problem": tts_tokens / n,
            "judge_calls_per_problem": sum(t.judge_calls for _, t, _ in rows) / n,
            "rollbacks_per_problem": sum(t.rollbacks for _, t, _ in rows) / n,
            "ties_per_problem": sum(t.ties for _, t, _ in rows) / n,
            "finished_rate": sum(t.finished for _, t, _ in rows) / n,
            "mean_steps": statistics.mean(len(t.steps) for _, t, _ in rows) if rows else 0.0,
            "seconds": tts_s,
        },
        "token_ratio": tts_tokens / max(1, greedy_tokens),
        "time_ratio": tts_s / max(1e-9, greedy_s),
    }  # fmt: skip


# --------------------------------------------------------------------------------- pair precision (arith)


def pair_precision(pairs: list[PreferencePair | JudgeExample], problems: dict[str, Problem]) -> dict:
    """Measured with the oracle (arith), never used to choose: of the pairs whose problem has a gold chain, the share
    whose preferred step is right and the other wrong. A PreferencePair prefers its chosen step over its rejected one
    (the loop's PPD); a JudgeExample the step its verdict names (the EFT pipeline's kept items). The denominator is
    the labelled pairs: a pair the oracle cannot label is no evidence either way, and of none the precision is None."""
    from psrlm.tasks.arith import label_step

    counts = {"correct_wrong": 0, "both_correct": 0, "both_wrong": 0, "wrong_correct": 0}
    key = {(True, False): "correct_wrong", (True, True): "both_correct", (False, False): "both_wrong"}
    for p in pairs:
        if isinstance(p, JudgeExample):
            prev = p.prev_steps
            good, bad = (p.step_a, p.step_b) if p.verdict == "A" else (p.step_b, p.step_a)
        else:
            prev, good, bad = p.meta.get("prev_steps", []), p.chosen, p.rejected
        prob = problems.get(p.meta.get("problem_id", ""))
        if prob is None or "equations" not in prob.meta:
            continue
        c = label_step(prob, prev, good).correct
        r = label_step(prob, prev, bad).correct
        counts[key.get((c, r), "wrong_correct")] += 1
    n = sum(counts.values())
    return {"labelled": n, "precision": counts["correct_wrong"] / n if n else None, **counts}


# ------------------------------------------------------------------------------ teacher-forced arithmetic (arith)

EQUATION_LAYOUTS = ("steps", "prose")


def equation_prompts(problems: list[Problem], prompts: Prompts, layout: str) -> list[tuple[str, str, str]]:
    """(prompt, operator, result) for every equation of every gold solution: the gold text up to its "= ".

    `steps` is the loop's layout (the solve prompt, then "Step n:" lines); `prose` is how M0 is pre-trained (the
    question, then the solution as prose). The model only has to compute, so this separates "cannot do the
    arithmetic" from "chose the wrong operation", which greedy accuracy mixes."""
    from psrlm.tasks.arith import EQUATION, pretraining_text

    if layout not in EQUATION_LAYOUTS:
        raise ValueError(f"equation layout {layout!r}: choose one of {', '.join(EQUATION_LAYOUTS)}")
    out = []
    for p in problems:
        steps = p.meta.get("steps")
        if not steps:  # not an arith problem: no gold chain to force
            continue
        text = prompts.solve_prompt(p.question) + render_steps(steps) if layout == "steps" else pretraining_text(p)
        out += [(text[: m.start(4)], m.group(2), m.group(4)) for m in EQUATION.finditer(text)]
    return out


def equation_accuracy(problems: list[Problem], engine: Engine, prompts: Prompts, layout: str = "steps") -> dict:
    """Greedy next number after each gold equation's "=", right or wrong, overall and per operator."""
    import re

    items = equation_prompts(problems, prompts, layout)
    outs = engine.generate([t for t, _, _ in items], GenParams(n=1, max_new_tokens=6))
    right: dict[str, list[bool]] = {}
    for (_, op, result), o in zip(items, outs, strict=True):
        got = re.match(r"\s*(-?\d+)", o[0].text)
        right.setdefault(op, []).append(bool(got) and got.group(1) == result)
    every = [r for rs in right.values() for r in rs]
    return {
        "layout": layout,
        "problems": len(problems),
        "equations": len(every),
        "accuracy": sum(every) / len(every) if every else None,
        "per_operator": {op: {"n": len(rs), "accuracy": sum(rs) / len(rs)} for op, rs in sorted(right.items())},
    }
