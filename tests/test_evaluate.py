"""Evaluation on a tiny real model: per-benchmark results resume, test-time search vs greedy with its compute, the
Appendix B comparison; and the CLI on a run folder."""

from __future__ import annotations

import dataclasses
import json

import pytest

from psrlm.engines.hf import HFEngine
from psrlm.evaluate import SolveResult, evaluate_benchmarks, tts_vs_greedy
from psrlm.judge_eval import compare_judging
from psrlm.prompts import get_prompts
from psrlm.records import JudgeExample, Problem, read_jsonl

PROMPTS = get_prompts("compact")


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine(tiny_model_dir, device="cpu", dtype="float32", batch_size=16)


def _problems(n: int, prefix: str = "p") -> list[Problem]:
    return [Problem(f"{prefix}{i}", f"Tom has {i} apples and finds 2 more. How many now?", str(i + 2), "t")
            for i in range(n)]  # fmt: skip


def test_benchmark_results_are_written_per_problem_and_resume(engine, tmp_path):
    out = tmp_path / "eval"
    first = evaluate_benchmarks({"a": _problems(3), "b": _problems(2, "q")}, engine, PROMPTS, out, max_tokens=8,
                                chunk=2, progress=False)  # fmt: skip
    assert first["a"]["n"] == 3 and first["b"]["n"] == 2
    rows = read_jsonl(out / "a.jsonl", SolveResult)
    assert [r.problem_id for r in rows] == ["p0", "p1", "p2"]
    assert all(r.prompt and r.gold and r.tokens > 0 for r in rows)
    calls = engine.stats.calls
    again = evaluate_benchmarks({"a": _problems(5)}, engine, PROMPTS, out, max_tokens=8, progress=False)
    assert engine.stats.calls == calls + 1  # only the 2 new problems, in one call
    assert again["a"]["n"] == 5 and len(read_jsonl(out / "a.jsonl")) == 5
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"a", "b"} and summary["a"]["n"] == 5
    smaller = evaluate_benchmarks({"a": _problems(2)}, engine, PROMPTS, out, max_tokens=8, progress=False)
    assert engine.stats.calls == calls + 1 and smaller["a"]["n"] == 2  # answered from disk
    assert json.loads((out / "summary.json").read_text())["a"]["n"] == 5  # the file still covers all on disk
    assert {"accuracy", "mean_steps", "mean_step_tokens", "no_answer_rate"} <= set(summary["a"])


def test_tts_vs_greedy_reports_compute(stepping_model_dir, small_cfg, tmp_path):
    engine = HFEngine(stepping_model_dir, device="cpu", dtype="float32", batch_size=16)
    cfg = dataclasses.replace(small_cfg.search, width=2, max_steps=2, max_rounds=3, max_step_tokens=24,
                              judge_max_tokens=6)  # fmt: skip
    r = tts_vs_greedy(_problems(2), engine, PROMPTS, cfg, tmp_path, max_tokens=16, progress=False)
    assert r["n"] == 2 and 0 <= r["greedy"]["accuracy"] <= 1 and 0 <= r["tts"]["accuracy"] <= 1
    assert r["tts"]["tokens_per_problem"] > r["greedy"]["tokens_per_problem"] > 0
    assert r["tts"]["judge_calls_per_problem"] > 0 and r["token_ratio"] > 1
    assert len(read_jsonl(tmp_path / "tts" / "traces.jsonl")) == 2  # the search half is resumable


def test_appendix_b_compares_pairwise_judging_with_scoring(engine):
    items = [JudgeExample("q?", ["Step one."], "right step", "wrong step", "x", "A"),
             JudgeExample("q?", [], "wrong step", "right step", "x", "B")]  # fmt: skip
    r = compare_judging(items, engine, engine, PROMPTS, judge_max_tokens=6, score_max_tokens=6)
    assert r["n"] == 2
    for kind in ("pairwise", "scoring"):
        assert {"agreement", "consistency", "no_preference_rate"} <= set(r[kind])
        assert all(0 <= v <= 1 for v in r[kind].values())
    soft = r["pairwise_soft"]  # the in-process engine also reads the verdict from the logits
    assert all(0 <= soft[k] <= 1 for k in ("agreement", "consistency", "both_orders_agreement"))
    # a random tiny model writes no "Score: X": every scoring round has no preference, and that is what it says
    assert r["scoring"]["no_preference_rate"] == 1.0 and r["scoring"]["agreement"] == 0.0


