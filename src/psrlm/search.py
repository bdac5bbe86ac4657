"""Step search with self-judging (paper §3.3, Eq. 1-5) -> step-level preference pairs; also test-time scaling.

    psrlm search --config configs/demo.yaml --model runs/demo/models/M1 --problems runs/demo/data/fresh_questions.jsonl

Per problem, until a step holds a `\\boxed{}` answer or `max_steps`: sample `width` candidate next steps, let the
same model judge pairs of them (judge.py), append the best; (best, worst) with prompt = question + previous steps
is one PreferencePair. If the judged candidates all score the same, the step carries no preference: the previous step and
its pair are discarded and the search resumes one step earlier (at step 1 it simply resamples). Candidates that all
have the same text are not a tie (nothing was judged): that step is accepted with no pair. Candidates cut at
`max_step_tokens` are dropped and counted (`capped`), never judged. `max_rounds` caps the rounds per problem.
With `ties: accept` (test-time search, evaluation.tts_search_cfg) a tie takes its step anyway, with no pair: the
most-sampled of the equal candidates, then the first drawn.

All active problems advance together: one engine call generates every active problem's candidates, one engine
call runs every judgment. That batching is where the speed comes from (see `psrlm bench`). Finished problems are
committed to `traces.jsonl` / `pairs.jsonl` as they finish; a rerun skips them. Problems still in flight are saved
after every round (`inflight.jsonl`: the round's record, the steps and pairs so far, the trace's counters), so a
kill loses at most the round in progress and a rerun continues each problem where it stopped. Each round's samples
are seeded by (search seed, problem id, step, attempt), so a resumed search draws exactly what an uninterrupted one
would have, whichever other problems are active beside it.

A problem whose step or judge prompt no longer fits the model's context stops there (stop_reason "context",
counted in the summary as `context_stops`): nothing is cut to fit.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from psrlm.configs import SearchConfig
from psrlm.engines.base import Engine, GenParams, seed_of
from psrlm.judge import Judgment, parse_verdict, plan_pairs, score_candidates, unique_candidates
from psrlm.problem_log import ProblemLog
from psrlm.prompts import Prompts, judge_target_tag
from psrlm.records import PreferencePair, Problem, RecordError, SearchTrace, check_unique_ids, from_dict
from psrlm.steps import STEP_STOP, clean_candidate, final_answer, is_final

EXPLANATION_CHARS = 2000  # a judge explanation kept in a trace is cut here: traces of runaway text stay small


@dataclass
class _State:
    problem: Problem
    trace: SearchTrace
    steps: list[str] = field(default_factory=list)
    pairs: list[list[PreferencePair]] = field(default_factory=list)  # pairs[k]: the pairs made at steps[k]
    done: bool = False
    failed: bool = False  # a request of this problem failed: not committed, so a rerun searches it again


@dataclass
class SearchResult:
    traces: list[SearchTrace]
    pairs: list[PreferencePair]
    failed: list[str] = field(default_factory=list)  # problems whose requests failed: not committed, retried on rerun

    def summary(self) -> dict:
        t = self.traces
        rounds = sum(x.rounds_used for x in t) or 1
        calls = sum(x.judge_calls for x in t)
        return {
            "problems": len(t),
            "pairs": len(self.pairs),
            "finished": sum(x.finished for x in t),
            "rounds": rounds,
            "tie_rate": sum(x.ties for x in t) / rounds,
            "rollbacks": sum(x.rollbacks for x in t),
            "rollback_rate": sum(x.rollbacks for x in t) / rounds,
            "judge_calls": calls,
            "judge_calls_per_step": calls / rounds,
            "no_verdict_rate": sum(x.no_verdicts for x in t) / max(1, calls),
            "gen_tokens": sum(x.gen_tokens for x in t),
            "round_cap_hits": sum(x.stop_reason == "round_cap" for x in t),
            "context_stops": sum(x.stop_reason == "context" for x in t),
            "failed_problems": len(self.failed),
            "capped_candidates": sum(x.capped for x in t),  # cut at max_step_tokens: never judged
            "unanimous_rounds": sum(r.get("action") == "accept_unanimous" for x in t for r in x.rounds),
            "all_right_rounds": sum(r.get("action") == "accept_all_right" for x in t for r in x.rounds),
            "empty_rounds": sum(r.get("action") == "resample_empty" for x in t for r in x.rounds),
        }


def run_search(
    problems: list[Problem],
    engine: Engine,
    prompts: Prompts,
    cfg: SearchConfig,
    *,
    judge_engine: Engine | None = None,
    out_dir: Path | None = None,
    iteration: int = 0,
    progress: bool = True,
) -> SearchResult:
    """Search every problem; with `out_dir`, results are committed as problems finish and a rerun resumes."""
    judge_engine = judge_engine or engine
    _check(cfg)
    check_unique_ids(problems, "search problems")
    log = ProblemLog(out_dir, SearchTrace, PreferencePair) if out_dir is not None else None
    done_ids = log.done if log else set()
    by_id = {p.id: p for p in problems}
    # problems a killed run left in flight continue where they stopped, in the order they were active
    active = [_replay(by_id[pid], entries, log.journal_path) for pid, entries in (log.inflight if log else {}).items()
              if pid in by_id and pid not in done_ids]  # fmt: skip
    resumed = {st.problem.id for st in active}
    queue = deque(p for p in problems if p.id not in done_ids and p.id not in resumed)
    new_traces: list[SearchTrace] = []
    new_pairs: list[PreferencePair] = []
    failed: list[str] = []
    bar = _progress(len(problems), len(problems) - len(queue) - len(active), progress)
    try:
        while queue or active:
            while queue and len(active) < cfg.max_active:
                p = queue.popleft()
                active.append(_State(p, SearchTrace(problem_id=p.id, steps=[])))
            pairs_before = [len(st.pairs) for st in active]
            _advance(active, engine, judge_engine, prompts, cfg, iteration)
            for st in [s for s in active if s.done]:
                if st.failed:  # a request failed: nothing of this problem is kept; a rerun searches it again
                    failed.append(st.problem.id)
                    bar.update(1)
                    continue
                st.trace.steps = list(st.steps)
                st.trace.final_answer = final_answer(st.steps)
                made = [p for step_pairs in st.pairs for p in step_pairs]
                if log:
                    log.commit(st.trace, made)
                new_traces.append(st.trace)
                new_pairs += made
                bar.update(1)
            if log:  # the round of every problem still in flight, saved before the next one starts
                log.journal([_journal_entry(st, n) for st, n in zip(active, pairs_before, strict=True) if not st.done])
            active = [s for s in active if not s.done]
            _postfix(bar, new_traces, new_pairs)
    finally:
        bar.close()
        if log:
            log.close()
    if log:  # everything on disk, earlier runs included, in problem order
        return SearchResult(log.ordered_traces(problems), log.items(), failed)
    return SearchResult(new_traces, new_pairs, failed)


_COUNTERS = ("rollbacks", "ties", "judge_calls", "no_verdicts", "gen_tokens", "capped", "rounds_used", "finished",
             "stop_reason", "final_answer")  # fmt: skip


def _journal_entry(st: _State, pairs_before: int) -> dict:
    """One round of a problem still in flight: the round's record, the steps, the pairs it added (if it accepted a
    step) and the trace's counters: what `_replay` needs to continue it exactly."""
    tr = st.trace
    entry = {"problem_id": st.problem.id, "rounds": len(tr.rounds), "round": tr.rounds[-1] if tr.rounds else None,
             "steps": list(st.steps), "pairs": len(st.pairs), "trace": {k: getattr(tr, k) for k in _COUNTERS}}  # fmt: skip
    if len(st.pairs) > pairs_before:
        entry["made"] = [dataclasses.asdict(p) for p in st.pairs[-1]]
    return entry


