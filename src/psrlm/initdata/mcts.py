"""Candidate step pairs for EFT by Monte Carlo tree search over a policy model, scored by a PRM (paper §4).

    pairs = run_mcts(problems, policy_engine, prm, prompts, cfg.initdata, out_dir=run_dir / "initdata/mcts")

A tree per problem; a node is a partial solution (its steps) and holds the PRM's P("+") for its last step.
One iteration = selection (UCT from the root down to a node not yet expanded), expansion (`expand_width`
sampled next steps become children, each scored by the PRM), simulation (from one new child, a rollout of up to
`simulation_depth` sampled steps, each scored; the value is the weakest step's P("+"), the usual way to
aggregate a PRM over a chain) and backpropagation (visits and value up to the root). Paper knobs:
simulation_depth=3, iterations=100, T=0.7, top_p=0.95.

All active trees advance together: one engine call expands every tree's selected leaf, one per rollout depth
continues every rollout, one PRM batch scores each round of new steps. A finished tree gives, for each node it
expanded, its children compared by P("+"): best and worst siblings (same question, same previous steps) are a
candidate pair when they differ by `min_margin`; the `pairs_per_problem` widest are kept. Trees are committed to
`traces.jsonl` / `pairs.jsonl` as they finish (problem_log.ProblemLog), so a rerun resumes after the last one.

Nothing half-made becomes judge training data, as in the step search: a sampled step cut at `max_step_tokens` is
dropped and counted (`capped`), never a child nor a rollout step; a node whose prompt no longer fits the policy's
context ends there (`context`); a step the PRM cannot read whole is dropped and counted (`prm_skipped`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from psrlm.engines.base import Engine, GenParams
from psrlm.judge import unique_candidates
from psrlm.problem_log import ProblemLog
from psrlm.prompts import Prompts
from psrlm.records import Problem
from psrlm.steps import STEP_STOP, clean_candidate, is_final

SCORED_SAMPLE = 32  # scored steps kept per tree for measuring the PRM against an oracle


@dataclass
class Node:
    steps: list[str]
    parent: int | None
    p_plus: float = 1.0  # PRM P("+") of the last step (the root has none)
    children: list[int] = field(default_factory=list)
    visits: int = 0
    value: float = 0.0  # sum of the values backed up through this node
    expanded: bool = False
    terminal: bool = False  # an answer, the depth limit, or a dead end
    dead: bool = False  # expanded, but the policy wrote no step at all

    @property
    def depth(self) -> int:
        return len(self.steps)


@dataclass
class Tree:
    problem: Problem
    nodes: list[Node] = field(default_factory=lambda: [Node([], None)])
    iterations: int = 0
    gen_tokens: int = 0
    prm_scored: int = 0
    capped: int = 0  # sampled steps cut at max_step_tokens: dropped
    context: int = 0  # expansions or rollouts whose prompt did not fit the policy's context
    prm_skipped: int = 0  # steps longer than the PRM's context: dropped
    scored_steps: list[dict] = field(default_factory=list)  # a uniform sample of the steps the PRM scored

    def __post_init__(self) -> None:
        self.rng = random.Random(f"scored:{self.problem.id}")

    def record_scored(self, steps: list[str], p: float) -> None:
        """Reservoir sample of `SCORED_SAMPLE` scored steps with their previous steps (the PRM accuracy check)."""
        self.prm_scored += 1
        item = {"prev": steps[:-1], "step": steps[-1], "p": round(p, 4)}
        if len(self.scored_steps) < SCORED_SAMPLE:
            self.scored_steps.append(item)
        elif (j := self.rng.randrange(self.prm_scored)) < SCORED_SAMPLE:
            self.scored_steps[j] = item

    def path(self, i: int) -> list[int]:
        out = []
        while i is not None:
            out.append(i)
            i = self.nodes[i].parent
        return out[::-1]


@dataclass
class CandidatePair:
    """Best and worst sibling steps by the PRM, before any teacher has seen them."""

    question: str
    prev_steps: list[str]
    best: str
    worst: str
    p_best: float
    p_worst: float
    meta: dict = field(default_factory=dict)  # problem_id, depth, siblings, parent visits


@dataclass
class MCTSTrace:
    problem_id: str
    iterations: int
    nodes: int
    expanded: int
    max_depth: int
    root_visits: int
    answers: int  # nodes whose step holds a \boxed{} answer
    gen_tokens: int
    prm_scored: int
    pairs: int
    scored_steps: list[dict] = field(default_factory=list)
    capped: int = 0
    context: int = 0
    prm_skipped: int = 0


def uct(tree: Tree, parent: Node, child: Node, c: float) -> tuple[float, float]:
    """UCT score; an unvisited child comes first, the PRM's P("+") ordering unvisited children."""
    if child.visits == 0:
        return math.inf, child.p_plus
    explore = c * math.sqrt(math.log(max(1, parent.visits)) / child.visits)
    return child.value / child.visits + explore, child.p_plus


