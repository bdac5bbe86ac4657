"""MCTS for EFT candidate pairs: tree invariants with a real tiny model, UCT on a scripted policy, resume."""

import hashlib

from psrlm.configs import InitDataConfig
from psrlm.engines.hf import HFEngine
from psrlm.initdata.mcts import run_mcts, select
from psrlm.prompts import get_prompts
from psrlm.tasks.arith import Difficulty, generate_split

from .fakes import ScriptedEngine


class HashPRM:
    """A deterministic stand-in PRM: P("+") from a hash of the scored text (the tree logic is under test)."""

    def __init__(self):
        self.calls = []

    def score_last(self, questions, steps):
        self.calls.append(len(questions))
        return [int(hashlib.sha256(s[-1].encode()).hexdigest()[:4], 16) / 0xFFFF for s in steps]


class CountingEngine:
    def __init__(self, inner):
        self.inner, self.calls, self.stats = inner, [], inner.stats

    def generate(self, prompts, params):
        self.calls.append((len(prompts), params.n))
        return self.inner.generate(prompts, params)


def _cfg(**kw) -> InitDataConfig:
    base = dict(iterations=6, simulation_depth=2, expand_width=3, max_depth=3, max_step_tokens=8, max_active=4,
                min_margin=0.0, pairs_per_problem=2, temperature=1.0)  # fmt: skip
    return InitDataConfig(**{**base, **kw})


def test_tree_invariants_with_a_real_tiny_model(stepping_model_dir, tmp_path):
    """A tiny model that writes whole steps about half the time (the random one runs into every cap, and a step
    cut at the cap is never a child): every tree invariant, every cut step counted, resume."""
    problems = generate_split(0, 3, Difficulty(2, 3, 20), "mcts")
    engine = CountingEngine(HFEngine(stepping_model_dir, device="cpu", dtype="float32"))
    cfg = _cfg(max_step_tokens=48, expand_width=4)
    trees = []
    traces, pairs = run_mcts(problems, engine, HashPRM(), get_prompts("compact"), cfg, out_dir=tmp_path / "m",
                             progress=False, keep_trees=trees)  # fmt: skip
    assert len(trees) == len(traces) == 3
    # batched across problems: per iteration at most one expansion call (n = width; none once every selected leaf
    # is terminal) and at most `depth` rollout calls
    expansions = [c for c in engine.calls if c[1] == cfg.expand_width]
    assert 1 <= len(expansions) <= cfg.iterations and all(n <= 3 for n, _ in expansions)
    assert sum(tr.capped for tr in traces) > 0  # this model runs into the cap too: counted, never a child
    assert len(engine.calls) <= cfg.iterations * (1 + cfg.simulation_depth)
    for t in trees:
        root = t.nodes[0]
        assert root.visits == t.iterations == cfg.iterations
        for i, node in enumerate(t.nodes):
            assert node.depth <= cfg.max_depth
            assert node.visits >= sum(t.nodes[j].visits for j in node.children)
            assert all(t.nodes[j].parent == i and t.nodes[j].depth == node.depth + 1 for j in node.children)
            assert not (node.terminal and node.children)  # a terminal node is never expanded
            assert 0.0 <= node.p_plus <= 1.0
            if node.visits:
                assert 0.0 <= node.value / node.visits <= 1.0
        texts = [[" ".join(t.nodes[j].steps[-1].split()) for j in n.children] for n in t.nodes]
        assert all(len(ts) == len(set(ts)) for ts in texts)  # siblings are distinct steps
    by_id = {t.problem.id: t for t in trees}
    assert pairs and all(tr.pairs <= cfg.pairs_per_problem for tr in traces)
    for p in pairs:  # best and worst are siblings: the max and min P("+") among the same node's children
        t = by_id[p.meta["problem_id"]]
        [parent] = [n for n in t.nodes if n.steps == p.prev_steps and n.children]
        kids = [t.nodes[j] for j in parent.children]
        assert p.p_best == max(k.p_plus for k in kids) and p.p_worst == min(k.p_plus for k in kids)
        assert p.best in [k.steps[-1] for k in kids] and p.worst in [k.steps[-1] for k in kids]
        assert p.meta["depth"] == len(p.prev_steps) < cfg.max_depth

    # Resume: everything is on disk, so a rerun generates nothing and returns the same pairs.
    again = CountingEngine(HFEngine(stepping_model_dir, device="cpu", dtype="float32"))
    traces2, pairs2 = run_mcts(problems, again, HashPRM(), get_prompts("compact"), cfg, out_dir=tmp_path / "m",
                               progress=False)  # fmt: skip
    assert again.calls == [] and pairs2 == pairs and [t.problem_id for t in traces2] == [p.id for p in problems]


