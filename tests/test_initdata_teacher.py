"""The teacher of initdata: judgments and the two filters, the oracle teacher, the split, and a REAL
OpenAI-compatible server (tests/serving.py) behind a flaky proxy for segmentation and judging faults."""

import random

import pytest

from psrlm.configs import ConfigError, load_config
from psrlm.engines.base import Completion, GenParams
from psrlm.engines.openai_api import EngineError
from psrlm.initdata.eft_judging import (
    EngineJudgeTeacher,
    OracleJudgeTeacher,
    judge_and_filter,
    split_by_problem,
)
from psrlm.initdata.mcts import CandidatePair
from psrlm.initdata.segment import SolutionRow, segment_rows
from psrlm.initdata.teacher_cache import make_teacher
from psrlm.prompts import get_prompts
from psrlm.records import JudgeExample, StepSolution, read_jsonl
from psrlm.tasks.arith import Difficulty, corrupt_step, generate_split, label_step

from .serving import NO_KEY, FlakyProxy


def _pair(i: int, pid: str = "p") -> CandidatePair:
    return CandidatePair("Q?", ["s1"], f"best{i}", f"worst{i}", 0.9, 0.1, {"problem_id": f"{pid}{i}", "depth": 1})


class TableTeacher:
    """Answers (best shown as A, best shown as B) from a table, per pair index."""

    name = "table"

    def __init__(self, table):
        self.table = table

    def judge(self, asks):
        out = []
        for p, a, _ in asks:
            first, second = self.table[int(p.best[4:])]
            out.append(first if a == p.best else second)
        return out


C = Completion
GOOD = (C("B miscounts. [[A]]", 5), C("A miscounts. [[B]]", 5))


@pytest.mark.parametrize(
    "answers, removed_by",
    [
        (GOOD, None),
        ((C("fine [[A]]", 3), C("fine [[A]]", 3)), "removed_inconsistent"),  # position-biased teacher
        ((C("A wrong [[B]]", 3), C("B wrong [[A]]", 3)), "removed_disagrees_with_prm"),
        ((C("I think A is better.", 5), GOOD[1]), "no_verdict"),
        ((GOOD[0], C("", 0)), "empty"),
        ((C("", 0, "error"), GOOD[1]), "error"),
        ((C("Step A is wrong because", 5, "length"), GOOD[1]), "truncated"),
        ((C("[[A]]", 1), GOOD[1]), "no_explanation"),
        ((C("[[A]] or [[B]]", 3), GOOD[1]), "removed_inconsistent"),  # the last tag is the verdict: B, then B
    ],
)
def test_each_filter_removes_what_it_should(answers, removed_by):
    kept, rejects, counts = judge_and_filter([_pair(0)], TableTeacher([answers]))
    assert counts["candidate_pairs"] == 1 and counts["teacher_requests"] == 2
    if removed_by is None:
        assert counts["kept"] == 1 and not rejects
        [ex] = kept
        assert (ex.step_a, ex.step_b, ex.verdict, ex.explanation) == ("best0", "worst0", "A", "B miscounts.")
    elif removed_by.startswith("removed_"):
        assert counts[removed_by] == 1 and counts["kept"] == 0
    else:
        assert counts["teacher_failures"][removed_by] == 1 and counts["removed_teacher_failure"] == 1


def test_kept_examples_alternate_positions_and_split_by_problem():
    pairs = [_pair(i, pid=f"q{i // 2}-") for i in range(20)]
    for p in pairs:
        p.meta["problem_id"] = p.meta["problem_id"].split("-")[0]  # two pairs per problem
    kept, _, counts = judge_and_filter(pairs, TableTeacher([GOOD] * 20))
    assert counts["kept"] == 20 and [e.verdict for e in kept[:4]] == ["A", "B", "A", "B"]
    assert kept[1].step_b == "best1" and kept[1].explanation == "A miscounts."  # explanation of the shown order
    train, test = split_by_problem(kept, 6, seed=0)
    assert len(test) == 6 and len(train) == 14
    assert not {e.meta["problem_id"] for e in train} & {e.meta["problem_id"] for e in test}