def select(tree: Tree, c: float) -> int:
    i = 0
    while True:
        node = tree.nodes[i]
        if node.terminal or not node.expanded or not node.children:
            return i
        i = max(node.children, key=lambda j: uct(tree, node, tree.nodes[j], c))


def backprop(tree: Tree, leaf: int, value: float) -> None:
    for i in tree.path(leaf):
        tree.nodes[i].visits += 1
        tree.nodes[i].value += value


def _sample(engine: Engine, prompts: Prompts, items: list[tuple[str, list[str]]], n: int, cfg, seed: int):
    params = GenParams(
        n=n, temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_step_tokens, stop=(STEP_STOP,),
        seed=seed,
    )  # fmt: skip
    return engine.generate([prompts.step_prompt(q, s) for q, s in items], params)


def _score(prm, trees_items: list[tuple[Tree, list[str]]]) -> list[float | None]:
    """P("+") of each item's last step; None (counted) where the PRM cannot read the item whole."""
    if not trees_items:
        return []
    scores = prm.score_last([t.problem.question for t, _ in trees_items], [s for _, s in trees_items])
    for (t, s), p in zip(trees_items, scores, strict=True):
        if p is None:
            t.prm_skipped += 1
        else:
            t.record_scored(s, p)
    return scores


def _whole_steps(tree: Tree, row) -> list[str] | None:
    """The usable step texts of one sampled row: cut ones dropped and counted; None when the prompt did not fit."""
    tree.gen_tokens += sum(c.tokens for c in row)
    if any(c.finish_reason == "context" for c in row):
        tree.context += 1
        return None
    whole = [c for c in row if c.finish_reason != "length"]
    tree.capped += len(row) - len(whole)
    return [s for s in (clean_candidate(c.text) for c in whole) if s]


def mcts_round(trees: list[Tree], engine: Engine, prm, prompts: Prompts, cfg, seed: int, rng: random.Random) -> None:
    """One MCTS iteration for every tree, the engine and the PRM called in batches across trees."""
    leaves = [select(t, cfg.uct_c) for t in trees]
    # Expansion: every selected leaf that can still grow, in one engine call.
    grow = [(t, i) for t, i in zip(trees, leaves, strict=True) if not t.nodes[i].terminal]
    outs = _sample(engine, prompts, [(t.problem.question, t.nodes[i].steps) for t, i in grow], cfg.expand_width,
                   cfg, seed) if grow else []  # fmt: skip
    born: list[tuple[Tree, int, list[str]]] = []  # (tree, parent, steps) of every new child, scored in one batch
    for (t, i), row in zip(grow, outs, strict=True):
        node = t.nodes[i]
        node.expanded = True
        texts = _whole_steps(t, row)
        uniques, _ = unique_candidates(texts or [])
        if not uniques:  # a dead end: nothing whole was written, or the prompt no longer fits
            node.terminal = node.dead = True
            continue
        born += [(t, i, node.steps + [text]) for text in uniques]
    for (t, i, steps), p in zip(born, _score(prm, [(t, steps) for t, _, steps in born]), strict=True):
        if p is None:  # the PRM cannot read it whole: not a child
            continue
        child = Node(steps, i, p_plus=p, terminal=is_final(steps[-1]) or len(steps) >= cfg.max_depth)
        t.nodes[i].children.append(len(t.nodes))
        t.nodes.append(child)
    for t, i in grow:
        node = t.nodes[i]
        if node.expanded and not node.children:
            node.terminal = node.dead = True
    # Simulation: from one new child per tree; a terminal leaf is its own value (a dead end is worth 0).
    sim: dict[int, tuple[Tree, int, list[str], float]] = {}
    for k, (t, i) in enumerate(zip(trees, leaves, strict=True)):
        node = t.nodes[i]
        start = rng.choice(node.children) if node.children else i
        value = 0.0 if node.dead else t.nodes[start].p_plus
        sim[k] = (t, start, list(t.nodes[start].steps), value)
    live = [k for k, (t, j, _, _) in sim.items() if not t.nodes[j].terminal]
    for d in range(cfg.simulation_depth):
        live = [k for k in live if not is_final(sim[k][2][-1]) and len(sim[k][2]) < cfg.max_depth]
        if not live:
            break
        outs = _sample(engine, prompts, [(sim[k][0].problem.question, sim[k][2]) for k in live], 1, cfg,
                       seed + 7919 * (d + 1))  # fmt: skip
        stepped = []
        for k, row in zip(live, outs, strict=True):
            t, j, steps, value = sim[k]
            texts = _whole_steps(t, row)  # a cut step ends the rollout: it is never scored
            if texts:
                stepped.append(k)
                sim[k] = (t, j, steps + [texts[0]], value)
        scores = _score(prm, [(sim[k][0], sim[k][2]) for k in stepped])
        live = []
        for k, p in zip(stepped, scores, strict=True):
            t, j, steps, value = sim[k]
            if p is None:  # unreadable by the PRM: the rollout ends before it
                sim[k] = (t, j, steps[:-1], value)
                continue
            sim[k] = (t, j, steps, min(value, p))
            live.append(k)
    for t, j, _, value in sim.values():
        backprop(t, j, value)
        t.iterations += 1