def _replay(problem: Problem, entries: list[dict], where: Path) -> _State:
    """A problem's search state rebuilt from its journal entries (one per round it ran)."""
    st = _State(problem, SearchTrace(problem_id=problem.id, steps=[]))
    for e in entries:
        if e.get("round") is not None:
            st.trace.rounds.append(e["round"])
        if len(st.trace.rounds) != e.get("rounds"):
            raise RecordError(f"{where}: the rounds of problem {problem.id!r} do not follow each other (a round "
                              "missing or repeated); remove the file to search its problems from the start")  # fmt: skip
        for k, v in e["trace"].items():
            setattr(st.trace, k, v)
        st.steps = list(e["steps"])
        if "made" in e:  # this round accepted a step: the pairs it made (none: a step accepted without one)
            made = [from_dict(PreferencePair, p, str(where)) for p in e["made"]]
            st.pairs = st.pairs[: e["pairs"] - 1] + [made]
        else:  # a rollback dropped the last one, or nothing changed
            st.pairs = st.pairs[: e["pairs"]]
    return st


def _check(cfg: SearchConfig) -> None:
    from psrlm.judge import JUDGE_MODES, SCORINGS

    for key, value, allowed in (("judge_mode", cfg.judge_mode, JUDGE_MODES), ("scoring", cfg.scoring, SCORINGS),
                                ("verdict", cfg.verdict, ("generate", "logits", "soft"))):  # fmt: skip
        if value not in allowed:
            raise ValueError(f"search.{key}={value!r}: choose one of {list(allowed)}")
    if cfg.width < 2:
        raise ValueError(f"search.width={cfg.width}: need at least 2 candidates to compare")


