"""The paper's experiment on real-format data: IFT/EFT files and a question pool through `psrlm iterate`, the pool
cleaned of test-set overlaps, bad inputs named before any model loads, and one iteration of configs/paper-7b.yaml
end to end on CPU with the tiny model standing in for Qwen2.5-Math-7B."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from psrlm.configs import ConfigError, load_config
from psrlm.records import JudgeExample, Problem, RecordError, StepSolution, read_jsonl, write_jsonl

from .conftest import REPO

SHARED = REPO.parent / "shared" / "data"


def _data_dir(tmp_path) -> Path:
    """A data folder in the shared layout: MATH-train-style rows and a math500 test file that shares a question."""
    d = tmp_path / "data"
    rows = [{"problem": f"What is ${i} + {i}$?", "solution": f"It is $\\boxed{{{2 * i}}}$.", "answer": str(2 * i),
             "unique_id": f"train/x/{i}.json"} for i in range(12)]  # fmt: skip
    rows.append({"problem": "What is  $1+1$ ?", "solution": "2", "answer": "2", "unique_id": "train/x/dup.json"})
    rows.append({"problem": "No gold here.", "solution": "none", "answer": None, "unique_id": "train/x/none.json"})
    (d / "train" / "math").mkdir(parents=True)
    (d / "train" / "math" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "benchmarks" / "math500").mkdir(parents=True)
    test = [{"problem": "what is $1 + 1$?", "answer": "2", "unique_id": "test/x/1.json"},
            {"problem": "What is $3 + 3$?", "answer": "6", "unique_id": "test/x/3.json"}]  # fmt: skip
    (d / "benchmarks" / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return d


def _files(tmp_path) -> dict:
    ift = tmp_path / "ift.jsonl"
    write_jsonl(ift, [StepSolution("i5", ["5 + 5 = 10.", "\\boxed{10}"], "10", {"question": "What is $5 + 5$?"})])
    eft_test = tmp_path / "eft_test.jsonl"
    item = JudgeExample("What is $7 + 7$?", [], "7 + 7 = 14.", "7 + 7 = 15.", "14 is right.", "A")
    write_jsonl(tmp_path / "eft_train.jsonl", [item])
    write_jsonl(eft_test, [item])
    return {"ift": ift, "eft_train": tmp_path / "eft_train.jsonl", "eft_test": eft_test}


def _files_cfg(tmp_path, tiny_model_dir, *extra: str):
    f = _files(tmp_path)
    return load_config(None, [
        f"paths.run_dir={tmp_path / 'run'}", f"paths.data_dir={_data_dir(tmp_path)}", "data.source=files",
        f"data.ift_files=[{f['ift']}]", f"data.eft_train_file={f['eft_train']}", f"data.eft_test_file={f['eft_test']}",
        "data.questions=math", "iterate.methods=[psrlm]", "iterate.eval_benchmarks=[math500]",
        f"model.path={tiny_model_dir}", *extra,
    ])  # fmt: skip


def test_the_pool_loses_test_overlaps_init_questions_and_repeats(tmp_path, tiny_model_dir):
    from psrlm.questions import prepare_data, question_blocks
    from psrlm.runfolder import Run

    cfg = _files_cfg(tmp_path, tiny_model_dir, "iterate.questions=[4, 4]")
    run = Run(cfg)
    prepare_data(run)
    counts = json.loads((run.data / "questions.json").read_text())
    # "What is $3 + 3$?" is a math500 question; so is "What is  $1+1$ ?" once normalised; "$1 + 1$" too;
    # "$5 + 5$" is an IFT question, "$7 + 7$" an EFT one; one row has no gold at all
    assert counts["test_overlap"] == {"math500": 3} and counts["used_for_init"] == 2 and counts["no_answer"] == 1
    assert counts["kept"] == 12 - 2 - 2 == 8 and counts["read"] == 14
    blocks = question_blocks(run)
    assert [len(b) for b in blocks] == [4, 4]
    assert not {p.id for p in blocks[0]} & {p.id for p in blocks[1]}  # disjoint


def test_too_few_fresh_questions_is_a_clear_error(tmp_path, tiny_model_dir):
    from psrlm.questions import prepare_data, question_blocks
    from psrlm.runfolder import Run

    run = Run(_files_cfg(tmp_path, tiny_model_dir, "iterate.questions=[4, 5]"))
    prepare_data(run)
    with pytest.raises(ValueError, match=r"needs 9 fresh questions but the pool has 8 .*questions\.json"):
        question_blocks(run)


def test_a_pool_row_without_an_answer_names_file_and_line(tmp_path, tiny_model_dir):
    from psrlm.initdata.pool import read_pool

    pool = tmp_path / "numina.jsonl"
    pool.write_text('{"problem": "a?", "answer": "1"}\n{"problem": "b?"}\n')
    cfg = _files_cfg(tmp_path, tiny_model_dir, f"data.questions={pool}", "data.question_field=problem")
    with pytest.raises(RecordError, match=rf"{pool}:2: no answer"):
        read_pool(cfg)


@pytest.mark.parametrize("key", ["data.eft_test_file", "data.questions", "data.ift_files"])
def test_a_recipe_naming_a_missing_file_fails_before_any_model_loads(tmp_path, tiny_model_dir, key):
    from psrlm.iterate import check_paths

    missing = tmp_path / "nowhere.jsonl"
    value = f"[{missing}]" if key == "data.ift_files" else str(missing)
    cfg = _files_cfg(tmp_path, tiny_model_dir, f"{key}={value}")
    with pytest.raises(ConfigError, match=rf"{key.replace('.', '[.]')}(\[0\])?: {missing} does not exist"):
        check_paths(cfg)


def test_ift_without_a_question_is_named(tmp_path, tiny_model_dir):
    from psrlm.iterate import check_paths

    bad = tmp_path / "bad_ift.jsonl"
    write_jsonl(bad, [StepSolution("x", ["1 + 1 = 2."], "2", {})])
    with pytest.raises(ConfigError, match="has no meta.question"):
        check_paths(_files_cfg(tmp_path, tiny_model_dir, f"data.ift_files=[{bad}]"))


def test_iterate_refuses_training_files_that_hold_test_questions(tmp_path, tiny_model_dir):
    """The pool was the only data checked against the test sets; IFT and EFT train files are now too, in one line
    before any model loads (`psrlm data ift|eft` leave such questions out)."""
    from psrlm.questions import prepare_data
    from psrlm.runfolder import Run

    leaky = tmp_path / "leaky_ift.jsonl"
    write_jsonl(leaky, [StepSolution("t1", ["1 + 1 = 2.", "\\boxed{2}"], "2", {"question": "What is $1+1$?"}),
                        StepSolution("ok", ["2 + 2 = 4.", "\\boxed{4}"], "4", {"question": "What is $2 + 2$?"})])  # fmt: skip
    run = Run(_files_cfg(tmp_path, tiny_model_dir, f"data.ift_files=[{leaky}]"))
    with pytest.raises(ConfigError, match=r"^data.ift_files: 1 of 2 training questions are in evaluated test sets "
                                          r"\(\{'math500': 1\}\): rebuild it"):  # fmt: skip
        prepare_data(run)


# ---------------------------------------------------------------------------- one source, split once

SUBJECTS = ["algebra", "geometry", "number_theory", "precalculus"]


def _source(tmp_path) -> Path:
    """A MATH-train-like source sorted by subject (10 rows each), two rows the teacher cannot split, and a math500
    test file holding two of its questions."""
    d = tmp_path / "data"
    rows = []
    for s in SUBJECTS:
        for i in range(10):
            tail = " (unsplittable)" if i == 9 else ""
            rows.append({"problem": f"In {s}, what is {i} + 1?", "solution": f"We add. {i} + 1 = {i + 1}.{tail} So "
                         f"the answer is $\\boxed{{{i + 1}}}$.", "answer": str(i + 1),
                         "unique_id": f"train/{s}/{i}.json"})  # fmt: skip
    (d / "train" / "math").mkdir(parents=True)
    (d / "train" / "math" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "benchmarks" / "math500").mkdir(parents=True)
    test = [{"problem": "In geometry, what is 3 + 1?", "answer": "4", "unique_id": "test/g/3.json"},
            {"problem": "In algebra, what is 0 + 1?", "answer": "1", "unique_id": "test/a/0.json"}]  # fmt: skip
    (d / "benchmarks" / "math500" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return d


def _split_sets(tmp_path, data: Path, *extra: str) -> list[str]:
    run = tmp_path / "run"
    return [f"paths.data_dir={data}", f"paths.run_dir={run}", "iterate.eval_benchmarks=[math500]",
            "data.split_ift=12", "data.split_eft=6", "iterate.questions=[8, 8]",
            f"data.ift_files=[{run / 'initdata' / 'ift_segmented.jsonl'}]",
            f"data.eft_train_file={run / 'initdata' / 'eft_train.jsonl'}",
            f"data.eft_test_file={run / 'initdata' / 'eft_test.jsonl'}", *extra]  # fmt: skip


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "psrlm.cli", *args], capture_output=True, text=True, timeout=300)


def _with_sets(sets: list[str]) -> list[str]:
    return sum((["--set", x] for x in sets), [])


def test_ift_eft_and_the_pool_are_disjoint_blocks_of_one_source_and_ift_cannot_use_up_the_pool(tmp_path):
    """The paper recipe used to segment every row of MATH train for IFT, and the pool was the same file less the
    questions IFT and EFT used: only the rows the teacher failed to segment were left to search. Now the source
    (less its test-set questions and repeats) is shuffled once and cut into IFT, EFT and pool blocks: `psrlm data
    ift` asks the teacher about the IFT block only, a row it fails stays out of the pool, and every block mixes
    the subjects."""
    from psrlm.initdata.pool import split_source
    from psrlm.questions import prepare_data, question_blocks
    from psrlm.runfolder import Run

    from .serving import NO_KEY, TeacherAPI

    data = _source(tmp_path)
    with TeacherAPI(reasoning=True) as api:  # the recipe's teacher is o1
        sets = _split_sets(tmp_path, data, f"initdata.teacher_engine.base_urls=[{api.base_url}]",
                           f"initdata.teacher_engine.api_key_env={NO_KEY}")  # fmt: skip
        done = _cli("data", "ift", "-c", str(REPO / "configs" / "paper-7b.yaml"), *_with_sets(sets))
        assert done.returncode == 0, done.stderr[-3000:]
        asked = [b for b in api.bodies if "[The Start of Solution Provided]" in b["messages"][0]["content"]]
    cfg = load_config(REPO / "configs" / "paper-7b.yaml", sets)
    split = split_source(cfg)
    assert (len(split.ift), len(split.eft), len(split.pool)) == (12, 6, 40 - 2 - 12 - 6)
    blocks = [{p.question for p in b} for b in (split.ift, split.eft, split.pool)]
    assert not (blocks[0] & blocks[1] or blocks[0] & blocks[2] or blocks[1] & blocks[2])
    assert all(len({p.id.split("/")[1] for p in b}) >= 2 for b in (split.ift, split.eft, split.pool))
    counts = json.loads((tmp_path / "run" / "initdata" / "ift_counts.json").read_text())
    assert counts["rows"] == 12 and counts["split"] == {"seed": 0, "ift": 12, "eft": 6, "pool": 20}
    unsplittable = sum("(unsplittable)" in r["solution"] for r in _rows(data) if r["problem"] in blocks[0])
    assert counts["accepted"] == 12 - unsplittable and counts["rejected"] == unsplittable
    assert len({b["messages"][0]["content"] for b in asked}) == 12  # only the IFT block went to the teacher
    # the pool: the pool block, whatever the teacher accepted or rejected
    eft = JudgeExample(split.eft[0].question, [], "a.", "b.", "a is right.", "A", {"problem_id": split.eft[0].id})
    write_jsonl(tmp_path / "run" / "initdata" / "eft_train.jsonl", [eft])
    write_jsonl(tmp_path / "run" / "initdata" / "eft_test.jsonl", [eft])
    run = Run(cfg)
    prepare_data(run)
    fresh = read_jsonl(run.data / "fresh_questions.jsonl", Problem)
    assert {p.question for p in fresh} == blocks[2] and [len(b) for b in question_blocks(run)] == [8, 8]
    pool = json.loads((run.data / "questions.json").read_text())
    assert pool["test_overlap"] == {"math500": 2} and pool["split"]["pool"] == 20 and pool["used_for_init"] == 0


def _rows(data: Path) -> list[dict]:
    return [json.loads(line) for line in (data / "train" / "math" / "train.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("command", [["iterate", "--dry-run"], ["plan"]])
def test_the_dry_run_and_the_plan_print_the_blocks_and_stop_in_one_line_when_the_source_is_short(tmp_path, command):
    data = _source(tmp_path)
    recipe = ["-c", str(REPO / "configs" / "paper-7b.yaml")]
    short = _cli(*command, *recipe, *_with_sets(_split_sets(tmp_path, data, "data.split_ift=30")))
    assert short.returncode == 2 and short.stdout.count("IFT") == 0
    [line] = short.stderr.strip().splitlines()
    assert line == ("psrlm: error: data.split_ift=30 + data.split_eft=6 + iterate.questions=[8, 8] (16) need 52 "
                    "questions, but data.questions=math has 38 (40 read, 0 without an answer, 2 in evaluated test "
                    "sets, 0 repeats): lower the sizes or use a larger source")  # fmt: skip
    assert not (tmp_path / "run").exists()  # nothing was built
    done = _cli(*command, *recipe, *_with_sets(_split_sets(tmp_path, data)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "IFT        12 rows segmented by the teacher" in done.stdout
    assert "EFT         6 problems searched by MCTS, up to 6 pairs each = 36 candidate pairs" in done.stdout
    assert "pool       20 questions for iterations of 8 + 8 = 16 questions" in done.stdout


def test_data_ift_leaves_out_questions_of_the_test_sets(tmp_path):
    """Without a split too: a row whose question is in a test set the run evaluates is never segmented (only the
    pool used to be checked)."""
    from .serving import NO_KEY, TeacherAPI

    data = _source(tmp_path)
    with TeacherAPI(reasoning=True) as api:
        sets = _split_sets(tmp_path, data, "data.split_ift=0", "data.split_eft=0", "initdata.ift_limit=0",
                           f"initdata.teacher_engine.base_urls=[{api.base_url}]",
                           f"initdata.teacher_engine.api_key_env={NO_KEY}")  # fmt: skip
        done = _cli("data", "ift", "-c", str(REPO / "configs" / "paper-7b.yaml"), *_with_sets(sets))
        assert done.returncode == 0, done.stderr[-3000:]
    counts = json.loads((tmp_path / "run" / "initdata" / "ift_counts.json").read_text())
    assert counts["rows"] == 38 and counts["test_overlap"] == {"math500": 2}
    ids = {s.problem_id for s in read_jsonl(tmp_path / "run" / "initdata" / "ift_segmented.jsonl", StepSolution)}
    assert not ids & {"train/geometry/3.json", "train/algebra/0.json"}


# ------------------------------------------------------------------------------------------ end to end

PAPER_7B_ON_CPU = [  # what the README shows: configs/paper-7b.yaml with the tiny model and small counts
    "engine.kind=hf", 'launch.accelerate_config=""',  # in-process on one CPU instead of vLLM + ZeRO-3 on 8 GPUs
    "sft.gradient_checkpointing=false", "dpo.gradient_checkpointing=false",
    "iterate.questions=[3]", "iterate.eval_benchmarks=[math500, gsm8k]", "iterate.eval_benchmark_limit=3",
    "iterate.eval_eft=4", "iterate.eval_max_tokens=24", "iterate.eval_tts=2",
    "sft.epochs=1", "sft.lr=0.001", "sft.batch_size=8", "sft.grad_accum=1",
    "dpo.lr=0.001", "dpo.batch_size=4", "dpo.grad_accum=1",
    "search.width=3", "search.max_steps=2", "search.max_rounds=3", "search.max_step_tokens=96",
    "search.temperature=1.0",
    "search.judge_max_tokens=8", "search.verdict=soft",  # the tiny model writes no verdict in 8 tokens
    # the source: the embedded domain as question/solution rows (`psrlm data arith` writes them), the only text the
    # tiny model can write steps for; the same keys point the recipe at NuminaMath-CoT
    "data.question_field=problem", "initdata.ift_source=jsonl", "initdata.question_field=problem",
    "data.split_ift=40", "data.split_eft=8",
]  # fmt: skip
EFT_ON_CPU = [  # the tree search at the smallest size, the PRM ("+"/"-" next token) on the CPU
    "initdata.iterations=4", "initdata.expand_width=4", "initdata.simulation_depth=1", "initdata.max_depth=3",
    "initdata.max_step_tokens=48", "initdata.temperature=1.0", "initdata.min_margin=0.0",
    "initdata.pairs_per_problem=3", "initdata.eft_test=4", "initdata.prm_device=auto",
    "initdata.prm_format=next_token",
]  # fmt: skip
POLICY_SFT = ["sft.epochs=2", "sft.bf16=false"]  # the IFT policy MCTS samples from: M0 after 10 steps of IFT


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "benchmarks" / "math500" / "test.jsonl").exists(), reason="needs ../shared/data")
def test_paper_7b_recipe_runs_its_data_flow_and_one_iteration_on_cpu(tmp_path):
    """configs/paper-7b.yaml end to end, the paper's way, on one source split once: `psrlm data ift` has the teacher
    (an OpenAI-style API with o1's parameter rules, tests/serving.py) segment the IFT block; `psrlm train sft`
    makes the IFT policy; `psrlm data eft` runs the PRM-scored tree search on the EFT block, asks the teacher both
    orders and filters; `psrlm iterate` trains M1 on both files, searches the pool (one iteration: pairs, DPO),
    evaluates math500 and gsm8k and runs the test-time search on both. The demo's prebuilt M0 stands in for
    Qwen2.5-Math-7B as M0 and as the PRM; the source is the embedded domain's problems, the only ones it can
    write steps for (the paper's judge prompt alone is 450 of its 1,024 tokens)."""
    from .serving import NO_KEY, TeacherAPI

    run, m0 = tmp_path / "run", REPO / "checkpoints" / "arith-m0"
    small = ["arith.n_train=400", "data.ift_problems=100", "data.eft_train=60", "data.eft_test=20",
             f"paths.run_dir={tmp_path / 'arith'}"]  # fmt: skip
    assert _cli("data", "arith", *_with_sets(small)).returncode == 0
    source = tmp_path / "arith" / "data" / "arith_solutions.jsonl"
    recipe = ["-c", str(REPO / "configs" / "paper-7b.yaml")]
    init = run / "initdata"
    sets = [f"paths.run_dir={run}", f"model.path={m0}", f"data.questions={source}", f"initdata.ift_input={source}",
            f"initdata.eft_problems={source}", f"data.ift_files=[{init / 'ift_segmented.jsonl'}]",
            f"data.eft_train_file={init / 'eft_train.jsonl'}", f"data.eft_test_file={init / 'eft_test.jsonl'}",
            *PAPER_7B_ON_CPU]  # fmt: skip
    with TeacherAPI(reasoning=True) as api:
        teacher = [
            f"initdata.teacher_engine.base_urls=[{api.base_url}]",
            f"initdata.teacher_engine.api_key_env={NO_KEY}",
        ]
        done = _cli("data", "ift", *recipe, *_with_sets(sets + teacher))
        assert done.returncode == 0, done.stderr[-3000:]
        policy = tmp_path / "policy"
        done = _cli("train", "sft", *recipe, "--model", str(m0), "--ift", str(init / "ift_segmented.jsonl"),
                    "--out", str(policy), *_with_sets(sets + POLICY_SFT))  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        eft_sets = [*sets, *teacher, *EFT_ON_CPU, f"initdata.policy_path={policy}", f"initdata.prm_path={m0}"]
        done = _cli("data", "eft", *recipe, *_with_sets(eft_sets))
        assert done.returncode == 0, done.stderr[-3000:]
        assert api.bodies and all("max_completion_tokens" in b and "temperature" not in b for b in api.bodies)
    ift = read_jsonl(init / "ift_segmented.jsonl", StepSolution)
    assert len(ift) == 40 and all(s.meta["teacher"] == "o1 [chat]" and len(s.steps) > 1 for s in ift)
    eft = json.loads((init / "eft_counts.json").read_text())
    split = {"seed": 0, "ift": 40, "eft": 8, "pool": 352}
    assert eft["problems"] == {"from": "split", "split": split, "problems": 8}
    assert eft["mcts"]["problems"] == 8 and eft["prm"]["device"] == "cpu" and eft["filters"]["kept"] >= 2
    assert eft["filters"]["kept"] == eft["split"]["train"] + eft["split"]["test"] and eft["split"]["test"] >= 1
    eft_train = read_jsonl(init / "eft_train.jsonl", JudgeExample)
    assert all("\n\n" in e.explanation for e in eft_train)  # the teacher's paragraphs, as written

    done = _cli("iterate", *recipe, *_with_sets(sets))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| psrlm-M2 |" in done.stdout and "math500 acc" in done.stdout and "gsm8k acc" in done.stdout
    manifest = json.loads((run / "manifests" / "psrlm-M2.json").read_text())
    assert manifest["metrics"]["questions"]["block"] == 3
    search, trained = manifest["metrics"]["search"], manifest["metrics"]["train"]
    assert search["pairs"] > 0 and trained["stage"] == "dpo" and trained["steps"] > 0
    pool = manifest["metrics"]["questions"]["pool"]
    assert pool["test_overlap"] == {"math500": 0, "gsm8k": 0} and pool["used_for_init"] == 0 and pool["split"] == split
    for name in ("psrlm-M1", "psrlm-M2"):
        summary = json.loads((run / "eval" / name / "summary.json").read_text())
        assert summary["math500"]["n"] == 3 and summary["gsm8k"]["n"] == 3
        assert summary["gsm8k"]["grading"] == {"include_percentage": True}
        tts = json.loads((run / "eval" / name / "tts.json").read_text())
        assert {b: t["n"] for b, t in tts["benchmarks"].items()} == {"math500": 2, "gsm8k": 2}
        assert tts["rules"]["ties"] == "accept" and tts["tts"]["rollbacks_per_problem"] == 0
    m0_metrics = json.loads((run / "eval" / "M0" / "metrics.json").read_text())
    assert (m0_metrics["few_shot"], m0_metrics["judge_few_shot"]) == (False, True)  # the paper: M0's judge 3-shot
    fresh = read_jsonl(run / "data" / "fresh_questions.jsonl", Problem)
    used = {s.meta["question"] for s in ift} | {e.question for e in eft_train}
    assert len(fresh) == 352 and not used & {p.question for p in fresh}