def extract_pairs(tree: Tree, cfg) -> list[CandidatePair]:
    """Best / worst children of each expanded node by P("+"), widest margins first."""
    found = []
    for i, node in enumerate(tree.nodes):
        if len(node.children) < 2:
            continue
        kids = [tree.nodes[j] for j in node.children]
        best = max(kids, key=lambda n: n.p_plus)
        worst = min(kids, key=lambda n: n.p_plus)
        margin = best.p_plus - worst.p_plus
        if margin >= cfg.min_margin and margin > 0:
            found.append((margin, node.visits, i, best, worst))
    found.sort(key=lambda x: (-x[0], -x[1], x[2]))
    return [
        CandidatePair(
            question=tree.problem.question,
            prev_steps=list(tree.nodes[i].steps),
            best=best.steps[-1],
            worst=worst.steps[-1],
            p_best=best.p_plus,
            p_worst=worst.p_plus,
            meta={
                "problem_id": tree.problem.id,
                "depth": tree.nodes[i].depth,
                "siblings": len(tree.nodes[i].children),
                "parent_visits": visits,
            },
        )
        for _, visits, i, best, worst in found[: cfg.pairs_per_problem]
    ]


def trace_of(tree: Tree, n_pairs: int) -> MCTSTrace:
    return MCTSTrace(
        problem_id=tree.problem.id,
        iterations=tree.iterations,
        nodes=len(tree.nodes),
        expanded=sum(n.expanded for n in tree.nodes),
        max_depth=max(n.depth for n in tree.nodes),
        root_visits=tree.nodes[0].visits,
        answers=sum(bool(n.steps) and is_final(n.steps[-1]) for n in tree.nodes),
        gen_tokens=tree.gen_tokens,
        prm_scored=tree.prm_scored,
        pairs=n_pairs,
        scored_steps=tree.scored_steps,
        capped=tree.capped,
        context=tree.context,
        prm_skipped=tree.prm_skipped,
    )


def run_mcts(
    problems: list[Problem],
    engine: Engine,
    prm,
    prompts: Prompts,
    cfg,
    *,
    out_dir: Path | None = None,
    progress: bool = True,
    keep_trees: list | None = None,
) -> tuple[list[MCTSTrace], list[CandidatePair]]:
    """`cfg.iterations` MCTS iterations per problem, `cfg.max_active` trees at a time; resumable with `out_dir`.

    `keep_trees`, when a list, receives every finished Tree (tests check the tree invariants on it)."""
    from psrlm.progress import bar as progress_bar

    if cfg.expand_width < 2:
        raise ValueError(f"initdata.expand_width={cfg.expand_width}: need at least 2 siblings to compare")
    plog = ProblemLog(out_dir, MCTSTrace, CandidatePair) if out_dir is not None else None
    todo = [p for p in problems if not plog or p.id not in plog.done]
    traces: list[MCTSTrace] = []
    pairs: list[CandidatePair] = []
    bar = progress_bar(len(problems), "mcts", "problem", len(problems) - len(todo), progress)
    try:
        for b in range(0, len(todo), cfg.max_active):
            trees = [Tree(p) for p in todo[b : b + cfg.max_active]]
            rng = random.Random(f"mcts:{cfg.seed}:{trees[0].problem.id}")
            for it in range(cfg.iterations):
                mcts_round(trees, engine, prm, prompts, cfg, cfg.seed + 100_003 * it + b, rng)
                bar.set_postfix(iteration=it + 1, refresh=False)
            for t in trees:
                found = extract_pairs(t, cfg)
                tr = trace_of(t, len(found))
                if plog:
                    plog.commit(tr, found)
                if keep_trees is not None:
                    keep_trees.append(t)
                traces.append(tr)
                pairs += found
                bar.update(1)
    finally:
        bar.close()
        if plog:
            plog.close()
    if plog:
        return plog.ordered_traces(problems), plog.items()
    return traces, pairs