def test_eval_cli_on_a_run_folder(tiny_model_dir, small_cfg, tmp_path, capsys):
    from psrlm.cli import main

    run = small_cfg.paths.run_dir
    sets = [f"paths.run_dir={run}", "iterate.eval_eft=4", "iterate.eval_max_tokens=12", "search.width=2",
            "search.max_steps=2", "search.max_rounds=2", "search.max_step_tokens=8", "search.judge_max_tokens=6"]  # fmt: skip
    from tests.conftest import SMALL

    args = ["eval", "--model", str(tiny_model_dir), "--name", "m", "--limit", "3", "--tts", "2", "--equations", "2"]
    for s in SMALL + sets:
        args += ["--set", s]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| arith_test | 3 |" in out and "TTS vs greedy on 2" in out
    assert "| arith_test | steps |" in out and "| arith_hard | prose |" in out
    folder = tmp_path / "run" / "eval" / "m"
    assert {"arith_test.jsonl", "arith_hard.jsonl", "summary.json", "judge.json", "tts.json", "equations.json"} <= {
        p.name for p in folder.iterdir()
    }


def _other_model(tiny_model_dir, tmp_path):
    """The tiny model with its weights changed: another model (as a retrained one would be)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    other = tmp_path / "other-src"
    shutil.copytree(tiny_model_dir, other)
    weights = load_file(str(other / "model.safetensors"))
    torch.manual_seed(1)
    save_file({k: v + 0.5 * torch.randn_like(v) for k, v in weights.items()}, str(other / "model.safetensors"),
              metadata={"format": "pt"})  # fmt: skip
    return other


def test_eval_results_belong_to_their_model_and_settings(tiny_model_dir, tmp_path, capsys):
    """The reported stale cache: a different model under the same folder name, or other settings, reported the
    first model's rows. Now each is computed afresh (old rows moved aside, not deleted); equal ones are reused."""
    import shutil

    from psrlm.cli import main
    from tests.conftest import SMALL

    run = tmp_path / "run"
    model = tmp_path / "models" / "M"  # the folder name is what used to key the cache
    shutil.copytree(tiny_model_dir, model)

    def ev(*extra) -> dict:
        args = ["eval", "--model", str(model), "--limit", "4", "--no-judge", "--benchmarks", "arith_test", *extra]
        for s in [*SMALL, f"paths.run_dir={run}", "iterate.eval_max_tokens=24"]:
            args += ["--set", s]
        assert main(args) == 0, capsys.readouterr().err
        capsys.readouterr()
        rows = read_jsonl(run / "eval" / "M" / "arith_test.jsonl", SolveResult)
        return {r.problem_id: (r.response, r.tokens) for r in rows}

    first = ev()
    path = run / "eval" / "M" / "arith_test.jsonl"
    stamp = path.stat().st_mtime_ns
    assert ev() == first and path.stat().st_mtime_ns == stamp  # same model, same settings: reused as is

    shutil.rmtree(model)
    shutil.copytree(_other_model(tiny_model_dir, tmp_path), model)  # another model, same name
    second = ev()
    assert second != first
    replaced = list((run / "replaced").glob("*/eval/M/arith_test.jsonl"))
    assert len(replaced) == 1  # the old rows are kept aside

    shorter = ev("--max-tokens", "3")  # another setting that changes results
    assert all(tokens <= 3 for _, tokens in shorter.values()) and shorter != second
    few = ev("--few-shot")
    assert few != second
    assert len(list(run.glob("replaced/*/eval/M/arith_test.jsonl"))) == 3  # every replaced version kept


def test_a_few_shot_judge_stops_where_the_next_example_would_begin():
    from psrlm.engines.base import Completion, EngineStats
    from psrlm.evaluate import FEW_SHOT_SEP
    from psrlm.judge_eval import judge_accuracy

    class Recorder:
        stats = EngineStats()

        def generate(self, prompts, params):
            self.stop = params.stop
            return [[Completion("A is right. [[A]]", 5)] for _ in prompts]

    item = JudgeExample("q", [], "1 + 1 = 2.", "1 + 1 = 3.", "2 is right.", "A")
    eng = Recorder()
    judge_accuracy([item], eng, PROMPTS, few_shot=[item] * 3)
    assert eng.stop == (FEW_SHOT_SEP,)
    judge_accuracy([item], eng, PROMPTS)
    assert eng.stop == ()