def test_uct_concentrates_visits_on_the_branch_the_prm_likes():
    def steps(question, prev, params):
        d = len(prev)
        final = " The answer is \\boxed{1}." if d == 2 else ""
        return [f"good {d}{final}", f"bad {d}{final}", f"meh {d}{final}"][: params.n]

    class WordPRM:
        def score_last(self, questions, steps):
            return [{"good": 0.9, "meh": 0.5, "bad": 0.1}[s[-1].split()[0]] for s in steps]

    problems = generate_split(0, 2, Difficulty(2, 3, 20), "uct")
    trees = []
    cfg = _cfg(iterations=30, max_depth=6, uct_c=0.5)
    _, pairs = run_mcts(problems, ScriptedEngine(steps, None), WordPRM(), get_prompts("compact"), cfg,
                        progress=False, keep_trees=trees)  # fmt: skip
    for t in trees:
        root = t.nodes[0]
        visits = {t.nodes[j].steps[-1].split()[0]: t.nodes[j].visits for j in root.children}
        assert visits["good"] > visits["meh"] > 0 and visits["good"] > visits["bad"]
        assert t.nodes[select(t, cfg.uct_c)].depth >= 1
        # answers end a branch: no node below a boxed step
        assert all(not n.children for n in t.nodes if n.steps and "boxed" in n.steps[-1])
    assert all(p.best.startswith("good") and p.worst.startswith("bad") for p in pairs)
    assert all(abs(p.p_best - p.p_worst - 0.8) < 1e-9 for p in pairs)


class FinishEngine:
    """Steps by rule, each with the finish reason a real engine gives: "cut" steps stopped at the token cap
    ("length"), and every prompt past depth 2 too long for the policy's context ("context")."""

    def __init__(self):
        from psrlm.engines.base import EngineStats

        self.stats = EngineStats()

    def generate(self, prompts, params):
        import re

        from psrlm.engines.base import Completion

        out = []
        for p in prompts:
            d = len(re.findall(r"Step \d+: ", p))
            if d >= 3:
                out.append([Completion("", 0, "context")] * params.n)
                continue
            texts = [f"good {d}", f"cut {d} half a st", f"long {d}", f"bad {d}"][: params.n]
            out.append([Completion(" " + t, 5, "length" if t.startswith("cut") else "stop") for t in texts])
        return out


def test_half_steps_and_unreadable_steps_never_become_children_nor_judge_data():
    """As in the step search: a step cut at max_step_tokens is dropped and counted, never a child, a rollout step
    or half of a pair; a node whose prompt no longer fits the policy's context is a dead end (counted); a step the
    PRM cannot read whole (None) is dropped and counted."""

    class PRM:
        def score_last(self, questions, steps):
            return [None if s[-1].startswith("long") else {"good": 0.9, "bad": 0.1}.get(s[-1].split()[0], 0.5)
                    for s in steps]  # fmt: skip

    problems = generate_split(0, 2, Difficulty(2, 3, 20), "cut")
    trees = []
    cfg = _cfg(iterations=12, expand_width=4, max_depth=6, simulation_depth=2)
    traces, pairs = run_mcts(problems, FinishEngine(), PRM(), get_prompts("compact"), cfg, progress=False,
                             keep_trees=trees)  # fmt: skip
    for t, tr in zip(trees, traces, strict=True):
        texts = [n.steps[-1] for n in t.nodes if n.steps]
        assert texts and not any(x.startswith(("cut", "long")) for x in texts)
        assert all(n.depth <= 3 for n in t.nodes)  # nothing below the depth where prompts stop fitting
        assert tr.capped > 0 and tr.prm_skipped > 0 and tr.context > 0
    assert pairs and all(p.best.startswith("good") and p.worst.startswith("bad") for p in pairs)