def test_oracle_teacher_agrees_with_the_oracle_and_is_position_biased_on_ties():
    problems = generate_split(0, 20, Difficulty(2, 4, 20), "o")
    rng = random.Random(0)
    pairs = []
    for p in problems:
        wrong = corrupt_step(p, 0, "arithmetic_slip", rng)
        if wrong:
            pairs.append(CandidatePair(p.question, [], p.meta["steps"][0], wrong, 0.9, 0.2, {"problem_id": p.id}))
            pairs.append(CandidatePair(p.question, [], wrong, p.meta["steps"][0], 0.8, 0.3, {"problem_id": p.id}))
            other = corrupt_step(p, 0, "wrong_operation", rng)
            if other and other != wrong:
                pairs.append(CandidatePair(p.question, [], wrong, other, 0.7, 0.4, {"problem_id": p.id}))
    teacher = OracleJudgeTeacher({p.id: p for p in problems})
    kept, rejects, counts = judge_and_filter(pairs, teacher)
    assert counts["kept"] == sum(p.best == problems_step(problems, p) for p in pairs) > 0
    assert counts["removed_disagrees_with_prm"] > 0 and counts["removed_inconsistent"] > 0
    by_id = {p.id: p for p in problems}
    for e in kept:
        good = e.step_a if e.verdict == "A" else e.step_b
        assert label_step(by_id[e.meta["problem_id"]], e.prev_steps, good).correct
        assert e.meta["teacher"] == "oracle" and "is" in e.explanation


def problems_step(problems, pair):
    return next(p.meta["steps"][0] for p in problems if p.id == pair.meta["problem_id"])


def test_the_teachers_explanation_is_kept_as_written():
    """EFT trains the judge to write the teacher's explanation: its paragraphs and the spacing of its formulas are
    part of it (they were collapsed to one line of single spaces)."""
    text = "Step B says $2 + 3 = 6$.\n\nThat is wrong:\n  $2 + 3 = 5$."
    answers = (C(f"  {text}\n[[A]]", 9), C("Step A says 6. [[B]]", 5))
    [ex], _, _ = judge_and_filter([_pair(0)], TableTeacher([answers]))
    assert ex.explanation == text