def run_tts(
    problems: list[Problem], engine: Engine, prompts: Prompts, cfg: SearchConfig, **kwargs
) -> list[SearchTrace]:
    """Test-time scaling (paper Table 5/9): the same search at inference; each trace holds the chosen solution
    (`steps`, `final_answer`) and the compute it took (`gen_tokens`, `judge_calls`, `rounds_used`)."""
    return run_search(problems, engine, prompts, cfg, iteration=-1, **kwargs).traces


def _advance(
    states: list[_State],
    engine: Engine,
    judge_engine: Engine,
    prompts: Prompts,
    cfg: SearchConfig,
    iteration: int,
) -> None:
    """One round for every state: expand, judge (one batched call each), then select or roll back."""
    step_prompts = [prompts.step_prompt(st.problem.question, st.steps) for st in states]
    # the round's draws belong to (problem, step, attempt), not to the batch they happen to share
    seeds = tuple(seed_of(cfg.seed, st.problem.id, len(st.steps) + 1, st.trace.rounds_used) for st in states)
    homes = tuple(seed_of(st.problem.id) for st in states)  # a problem's requests all go to one server replica
    gen = engine.generate(
        step_prompts,
        GenParams(
            n=cfg.width,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_step_tokens,
            stop=(STEP_STOP,),
            seeds=seeds,
            affinity=homes,
        ),
    )
    plans = []  # per state: (candidates, uniques, [(a, b)], offset into the judgments) or None (context stop)
    judge_prompts: list[str] = []
    judge_seeds: list[int] = []
    judge_homes: list[int] = []
    judged: list[Verdict] = []  # the oracle's verdicts (science runs); the model's come in one batched call below
    for st, outs, seed, home in zip(states, gen, seeds, homes, strict=True):
        st.trace.gen_tokens += sum(c.tokens for c in outs)
        if any(o.finish_reason in ("context", "error") for o in outs):
            plans.append("failed" if any(o.finish_reason == "error" for o in outs) else None)
            continue
        # a candidate cut at the token cap is half a step: counted, never judged
        whole = [o for o in outs if o.finish_reason != "length"]
        st.trace.capped += len(outs) - len(whole)
        cands = [c for c in (clean_candidate(o.text) for o in whole) if c]
        uniques, _ = unique_candidates(cands)
        pairs = plan_pairs(len(uniques), cfg.judge_mode, cfg.cyclic_k) if len(uniques) > 1 else []
        offset = len(judged) + len(judge_prompts)
        if cfg.judge == "oracle":  # science runs only: the step oracle decides, no prompt is written
            right = oracle_labels(st, uniques)
            judged += oracle_verdicts(right, pairs, cfg.judge_flip, seed, cfg.oracle_ties)
            all_right = cfg.oracle_ties == "accept" and len(uniques) > 1 and all(right)
            plans.append((cands, uniques, pairs, offset, all_right))
            continue
        plans.append((cands, uniques, pairs, offset, False))
        q = st.problem.question
        judge_prompts += [prompts.judge_prompt(q, st.steps, uniques[a], uniques[b]) for a, b in pairs]
        judge_seeds += [seed_of(seed, "judge", k) for k in range(len(pairs))]
        judge_homes += [home] * len(pairs)
    if judge_prompts:
        judged = judge_all(judge_engine, judge_prompts, cfg, tuple(judge_seeds), tuple(judge_homes))
    for st, plan in zip(states, plans, strict=True):
        if plan is None:
            _stop_for_context(st)
            continue
        if plan == "failed":
            st.done, st.failed = True, True
            continue
        cands, uniques, pairs, offset, all_right = plan
        outs = judged[offset : offset + len(pairs)]
        st.trace.gen_tokens += sum(j.tokens for j in outs)
        st.trace.judge_calls += len(pairs)
        if any(j.failed for j in outs):
            st.done, st.failed = True, True
            continue
        if any(j.skipped for j in outs):
            _stop_for_context(st)
            continue
        judgments = [Judgment(a, b, j.verdict, j.text, j.p_a) for (a, b), j in zip(pairs, outs, strict=True)]
        _select(st, cands, uniques, judgments, prompts, cfg, iteration, all_right)