def test_eft_pipeline_on_real_problems_without_an_oracle(tiny_model_dir, tmp_path):
    """The path a user with a real model takes: problems from a JSONL, a given policy and a "+"/"-" PRM, a model
    teacher. Here every model is the random tiny one, so this pins the plumbing, not the quality."""
    import json

    from psrlm.cli import main

    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps({"id": f"q{i}", "question": f"What is {i} + 2?", "answer": str(i + 2)})
                                + "\n" for i in range(3)))  # fmt: skip
    run = tmp_path / "run"
    sets = [f"paths.run_dir={run}", f"initdata.eft_problems={problems}", f"initdata.policy_path={tiny_model_dir}",
            f"initdata.prm_path={tiny_model_dir}", "initdata.prm_format=next_token", "initdata.teacher=engine",
            "initdata.teacher_engine.kind=hf", f"initdata.teacher_model={tiny_model_dir}", "initdata.iterations=3",
            "initdata.simulation_depth=1", "initdata.expand_width=2", "initdata.max_depth=2",
            "initdata.max_step_tokens=6", "initdata.min_margin=0.0", "initdata.judge_max_tokens=8",
            "initdata.eft_test=1", "prompts.variant=compact"]  # fmt: skip
    args = ["data", "eft"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    counts = json.loads((run / "initdata" / "eft_counts.json").read_text())
    assert counts["mcts"]["problems"] == 3 and "oracle_pair_precision" not in counts
    f = counts["filters"]
    assert (
        f["candidate_pairs"]
        == f["kept"] + f["removed_teacher_failure"] + f["removed_inconsistent"] + f["removed_disagrees_with_prm"]
    )
    assert (run / "initdata" / "eft_train.jsonl").exists() and (run / "initdata" / "eft_rejects.jsonl").exists()


def test_a_teacher_that_rejects_its_settings_stops_data_eft_before_the_tree_search(tiny_model_dir, tmp_path, capsys):
    """The teacher comes last in `psrlm data eft`, after hours of tree search at scale: one request with the stage's
    own settings goes first, and a teacher that refuses them (o1 asked with max_tokens) stops it in one line."""
    import json

    from psrlm.cli import main

    from .serving import NO_KEY, TeacherAPI

    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "q0", "question": "What is 1 + 2?", "answer": "3"}) + "\n")
    run = tmp_path / "run"
    with TeacherAPI(reasoning=True) as api:
        sets = [f"paths.run_dir={run}", f"initdata.eft_problems={problems}", f"initdata.policy_path={tiny_model_dir}",
                f"initdata.prm_path={tiny_model_dir}", "initdata.prm_format=next_token", "initdata.teacher_model=o1",
                "initdata.teacher_engine.api=chat", f"initdata.teacher_engine.base_urls=[{api.base_url}]",
                f"initdata.teacher_engine.api_key_env={NO_KEY}", "initdata.teacher_engine.max_retries=0",
                "prompts.variant=compact"]  # fmt: skip
        assert main(["data", "eft", *sum((["--set", s] for s in sets), [])]) == 2
        assert len(api.bodies) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("psrlm: error: initdata.teacher_engine: the first request (a probe sent before the stage)")
    assert "Use 'max_completion_tokens' instead" in line and "reasoning=true" in line
    assert not (run / "initdata" / "mcts").exists()  # no tree was searched