def test_eft_problems_from_a_file_are_drawn_across_it_not_its_first_rows(tmp_path):
    """MATH train is sorted by subject: its first 200 rows are all algebra. `initdata.mcts_problems` problems are
    now drawn with `initdata.seed` from the whole file, and questions of an evaluated test set are left out."""
    import json

    from psrlm.initdata.eft_pipeline import read_eft_problems

    subjects = ["algebra", "geometry", "number_theory", "precalculus"]
    rows = [{"problem": f"A {s} question, number {i}?", "solution": "$\\boxed{1}$", "answer": "1",
             "unique_id": f"train/{s}/{i}.json"} for s in subjects for i in range(25)]  # fmt: skip
    data = tmp_path / "data"
    (data / "train" / "math").mkdir(parents=True)
    (data / "train" / "math" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (data / "benchmarks" / "math500").mkdir(parents=True)
    test = {"problem": "A geometry question, number 3?", "answer": "1", "unique_id": "test/x/1.json"}
    (data / "benchmarks" / "math500" / "test.jsonl").write_text(json.dumps(test) + "\n")
    sets = [f"paths.data_dir={data}", f"paths.run_dir={tmp_path / 'run'}", "initdata.eft_problems=math",
            "initdata.mcts_problems=12", "iterate.eval_benchmarks=[math500]"]  # fmt: skip
    problems, chosen = read_eft_problems(load_config(None, sets))
    assert len(problems) == 12 and len({p.id.split("/")[1] for p in problems}) >= 3
    assert "A geometry question, number 3?" not in {p.question for p in problems}
    assert chosen["test_overlap"] == {"math500": 1} and chosen["rows"] == 100
    again, _ = read_eft_problems(load_config(None, sets))
    assert [p.id for p in again] == [p.id for p in problems]  # seeded
    other, _ = read_eft_problems(load_config(None, [*sets, "initdata.seed=1"]))
    assert [p.id for p in other] != [p.id for p in problems]


# ------------------------------------------------------------------------ reasoning-model teachers


def test_a_reasoning_teacher_is_asked_with_max_completion_tokens_and_no_sampling_settings():
    """engine.reasoning: OpenAI's reasoning models (o1, the paper's teacher) reject max_tokens, temperature, top_p,
    stop and seed with a 400; their requests carry max_completion_tokens and none of those, greedy or sampled, and
    stop strings are cut on the client."""
    from .serving import TeacherAPI, make_engine

    with TeacherAPI(reasoning=True) as api:
        eng = make_engine([api.base_url], "o1", api="chat", reasoning=True)
        [[greedy]] = eng.generate(["Say OK."], GenParams(max_new_tokens=64, stop=("K",)))
        [[sampled]] = eng.generate(["Say OK."], GenParams(temperature=0.7, top_p=0.9, seed=3, max_new_tokens=32))
        assert (greedy.text, greedy.finish_reason, sampled.text) == ("O", "stop", "OK")
        for body, cap in zip(api.bodies, (64, 32), strict=True):
            assert body["max_completion_tokens"] == cap and body["messages"] == [
                {"role": "user", "content": "Say OK."}
            ]
            assert not {"max_tokens", "temperature", "top_p", "stop", "seed"} & set(body)
        plain = make_engine([api.base_url], "o1", api="chat", max_retries=3)  # not told: a 400, not retried
        with pytest.raises(EngineError, match="HTTP 400 .*Use 'max_completion_tokens' instead"):
            plain.generate(["Say OK."], GenParams(max_new_tokens=8))
        assert len(api.bodies) == 3
    with pytest.raises(ConfigError, match="initdata.teacher_engine.reasoning=True .*set kind=openai and api=chat"):
        load_config(None, ["initdata.teacher_engine.reasoning=true", "initdata.teacher_engine.api=completions"])


def test_a_teacher_that_rejects_most_requests_stops_the_stage_in_one_line(tmp_path):
    """The recipe's o1 asked like a chat model (reasoning off): every request is a 400. The stage stops once more than
    half of at least 8 requests failed, with one line quoting the API and naming the setting, instead of sending
    all 40 (and their retries) and counting them as rejected rows; what succeeded stays cached."""
    from psrlm.initdata.teacher_cache import TeacherFailure

    from .serving import NO_KEY, TeacherAPI

    rows = [SolutionRow(f"r{i}", f"What is {i} + 1?", f"It is {i + 1}. So $\\boxed{{{i + 1}}}$.", str(i + 1))
            for i in range(40)]  # fmt: skip
    with TeacherAPI(reasoning=True) as api:
        sets = [f"paths.run_dir={tmp_path / 'run'}", "initdata.teacher_model=o1", "initdata.chunk_size=8",
                "initdata.teacher_engine.api=chat", f"initdata.teacher_engine.base_urls=[{api.base_url}]",
                f"initdata.teacher_engine.api_key_env={NO_KEY}", "initdata.teacher_engine.max_retries=0"]  # fmt: skip
        with make_teacher(load_config(None, sets), tmp_path / "run", progress=False) as teacher:
            with pytest.raises(TeacherFailure) as failed:
                segment_rows(rows, teacher, get_prompts("paper"), tmp_path / "out", retries=1, chunk_size=8)
        assert len(api.bodies) == 8
        msg = str(failed.value)
        assert "\n" not in msg and msg.startswith("initdata.teacher_engine: 8 of 8 requests to the teacher o1 [chat]")
        assert "Use 'max_completion_tokens' instead" in msg and "set initdata.teacher_engine.reasoning=true" in msg
        with make_teacher(load_config(None, [*sets, "initdata.teacher_engine.reasoning=true"]), tmp_path / "run",
                          progress=False) as teacher:  # fmt: skip
            counts = segment_rows(rows, teacher, get_prompts("paper"), tmp_path / "out", retries=1, chunk_size=8)
        assert counts["accepted"] == 40 and counts["teacher"]["request_errors"] == 0


# ------------------------------------------------------------------------------------ a real server


def _teacher_cfg(tmp_path, url, server, **kw):
    sets = [f"paths.run_dir={tmp_path / 'run'}", f"initdata.teacher_model={server.model}",
            f"initdata.teacher_engine.base_urls=[{url}]", f"initdata.teacher_engine.api_key_env={NO_KEY}",
            "initdata.teacher_engine.concurrency=1", "initdata.chunk_size=16"]  # fmt: skip
    return load_config(None, sets + [f"initdata.teacher_engine.{k}={v}" for k, v in kw.items()])


def test_segmentation_through_a_real_server_survives_every_fault(server, tmp_path):
    sol = "Add the numbers: 2 + 3 = 5. So the answer is \\boxed{5}."
    rows = [SolutionRow(f"r{i}", f"What is 2 + 3? ({i})", sol, "5") for i in range(7)]
    good = "Step 1: Add the numbers: 2 + 3 = 5.\nStep 2: So the answer is \\boxed{5}."
    script = [
        ("text", good, "stop"),  # r0: accepted
        ("text", good.replace("= 5", "= 6"), "stop"),  # r1: the teacher changed the solution
        ("text", "Step 1: Add the numbers:", "length"),  # r2: stopped mid-output
        ("text", "", "stop"),  # r3: an empty completion
        503, None,  # r4: a 5xx, retried: the real server's (random-weight) answer
        ("slow", 2.5), ("slow", 2.5),  # r5: times out, and again on the retry: a failed request
        "garbage", None,  # r6: a broken answer, then the real server
    ]  # fmt: skip
    with FlakyProxy(server.root, failures=script) as proxy:
        cfg = _teacher_cfg(tmp_path, proxy.base_url, server, timeout_s=1.0, max_retries=1)
        with make_teacher(cfg, cfg.paths.run_dir, progress=False) as teacher:
            teacher.engine.backoff_s = 0.01
            counts = segment_rows(rows, teacher, get_prompts("paper"), tmp_path / "out", max_tokens=12, retries=0)
    by = counts["rejected_by_reason"]
    assert counts["accepted"] == 1 and counts["rejected"] == 6
    assert by["altered"] == 1 and by["error"] == 1 and by["empty"] >= 1 and by["truncated"] >= 1
    assert by["truncated"] + by["no_steps"] + by["empty"] == 4  # r2, r3 and the random model's answers to r4, r6
    [ok] = read_jsonl(tmp_path / "out" / "ift_segmented.jsonl", StepSolution)
    assert ok.steps == ["Add the numbers: 2 + 3 = 5.", "So the answer is \\boxed{5}."] and ok.final_answer == "5"
    assert counts["teacher"]["request_errors"] == 1
    assert proxy.statuses.count(503) == 1

    # Restart: answers come from the cache; only the failed request (r5) goes out again, to the real server.
    with FlakyProxy(server.root) as proxy2:
        cfg = _teacher_cfg(tmp_path, proxy2.base_url, server, timeout_s=60.0)
        with make_teacher(cfg, cfg.paths.run_dir, progress=False) as teacher:
            counts2 = segment_rows(rows, teacher, get_prompts("paper"), tmp_path / "out", max_tokens=12, retries=0)
    assert proxy2.statuses == [200]
    assert counts2["rejected_by_reason"]["error"] == 0 and counts2["accepted"] + counts2["rejected"] == 7


def test_judgments_through_a_real_server_count_failures_and_filter(server, tmp_path):
    pairs = [_pair(i) for i in range(4)]
    script = [
        ("text", "B is off by one. [[A]]", "stop"), ("text", "A is off by one. [[B]]", "stop"),  # kept
        ("text", "Looks right. [[A]]", "stop"), ("text", "Looks right. [[A]]", "stop"),  # inconsistent
        500, ("text", "B is better. [[B]]", "stop"),  # a 5xx that stays a failure (no retries left)
        ("text", "Both steps look fine.", "stop"), ("text", "Both steps look fine.", "stop"),  # no verdict
    ]  # fmt: skip
    # Every answer is scripted: what a random-weight model says through whichever `transformers serve` is installed
    # is not this test's business (transformers 5.25 answers its 637-token judge prompt with a 400, 5.24 with text).
    # The real server still stands behind the proxy: the client lists its models and checks the served name.
    with FlakyProxy(server.root, failures=script) as proxy:
        cfg = _teacher_cfg(tmp_path, proxy.base_url, server, max_retries=0)
        with make_teacher(cfg, cfg.paths.run_dir, progress=False) as cached:
            teacher = EngineJudgeTeacher(cached, get_prompts("paper"), max_tokens=8)
            kept, rejects, counts = judge_and_filter(pairs, teacher)
    assert counts["kept"] == 1 and counts["removed_inconsistent"] == 1
    assert counts["teacher_failures"]["error"] == 1 and counts["teacher_failures"]["no_verdict"] == 1
    assert counts["removed_teacher_failure"] == 2 and len(rejects) == 3
    assert proxy.statuses == [200, 200, 200, 200, 500, 200, 200, 200]
    [ex] = kept
    assert isinstance(ex, JudgeExample) and ex.verdict == "A" and ex.explanation == "B is off by one."
    assert ex.meta["teacher"] == server.model and proxy.statuses.count(500) == 1