def oracle_labels(st: _State, uniques: list[str]) -> list[bool]:
    """The arith step oracle's verdict on each candidate next step of `st` (science runs only)."""
    from psrlm.tasks.arith import label_step

    return [label_step(st.problem, st.steps, c).correct for c in uniques]


def _stop_for_context(st: _State) -> None:
    """The step or judge prompt no longer fits the context: the problem ends here, its earlier pairs kept."""
    st.trace.rounds_used += 1
    st.trace.rounds.append({"step": len(st.steps) + 1, "action": "context"})
    st.done, st.trace.stop_reason = True, "context"


def oracle_verdicts(
    right: list[bool], pairs: list[tuple[int, int]], flip: float, seed: int, ties: str = "tie"
) -> list:
    """The controlled judge of the science runs (`search.judge: oracle`), given the oracle's label of each
    candidate (`oracle_labels`): of two, the right one wins; two right or two wrong tie (P(A) = 0.5; with
    `ties="accept"` the round then accepts a step when all are right, see _select), or with `ties="coin"` get a
    seeded fair coin's verdict (a judge that always answers); each verdict between a right and a wrong step is
    flipped with probability `flip`, from a generator seeded by the round, so the judge's accuracy on one-right
    pairs is exactly 1 - flip in expectation. The self-rewarding loop never comes here unless a recipe asks."""
    import random

    rng = random.Random(f"flip:{seed}")
    out = []
    for a, b in pairs:
        if right[a] == right[b] and ties in ("tie", "accept"):
            out.append(Verdict(None, 0.5, 0))
            continue
        a_wins = rng.random() < 0.5 if right[a] == right[b] else right[a] != (rng.random() < flip)
        out.append(Verdict("A" if a_wins else "B", 1.0 if a_wins else 0.0, 0))
    return out


@dataclass
class Verdict:
    verdict: str | None  # "A", "B" or None (no verdict)
    p_a: float | None  # P(A is better), read from the logits ("logits" / "soft")
    tokens: int  # generated tokens (explanations)
    skipped: bool = False  # the judge prompt does not fit the model's context
    failed: bool = False  # the request failed (after the engine's retries)
    text: str = ""  # the judge's generated explanation and verdict (verdict=generate)