def test_judge_prompts_that_do_not_fit_are_counted_not_silently_wrong(engine):
    """A judge item whose prompt exceeds the model's context (the tiny model reads 512 tokens) is never cut: both
    its judgments count as wrong with no verdict, and `context_skipped` says so (it had no count of its own)."""
    from psrlm.judge_eval import judge_accuracy

    fits = JudgeExample("Tom has 3 apples.", [], "3 + 2 = 5.", "3 + 2 = 6.", "5 is right.", "A")
    huge = dataclasses.replace(fits, question="Tom has 3 apples and 4 pears. " * 120)
    out = judge_accuracy([fits, huge, fits], engine, PROMPTS, max_tokens=4)
    assert out["context_skipped"] == 2 and out["n"] == 3
    assert out["no_verdict_rate"] >= 2 / 6  # the two skipped judgments have no verdict


def test_m0_is_asked_3_shot_only_where_iterate_m0_three_shot_says(tiny_model_dir, tmp_path, monkeypatch):
    """The paper marks only M0's judge as 3-shot. The default (m0_three_shot: [judge]) answers the benchmarks
    zero-shot and prepends three EFT items to the judge prompts; metrics.json records both."""
    from contextlib import contextmanager

    from psrlm.configs import load_config
    from psrlm.dry_run import dry_run
    from psrlm.engines.base import Completion, EngineStats
    from psrlm.evaluation import evaluate_model
    from psrlm.initdata.build import build_arith_data
    from psrlm.runfolder import Run

    from .conftest import SMALL

    class Recorder:
        stats = EngineStats()
        prompts: list[str] = []

        def generate(self, prompts, params):
            Recorder.prompts += prompts
            return [[Completion("Step 1: 1 + 1 = 2. \\boxed{2}", 9)] * params.n for _ in prompts]

    @contextmanager
    def serving(self, model_dir, name="model"):
        yield Recorder()

    monkeypatch.setattr(Run, "serving", serving)
    cfg = load_config(None, [*SMALL, f"paths.run_dir={tmp_path / 'run'}", "iterate.eval_limit=2",
                             "iterate.eval_eft=2", "iterate.eval_max_tokens=8", "iterate.questions=[4]"])  # fmt: skip
    build_arith_data(cfg)
    run = Run(cfg)
    metrics = evaluate_model(run, "M0", tiny_model_dir, few_shot=False, judge_few_shot=True)
    solve = [p for p in Recorder.prompts if p.startswith("Q: ")]  # the compact solve prompt
    judge = [p for p in Recorder.prompts if p.startswith("Judge.")]
    assert len(solve) == 4 and all(p.count("Q: ") == 1 for p in solve)  # zero-shot: just the problem
    assert len(judge) == 4 and all(p.count("Judge.") == 4 for p in judge)  # three examples, then the item
    assert (metrics["few_shot"], metrics["judge_few_shot"]) == (False, True)
    assert any("evaluate M0 (judge 3-shot)" in line for line in dry_run(cfg))


def test_tts_is_reported_per_benchmark_and_over_all(tmp_path):
    """Tables 5/9 over several benchmarks: one search over all their problems, the numbers per benchmark and in
    all, and the search rules it ran under."""
    from psrlm.configs import SearchConfig

    from .fakes import ScriptedEngine, prefer_higher_quality
    from .test_search import three_step_policy

    probs = {"a": [Problem(f"a{i}", f"question a{i}", "1", "a") for i in range(2)],
             "b": [Problem(f"b{i}", f"question b{i}", "2", "b") for i in range(3)]}  # fmt: skip
    flat = [p for ps in probs.values() for p in ps]
    cfg = SearchConfig(width=3, ties="accept", max_rounds=32)
    r = tts_vs_greedy(flat, ScriptedEngine(three_step_policy, prefer_higher_quality), PROMPTS, cfg, tmp_path,
                      progress=False, groups={k: [p.id for p in ps] for k, ps in probs.items()})  # fmt: skip
    assert r["n"] == 5 and {k: v["n"] for k, v in r["benchmarks"].items()} == {"a": 2, "b": 3}
    assert r["benchmarks"]["a"]["tts"]["accuracy"] == 1.0 and r["benchmarks"]["b"]["tts"]["accuracy"] == 0.0
    assert r["tts"]["accuracy"] == pytest.approx(2 / 5) and r["rules"] == {"ties": "accept", "max_rounds": 32,
                                                                          "max_steps": 16}  # fmt: skip


