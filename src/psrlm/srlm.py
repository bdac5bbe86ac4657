"""The outcome-based baseline, SRLM (Yuan et al., 2024): the model scores its own whole solutions.

    psrlm search --method srlm --config configs/demo.yaml --model M --problems FILE --out DIR

Per problem: sample `n_samples` whole solutions, score each with the additive 5-point LLM-as-a-Judge prompt
(`n_judgments` samples averaged), and pair the best against the worst; a tie between them carries no preference
and is dropped. "Score: X" that cannot be parsed is counted and left out of the average. As in search.py, all
active problems share one generation call and one scoring call, and results are committed per problem.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from psrlm.configs import SRLMConfig
from psrlm.engines.base import Engine, GenParams, seed_of
from psrlm.problem_log import ProblemLog
from psrlm.prompts import Prompts
from psrlm.records import PreferencePair, Problem, SearchTrace, check_unique_ids
from psrlm.steps import final_answer, is_final, split_steps

_SCORE = re.compile(r"Score\s*:\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_score(text: str) -> float | None:
    """The last "Score: X" with 0 <= X <= 5, else None (counted by the caller)."""
    found = _SCORE.findall(text or "")
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= 5 else None


@dataclass
class SRLMResult:
    traces: list[SearchTrace]
    pairs: list[PreferencePair]
    failed: list[str] = field(default_factory=list)  # problems whose requests failed: not committed, retried on rerun

    def summary(self) -> dict:
        t = self.traces
        calls = sum(x.judge_calls for x in t)
        return {
            "problems": len(t),
            "pairs": len(self.pairs),
            "ties_dropped": sum(x.ties for x in t),
            "judge_calls": calls,
            "unparsed_score_rate": sum(x.no_verdicts for x in t) / max(1, calls),
            "gen_tokens": sum(x.gen_tokens for x in t),
            "context_stops": sum(x.stop_reason == "context" for x in t),
            "failed_problems": len(self.failed),
            "capped_solutions": sum(x.capped for x in t),  # cut at max_solution_tokens: never scored
        }


def run_srlm(
    problems: list[Problem],
    engine: Engine,
    prompts: Prompts,
    cfg: SRLMConfig,
    *,
    out_dir: Path | None = None,
    iteration: int = 0,
    progress: bool = True,
) -> SRLMResult:
    from psrlm.progress import bar as progress_bar

    check_unique_ids(problems, "srlm problems")
    log = ProblemLog(out_dir, SearchTrace, PreferencePair) if out_dir is not None else None
    queue = deque(p for p in problems if not log or p.id not in log.done)
    traces: list[SearchTrace] = []
    pairs: list[PreferencePair] = []
    failed: list[str] = []
    bar = progress_bar(len(problems), "srlm", "problem", len(problems) - len(queue), progress)
    try:
        while queue:
            batch = [queue.popleft() for _ in range(min(cfg.max_active, len(queue)))]
            for trace, new in _score_batch(batch, engine, prompts, cfg, iteration):
                if trace.stop_reason == "failed":  # a request failed: not kept, searched again on a rerun
                    failed.append(trace.problem_id)
                    bar.update(1)
                    continue
                if log:
                    log.commit(trace, new)
                traces.append(trace)
                pairs += new
                bar.update(1)
    finally:
        bar.close()
        if log:
            log.close()
    if log:
        return SRLMResult(log.ordered_traces(problems), log.items(), failed)
    return SRLMResult(traces, pairs, failed)


def _score_batch(batch: list[Problem], engine: Engine, prompts: Prompts, cfg: SRLMConfig, iteration: int):
    """Samples and scores seeded by problem id (not by batch), so a resumed run draws what an uninterrupted one
    would have. A solve prompt that does not fit the context ends its problem with stop_reason "context"; a
    solution cut at `max_solution_tokens` is dropped and counted (`capped`), never scored; a failed request fails
    its problem (stop_reason "failed": not committed, so a rerun asks again)."""
    solve = [prompts.solve_prompt(p.question) for p in batch]
    homes = tuple(seed_of(p.id) for p in batch)  # a problem's requests go to one server replica
    gen = engine.generate(
        solve,
        GenParams(
            n=cfg.n_samples,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_solution_tokens,
            seeds=tuple(seed_of(cfg.seed, p.id, "solve") for p in batch),
            affinity=homes,
        ),
    )
    whole = [[o.text.strip() for o in outs if o.finish_reason not in ("length", "error", "context")] for outs in gen]
    if cfg.judge == "oracle":  # science control: right answers score 5, wrong 0; no scoring prompt is written
        yield from _pair_batch(batch, solve, gen, whole, _oracle_scores(batch, whole), iteration, "oracle")
        return
    score_prompts, score_seeds, score_homes = [], [], []
    for p, sols, home in zip(batch, whole, homes, strict=True):
        for j, sol in enumerate(sols):
            score_prompts.append(prompts.score_prompt(p.question, sol))
            score_seeds.append(seed_of(cfg.seed, p.id, "score", j))
            score_homes.append(home)
    judge_params = GenParams(
        n=cfg.n_judgments,
        temperature=cfg.judge_temperature if cfg.n_judgments > 1 else 0.0,
        top_p=1.0,
        max_new_tokens=cfg.judge_max_tokens,
        seeds=tuple(score_seeds),
        affinity=tuple(score_homes),
    )
    judged = engine.generate(score_prompts, judge_params) if score_prompts else []
    scores, k = [], 0
    for sols in whole:
        scores.append(judged[k : k + len(sols)])
        k += len(sols)
    yield from _pair_batch(batch, solve, gen, whole, scores, iteration, "srlm")


def _oracle_scores(batch: list[Problem], whole: list[list[str]]) -> list[list[float]]:
    from psrlm.grading import is_equiv

    return [[5.0 if is_equiv(p.answer, final_answer(split_steps(s))) else 0.0 for s in sols]
            for p, sols in zip(batch, whole, strict=True)]  # fmt: skip


def _pair_batch(batch, solve, gen, whole, scores, iteration: int, judge: str):
    """Per problem: its trace and its (best, worst) pair from the solutions' scores, which are either the scoring
    answers of each solution (the model's judge) or the oracle's numbers."""
    for prompt, p, outs, sols, scored_answers in zip(solve, batch, gen, whole, scores, strict=True):
        trace = SearchTrace(problem_id=p.id, steps=[], gen_tokens=sum(o.tokens for o in outs))
        if any(o.finish_reason == "error" for o in outs) or any(
            not isinstance(r, float) and any(a.finish_reason == "error" for a in r) for r in scored_answers
        ):
            trace.stop_reason = "failed"
            yield trace, []
            continue
        if any(o.finish_reason == "context" for o in outs):
            trace.stop_reason = "context"
            yield trace, []
            continue
        trace.capped = len(outs) - len(sols)
        means: list[float | None] = []
        for answers in scored_answers:
            if isinstance(answers, float):  # the oracle's score
                means.append(answers)
                continue
            values = [parse_score(a.text) for a in answers]
            trace.judge_calls += len(values)
            trace.no_verdicts += sum(v is None for v in values)
            trace.gen_tokens += sum(a.tokens for a in answers)
            ok = [v for v in values if v is not None]
            means.append(sum(ok) / len(ok) if ok else None)
        scored = [(m, i) for i, m in enumerate(means) if m is not None]
        trace.rounds.append({"candidates": sols, "scores": means, "capped": trace.capped})
        trace.rounds_used = 1
        new: list[PreferencePair] = []
        if len(scored) >= 2 and max(scored)[0] > min(scored)[0]:
            best = max(scored, key=lambda t: (t[0], -t[1]))[1]
            worst = min(scored, key=lambda t: (t[0], t[1]))[1]
            new.append(
                PreferencePair(
                    prompt=prompt,
                    chosen=sols[best],
                    rejected=sols[worst],
                    meta={
                        "problem_id": p.id,
                        "iteration": iteration,
                        "method": "srlm",
                        **({"judge": "oracle"} if judge == "oracle" else {}),
                        "chosen_score": means[best],
                        "rejected_score": means[worst],
                        # EOS stays after a solution that states its answer (steps.is_final), as in step DPO
                        "chosen_final": _ends_with_answer(sols[best]),
                        "rejected_final": _ends_with_answer(sols[worst]),
                    },
                )
            )
            trace.steps = split_steps(sols[best])
        else:
            trace.ties = 1
            trace.steps = split_steps(sols[0]) if sols else []
        trace.final_answer = final_answer(trace.steps)
        trace.finished = bool(trace.steps) and is_final(trace.steps[-1])
        trace.stop_reason = "answer" if trace.finished else "no_answer"
        yield trace, new


def _ends_with_answer(solution: str) -> bool:
    steps = split_steps(solution)
    return bool(steps) and is_final(steps[-1])