def judge_all(
    engine: Engine, judge_prompts: list[str], cfg: SearchConfig, seeds: tuple[int, ...] | int, affinity=None
) -> list[Verdict]:
    """One Verdict per judge prompt, in one batched call.

    verdict=generate: the judge writes its explanation and `[[A]]`/`[[B]]` (paper); P(A) is None.
    verdict=logits / soft: no explanation; P(A) = softmax over log p(" [[A]]") and log p(" [[B]]") right after the
    prompt (in-process engine only). `logits` turns it into a hard verdict; `soft` scores candidates with P(A)
    itself, so a judge whose position bias is stronger than its preference still ranks candidates (the bias
    cancels over both orders of a pair) instead of tying every round.
    """
    if cfg.verdict == "generate":
        per_prompt = dict(seeds=seeds) if isinstance(seeds, tuple) else dict(seed=seeds)
        params = GenParams(n=1, temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_tokens,
                           affinity=affinity, **per_prompt)  # fmt: skip
        outs = [o[0] for o in engine.generate(judge_prompts, params)]
        return [Verdict(parse_verdict(o.text), None, o.tokens, o.finish_reason == "context", o.finish_reason == "error",
                        o.text) for o in outs]  # fmt: skip
    out = []
    for d in verdict_log_odds(engine, judge_prompts, affinity):
        if d is None:
            out.append(Verdict(None, None, 0, skipped=True))
            continue
        verdict = "A" if d > 0 else "B" if d < 0 else None
        out.append(Verdict(verdict, sigmoid(d) if cfg.verdict == "soft" else None, 0))
    return out