# ------------------------------------------------------------------------------ teacher-forced arithmetic


def _arith_problems(n: int):
    import random

    from psrlm.tasks.arith import Difficulty, generate_problem

    rng = random.Random(0)
    return [generate_problem(rng, Difficulty(2, 4, 20), f"a{i}", "t") for i in range(n)]


@pytest.mark.parametrize("layout", ["steps", "prose"])
def test_equation_prompts_stop_at_each_gold_equals_sign(layout):
    from psrlm.evaluate import equation_prompts

    problems = _arith_problems(5)
    items = equation_prompts(problems, PROMPTS, layout)
    assert len(items) == sum(len(p.meta["equations"]) for p in problems)
    gold = [(op, str(c)) for p in problems for _, op, _, c in p.meta["equations"]]
    assert [(op, r) for _, op, r in items] == gold
    assert all(prompt.endswith("= ") for prompt, _, _ in items)
    first = items[0][0]
    assert ("Step 1:" in first) == (layout == "steps")
    assert first.startswith(PROMPTS.solve_prompt(problems[0].question) if layout == "steps" else problems[0].question)


def test_equation_prompts_reject_an_unknown_layout_and_skip_non_arith_problems():
    from psrlm.evaluate import equation_prompts

    with pytest.raises(ValueError, match="layout 'latex'"):
        equation_prompts(_arith_problems(1), PROMPTS, "latex")
    assert equation_prompts(_problems(2), PROMPTS, "steps") == []


class _AddsOnly:
    """Answers every '+' right and everything else wrong: glue only, the grading is what is tested."""

    def __init__(self, items):
        self.answers = {prompt: (r if op == "+" else "999") for prompt, op, r in items}

    def generate(self, prompts, params):
        from psrlm.engines.base import Completion

        return [[Completion(text=self.answers[p] + ".\nStep", tokens=3)] for p in prompts]


def test_equation_accuracy_grades_each_operator():
    from psrlm.evaluate import equation_accuracy, equation_prompts

    problems = _arith_problems(8)
    engine = _AddsOnly(equation_prompts(problems, PROMPTS, "steps"))
    e = equation_accuracy(problems, engine, PROMPTS, "steps")
    ops = e["per_operator"]
    assert ops["+"]["accuracy"] == 1.0 and all(v["accuracy"] == 0.0 for k, v in ops.items() if k != "+")
    assert e["equations"] == sum(v["n"] for v in ops.values())
    assert e["accuracy"] == pytest.approx(ops["+"]["n"] / e["equations"])


# ------------------------------------------------------------------------------ judge accuracy by error kind


@pytest.mark.parametrize("kinds,scores,expected", [
    ([None, None], [1.0, 0.0], {}),  # items that name no kind (a teacher's EFT): no breakdown
    (["arithmetic_slip", "premature_answer", "arithmetic_slip"], [0.5, 1.0, 0.0],
     {"arithmetic_slip": {"n": 2, "accuracy": 0.25}, "premature_answer": {"n": 1, "accuracy": 1.0}}),
    (["policy", None], [1.0, 0.0], {"policy": {"n": 1, "accuracy": 1.0}}),  # only items with a kind count
])  # fmt: skip
def test_judge_accuracy_by_error_kind(kinds, scores, expected):
    from psrlm.judge_eval import by_error_kind

    items = [JudgeExample("q", [], "a", "b", "", "A", {"error_kind": k} if k else {}) for k in kinds]
    assert by_error_kind(items, scores) == ({"by_kind": expected} if expected else {})


def test_generated_judge_reports_each_kind_from_both_orders():
    from psrlm.engines.base import Completion, EngineStats
    from psrlm.judge_eval import judge_accuracy

    class AlwaysA:  # position-bound: right in one order of every item, so 0.5 on each kind
        stats = EngineStats()

        def generate(self, prompts, params):
            return [[Completion("[[A]]", 1)] for _ in prompts]

    items = [JudgeExample("q", [], "1 + 1 = 2.", "1 + 1 = 3.", "", "A", {"error_kind": "arithmetic_slip"}),
             JudgeExample("q", [], "x", "y \\boxed{3}", "", "A", {"error_kind": "premature_answer"})]  # fmt: skip
    out = judge_accuracy(items, AlwaysA(), PROMPTS)
    assert out["by_kind"] == {
        "arithmetic_slip": {"n": 1, "accuracy": 0.5},
        "premature_answer": {"n": 1, "accuracy": 0.5},
    }


