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
    from psrlm.iterate import Run, prepare_data, question_blocks

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
    from psrlm.iterate import Run, prepare_data, question_blocks

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


# ------------------------------------------------------------------------------------------ end to end

PAPER_7B_ON_CPU = [  # what the README shows: configs/paper-7b.yaml with the tiny model and small counts
    "engine.kind=hf", 'launch.accelerate_config=""',  # in-process on one CPU instead of vLLM + ZeRO-3 on 8 GPUs
    "sft.gradient_checkpointing=false", "dpo.gradient_checkpointing=false",
    "iterate.questions=[3]", "iterate.eval_benchmarks=[math500, gsm8k]", "iterate.eval_benchmark_limit=3",
    "iterate.eval_eft=4", "iterate.eval_max_tokens=24",
    "sft.epochs=1", "sft.lr=0.001", "sft.batch_size=8", "sft.grad_accum=1",
    "dpo.lr=0.001", "dpo.batch_size=4", "dpo.grad_accum=1",
    "search.width=3", "search.max_steps=2", "search.max_rounds=3", "search.max_step_tokens=96",
    "search.temperature=1.0",
    "search.judge_max_tokens=8", "search.verdict=soft",  # the tiny model writes no verdict in 8 tokens
]  # fmt: skip


@pytest.mark.skipif(not (SHARED / "train" / "gsm8k" / "train.jsonl").exists(), reason="needs ../shared/data")
def test_paper_7b_recipe_runs_one_iteration_on_real_format_data(tmp_path):
    """`psrlm data ift` (GSM8K: no teacher) writes the IFT file; the EFT files have the format `psrlm data eft`
    writes (here the embedded domain's, which needs no PRM or teacher); MATH train is the question pool;
    configs/paper-7b.yaml runs one iteration (search, pairs, DPO) and evaluates math500 and gsm8k. The demo's
    prebuilt M0 stands in for Qwen2.5-Math-7B: the paper's judge prompt alone is 450 of its 1,024 tokens."""
    pool = "math"
    run = tmp_path / "run"
    base = [sys.executable, "-m", "psrlm.cli"]
    small = ["--set", "arith.n_train=400", "--set", "data.ift_problems=100", "--set", "data.eft_train=60",
             "--set", "data.eft_test=20", "--set", f"paths.run_dir={tmp_path / 'arith'}"]  # fmt: skip
    subprocess.run([*base, "data", "arith", *small], check=True, capture_output=True)
    subprocess.run([*base, "data", "ift", "-c", str(REPO / "configs" / "paper-7b.yaml"), "--set",
                    f"paths.run_dir={run}", "--set", "initdata.ift_source=gsm8k", "--set", "initdata.ift_limit=40"],
                   check=True, capture_output=True)  # fmt: skip
    ift = run / "initdata" / "ift_gsm8k.jsonl"
    assert len(read_jsonl(ift, StepSolution)) == 40
    sets = [f"paths.run_dir={run}", f"model.path={REPO / 'checkpoints' / 'arith-m0'}", f"data.ift_files=[{ift}]",
            f"data.eft_train_file={tmp_path / 'arith' / 'data' / 'eft_train.jsonl'}",
            f"data.eft_test_file={tmp_path / 'arith' / 'data' / 'eft_test.jsonl'}", f"data.questions={pool}",
            *PAPER_7B_ON_CPU]  # fmt: skip
    done = subprocess.run([*base, "iterate", "-c", str(REPO / "configs" / "paper-7b.yaml"),
                           *sum((["--set", s] for s in sets), [])], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| psrlm-M2 |" in done.stdout and "math500 acc" in done.stdout and "gsm8k acc" in done.stdout
    manifest = json.loads((run / "manifests" / "psrlm-M2.json").read_text())
    assert manifest["metrics"]["questions"]["block"] == 3
    search, trained = manifest["metrics"]["search"], manifest["metrics"]["train"]
    assert search["pairs"] > 0 and trained["stage"] == "dpo" and trained["steps"] > 0
    assert manifest["metrics"]["questions"]["pool"]["test_overlap"] == {"math500": 0, "gsm8k": 0}
    assert (run / "models" / "psrlm-M2" / "psrlm_manifest.json").exists()
    for name in ("psrlm-M1", "psrlm-M2"):
        summary = json.loads((run / "eval" / name / "summary.json").read_text())
        assert summary["math500"]["n"] == 3 and summary["gsm8k"]["n"] == 3
        assert summary["gsm8k"]["grading"] == {"include_percentage": True}
    fresh = read_jsonl(run / "data" / "fresh_questions.jsonl", Problem)
    assert all(p.source == f"{pool}-train" for p in fresh)