def verdict_log_odds(engine: Engine, judge_prompts: list[str], affinity=None) -> list[float | None]:
    """log p(" [[A]]") - log p(" [[B]]") right after each judge prompt (in-process, or a server's prompt log-probs);
    None where the prompt does not fit the model's context."""
    n = len(judge_prompts)
    tags = [judge_target_tag("A")] * n + [judge_target_tag("B")] * n
    if hasattr(engine, "continuation_logprobs"):  # a server: prompt log-probabilities over the API (vLLM, SGLang)
        lp = engine.continuation_logprobs(judge_prompts * 2, tags, affinity * 2 if affinity else None)
    elif hasattr(engine, "tokenizer"):
        from psrlm.engines.hf import continuation_logprobs

        lp = continuation_logprobs(engine, judge_prompts * 2, tags)
    else:
        raise ValueError("verdicts read from logits need the in-process engine or a server with prompt log-probs")
    return [None if a is None or b is None else a - b for a, b in zip(lp[:n], lp[n:], strict=True)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def _select(
    st: _State,
    cands: list[str],
    uniques: list[str],
    judgments: list[Judgment],
    prompts: Prompts,
    cfg: SearchConfig,
    iteration: int,
    all_right: bool = False,
) -> None:
    """`all_right`: an oracle judge with oracle_ties=accept found every candidate right (accepted with no pair)."""
    tr = st.trace
    tr.rounds_used += 1
    scored = score_candidates(max(1, len(uniques)), judgments, cfg.scoring, cfg.tie_margin)
    tr.no_verdicts += scored.no_verdicts
    record = {
        "step": len(st.steps) + 1,
        "candidates": cands,
        "unique": len(uniques),
        "scores": scored.scores,
        "judge_calls": len(judgments),
        "no_verdicts": scored.no_verdicts,
        # who was asked about whom and what it said: [a, b, verdict, P(A)] over the unique candidates, and the
        # generated explanations (verdict=generate), so a trace shows why a step was kept (psrlm view)
        "judgments": [[j.a, j.b, j.verdict, None if j.p_a is None else round(j.p_a, 4)] for j in judgments],
    }
    if any(j.text for j in judgments):
        record["explanations"] = [j.text[:EXPLANATION_CHARS] for j in judgments]
    if not uniques:  # every candidate empty, cut or failed: nothing was judged, so draw again at this step
        record["action"] = "resample_empty"
    elif len(uniques) == 1 or all_right:  # every candidate the same text (or all right): nothing to prefer
        st.pairs.append([])
        st.steps.append(uniques[0])
        record["action"] = "accept_unanimous" if len(uniques) == 1 else "accept_all_right"
    elif scored.tie and cfg.ties == "accept":  # test time: the step is taken anyway, with no pair to learn from
        tr.ties += 1
        _, index = unique_candidates(cands)
        top = [i for i, v in enumerate(scored.scores) if v >= max(scored.scores) - cfg.tie_margin]
        pick = max(top, key=lambda i: (index.count(i), -i))  # the most-sampled of the equal ones, then the first
        st.pairs.append([])
        st.steps.append(uniques[pick])
        record.update(action="accept_tie", best=pick)
    elif scored.tie:
        tr.ties += 1
        if st.steps:  # no preference at step l: discard step l-1 and its pair, search again from there
            st.steps.pop()
            st.pairs.pop()
            tr.rollbacks += 1
            record["action"] = "rollback"
        else:
            record["action"] = "resample"
    else:
        prompt = prompts.step_prompt(st.problem.question, st.steps)
        st.pairs.append([_pair(st, prompt, uniques, scored.scores, a, b, iteration)
                         for a, b in round_pairs(scored, cfg)])  # fmt: skip
        st.steps.append(uniques[scored.best])
        record.update(action="accept", best=scored.best, worst=scored.worst)
        if cfg.pairs_per_round == "all":
            record["pairs"] = len(st.pairs[-1])
    tr.rounds.append(record)
    if st.steps and is_final(st.steps[-1]):
        st.done, tr.finished, tr.stop_reason = True, True, "answer"
    elif len(st.steps) >= cfg.max_steps:
        st.done, tr.stop_reason = True, "max_steps"
    elif tr.rounds_used >= cfg.max_rounds:
        st.done, tr.stop_reason = True, "round_cap"


def round_pairs(scored, cfg: SearchConfig) -> list[tuple[int, int]]:
    """(chosen, rejected) indices of the unique candidates a decided round trains on: the paper's (best, worst), or
    with pairs_per_round=all every two candidates whose scores differ by more than tie_margin (best-scored pairs
    first). With the oracle judge that is every right step against every wrong one."""
    if cfg.pairs_per_round == "best_worst":
        return [(scored.best, scored.worst)]
    sc = scored.scores
    order = sorted(range(len(sc)), key=lambda i: (-sc[i], i))
    return [(a, b) for i, a in enumerate(order) for b in order[i + 1 :] if sc[a] - sc[b] > cfg.tie_margin]


def _pair(st: _State, prompt: str, uniques: list[str], scores: list[float], a: int, b: int, iteration: int):
    return PreferencePair(
        prompt=prompt,
        chosen=" " + uniques[a],
        rejected=" " + uniques[b],
        meta={
            "problem_id": st.problem.id,
            "step": len(st.steps) + 1,
            "iteration": iteration,
            "chosen_score": scores[a],
            "rejected_score": scores[b],
            "chosen_final": is_final(uniques[a]),
            "rejected_final": is_final(uniques[b]),
            "width": len(uniques),
            "prev_steps": list(st.steps),
        },
    )


def _progress(total: int, initial: int, enabled: bool):
    from psrlm.progress import bar

    return bar(total, "search", "problem", initial, enabled)


def _postfix(bar, traces: list[SearchTrace], pairs: list[PreferencePair]) -> None:
    if not traces:
        return
    calls = sum(t.judge_calls for t in traces) or 1
    bar.set_postfix(
        pairs=len(pairs),
        rollbacks=sum(t.rollbacks for t in traces),
        no_verdict=f"{sum(t.no_verdicts for t in traces) / calls:.1%}",
        refresh=False,
    )