def test_an_unchanged_copy_of_its_parent_takes_the_parents_evaluation_without_being_served(
    tiny_model_dir, tmp_path, monkeypatch
):
    """An iteration whose search made no pairs copies its parent (the demo's SRLM: srlm-M2..M4 are srlm-M1's bytes);
    greedy evaluation is deterministic, so the copy takes the parent's metrics and rows instead of being served and
    measured again, and says whose they are. A "copy" whose weights differ is measured."""
    import shutil
    from contextlib import contextmanager

    from psrlm import stages
    from psrlm.configs import load_config
    from psrlm.engines.base import Completion, EngineStats
    from psrlm.estimate import work
    from psrlm.evaluation import evaluate_model
    from psrlm.questions import prepare_data, question_blocks
    from psrlm.records import Manifest, read_json
    from psrlm.runfolder import Run
    from psrlm.search import SearchResult

    from .conftest import SMALL

    class Recorder:
        stats = EngineStats()

        def generate(self, prompts, params):
            return [[Completion("Step 1: 1 + 1 = 2. \\boxed{2}", 9)] * params.n for _ in prompts]

    served = []

    @contextmanager
    def serving(self, model_dir, name="model"):
        served.append(name)
        yield Recorder()

    monkeypatch.setattr(Run, "serving", serving)
    monkeypatch.setattr(stages, "generate_pairs", lambda *a, **k: SearchResult(traces=[], pairs=[]))  # no pairs
    cfg = load_config(None, [*SMALL, f"paths.run_dir={tmp_path / 'run'}", "iterate.methods=[srlm]",
                             "iterate.questions=[2, 2]", "iterate.eval_limit=2", "iterate.eval_eft=2",
                             "iterate.eval_max_tokens=8"])  # fmt: skip
    run = Run(cfg)
    prepare_data(run)
    m1 = run.layout.model("srlm-M1")
    shutil.copytree(tiny_model_dir, m1)
    run.write_manifest("srlm-M1", Manifest(iteration=1, method="srlm", parent_model="", model_path=str(m1),
                                           settings={"stands.for": "srlm-M1"}))  # fmt: skip
    m2 = stages.run_iteration(run, "srlm", 2, m1, question_blocks(run)[0])
    assert run.load_manifest("srlm-M2").metrics["train"]["skipped"]  # the copy the demo's SRLM makes

    parent = evaluate_model(run, "srlm-M1", m1)
    tokens = work(run.dir)["eval_tokens"]
    served.clear()
    copy = evaluate_model(run, "srlm-M2", m2)
    assert served == []  # not served: the parent's numbers
    assert copy["copy_of"] == "srlm-M1" and copy["model"] == str(m2)
    drop = ("model", "copy_of", "wall_s")
    assert {k: v for k, v in copy.items() if k not in drop} == {k: v for k, v in parent.items() if k not in drop}
    for b in ("arith_test", "arith_hard"):  # the rows behind them, as a report or a resumed evaluation reads them
        assert run.layout.eval_rows("srlm-M2", b).read_bytes() == run.layout.eval_rows("srlm-M1", b).read_bytes()
    assert set(read_json(run.layout.eval_summary("srlm-M2"))) == {"arith_test", "arith_hard"}
    assert evaluate_model(run, "srlm-M2", m2) == copy and served == []  # cached as any evaluation
    assert work(run.dir)["eval_tokens"] == tokens  # generated once, counted once

    # a copy of a copy reads the same numbers; a manifest that says "copy" over other weights is measured
    m3 = stages.run_iteration(run, "srlm", 3, m2, question_blocks(run)[1])
    served.clear()  # its search served its parent
    assert evaluate_model(run, "srlm-M3", m3)["copy_of"] == "srlm-M2" and served == []
    (m3 / "config.json").write_text((m3 / "config.json").read_text() + " ")
    assert "copy_of" not in evaluate_model(run, "srlm-M3", m3) and served == ["srlm-M3"]
