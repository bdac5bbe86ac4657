"""Bad input at the command line: one line naming the file, key or path and what to do; no traceback, nothing
lost, and never hours spent on a default behind a typo."""

import json
import shutil
import time
from pathlib import Path

import pytest

from psrlm.cli import main
from psrlm.records import Problem, write_jsonl

from .conftest import SMALL


def _sets(run: Path, *extra: str) -> list[str]:
    return sum((["--set", s] for s in [*SMALL, f"paths.run_dir={run}", *extra]), [])


def _error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("psrlm: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def problems_file(tmp_path) -> Path:
    path = tmp_path / "problems.jsonl"
    write_jsonl(
        path, [Problem(f"p{i}", f"Mia has {i} pens. How many pens does Mia have?", str(i), "t") for i in range(3)]
    )
    return path


# ----------------------------------------------------------------------------------------------- models


@pytest.mark.parametrize("model", ["runs/nowhere/psrlm-M1", "Qwen2.5-Math-7B", "./typo", "~/no-such-model"])
def test_missing_model_path_fails_at_once_without_a_hub(capsys, tmp_path, problems_file, model):
    start = time.time()
    err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", model, "--problems", str(problems_file),
                          "--out", str(tmp_path / "out")])  # fmt: skip
    assert "--model: model folder not found" in err
    assert time.time() - start < 5  # no network retries
    assert not (tmp_path / "out").exists()


def test_a_hub_id_must_already_be_downloaded(capsys, tmp_path, problems_file, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    start = time.time()
    err = _error(capsys, ["eval", *_sets(tmp_path / "run"), "--model", "Qwen/Qwen2.5-Math-7B"])
    assert "not in the local Hugging Face cache" in err and "hf download Qwen/Qwen2.5-Math-7B" in err
    assert time.time() - start < 5


def test_truncated_weights_are_named(capsys, tmp_path, tiny_model_dir, problems_file):
    model = tmp_path / "cut"
    shutil.copytree(tiny_model_dir, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", str(model), "--problems", str(problems_file),
                          "--out", str(tmp_path / "out")])  # fmt: skip
    assert f"{weights}: truncated or corrupt safetensors file" in err


def test_model_folder_without_tokenizer(capsys, tmp_path, tiny_model_dir, problems_file):
    model = tmp_path / "notok"
    shutil.copytree(tiny_model_dir, model)
    for f in model.glob("tokenizer*"):
        f.unlink()
    err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", str(model), "--problems", str(problems_file),
                          "--out", str(tmp_path / "out")])  # fmt: skip
    assert f"{model}: no tokenizer files" in err and "sentencepiece" not in err


# ----------------------------------------------------------------------------------------- data files


def test_problems_file_not_utf8_names_file_and_line(capsys, tmp_path, tiny_model_dir):
    bad = tmp_path / "latin1.jsonl"
    good = json.dumps({"id": "a", "question": "q", "answer": "1", "source": "t"})
    bad.write_bytes((good + "\n").encode() + b'{"id": "b", "question": "caf\xe9", "answer": "1", "source": "t"}\n')
    err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", str(tiny_model_dir), "--problems", str(bad),
                          "--out", str(tmp_path / "out")])  # fmt: skip
    assert f"{bad}:2: not UTF-8" in err


def test_duplicate_problem_ids_name_both_lines(capsys, tmp_path, tiny_model_dir):
    path = tmp_path / "dup.jsonl"
    write_jsonl(path, [Problem("a", "q1", "1", "t"), Problem("b", "q2", "2", "t"), Problem("a", "q3", "3", "t")])
    err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", str(tiny_model_dir), "--problems", str(path),
                          "--out", str(tmp_path / "out")])  # fmt: skip
    assert f"{path}:3: problem id 'a' is also on line 1" in err


def test_corrupt_run_files_are_named(capsys, tmp_path):
    run = tmp_path / "run"
    (run / "manifests").mkdir(parents=True)
    (run / "manifests" / "psrlm-M2.json").write_text('{"iteration": 2, "method": ')
    err = _error(capsys, ["report", str(run)])
    assert f"{run / 'manifests' / 'psrlm-M2.json'}: corrupt JSON" in err
    (run / "manifests" / "psrlm-M2.json").unlink()
    (run / "summary.json").write_bytes(b"\xff\xfe{}")
    err = _error(capsys, ["report", str(run)])
    assert f"{run / 'summary.json'}" in err and "not UTF-8" in err


# ------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("flag", ["--limit", "--tts", "--max-tokens"])
def test_negative_counts_are_rejected(capsys, tmp_path, flag):
    with pytest.raises(SystemExit) as done:
        main(["eval", *_sets(tmp_path / "run"), "--model", "x", flag, "-1"])
    assert done.value.code == 2
    assert f"argument {flag}: must be >= 0, got -1" in capsys.readouterr().err


def test_empty_benchmark_list_is_an_error(capsys, tmp_path, tiny_model_dir):
    err = _error(capsys, ["eval", *_sets(tmp_path / "run"), "--model", str(tiny_model_dir), "--benchmarks", " , "])
    assert "--benchmarks is empty" in err


def test_m0_path_typo_stops_before_any_work(capsys, tmp_path):
    start = time.time()
    err = _error(capsys, ["iterate", *_sets(tmp_path / "run", "iterate.m0_path=checkpoints/arith-m9")])
    assert "iterate.m0_path: checkpoints/arith-m9 does not exist" in err
    assert time.time() - start < 10
    assert not (tmp_path / "run" / "models").exists()


def test_iterate_refuses_one_served_model_for_every_checkpoint(capsys, tmp_path):
    """engine.kind=openai with a fixed model_name would search M1, M2, ... all with the one model the server has."""
    sets = _sets(tmp_path / "run", "engine.kind=openai", "engine.base_urls=[http://127.0.0.1:9/v1]",
                 "engine.model_name=qwen")  # fmt: skip
    err = _error(capsys, ["iterate", *sets])
    assert "engine.model_name='qwen' with engine.kind=openai" in err and "vllm" in err
    assert not (tmp_path / "run" / "models").exists()


def test_full_or_read_only_output_folder_is_named_before_a_model_loads(
    capsys, tmp_path, tiny_model_dir, problems_file, tiny_disk, read_only_disk
):
    for disk, why in ((tiny_disk, "no space left|MiB free"), (read_only_disk, "read-only")):
        err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", str(tiny_model_dir),
                              "--problems", str(problems_file), "--out", str(disk / "out")])  # fmt: skip
        assert "cannot write to" in err
        import re

        assert re.search(why, err)


# ---------------------------------------------------------------------------------------------- report


def test_report_shows_what_a_standalone_eval_wrote(capsys, tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    args = ["eval", *_sets(run, "iterate.eval_max_tokens=8", "iterate.eval_eft=2"), "--model", str(tiny_model_dir),
            "--name", "mine", "--limit", "2"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    assert main(["report", str(run), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "| mine |" in out and "arith_test (n=2)" in out


def test_search_resume_with_another_width_is_refused_then_fresh(capsys, tmp_path, tiny_model_dir, problems_file):
    """The reported mix: width-2 and width-3 traces in one folder. A resume with another width now stops with
    the key that differs; --fresh starts the folder over (old results moved aside)."""
    base = ["search", "--model", str(tiny_model_dir), "--problems", str(problems_file), "--limit", "2",
            "--out", str(tmp_path / "out")]  # fmt: skip
    small = ["search.max_steps=1", "search.max_rounds=1", "search.max_step_tokens=4", "search.verdict=logits"]
    assert main([*base, *_sets(tmp_path / "run", *small, "search.width=2")]) == 0
    capsys.readouterr()
    err = _error(capsys, [*base, *_sets(tmp_path / "run", *small, "search.width=3")])
    assert "search.width: 2 -> 3" in err and "--fresh" in err
    assert main([*base, *_sets(tmp_path / "run", *small, "search.width=3"), "--fresh"]) == 0
    assert list(tmp_path.glob("replaced/*/out/traces.jsonl"))


def test_sweep_questions_must_be_positive(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["sweep", *_sets(tmp_path / "run"), "--questions", "0"])
    assert done.value.code == 2 and "argument --questions" in capsys.readouterr().err


# ------------------------------------------------------------------------- messages (issue 23, item 4)


def test_verbose_keeps_the_traceback_of_a_flattened_error(capsys, tmp_path, tiny_model_dir):
    """A ValueError is one line for a user; under -v a real bug behind it keeps its traceback, then the line."""
    argv = ["eval", *_sets(tmp_path / "run"), "--model", str(tiny_model_dir), "--benchmarks", " , "]
    assert main(["-v", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in cmd_eval" in err
    assert err.rstrip().splitlines()[-1].startswith("psrlm: error: --benchmarks is empty")
    _error(capsys, argv)  # and without -v: the one line alone


def test_show_config_into_a_closed_pipe_ends_quietly():
    """`psrlm show-config | head`: the reader leaves early; no BrokenPipeError traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "psrlm.cli", "show-config"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    proc.stdout.close()  # before it writes a byte: every write meets a closed pipe
    err = proc.stderr.read().decode()
    proc.wait(120)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_max_tokens_zero_is_refused_not_read_as_the_default(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        main(["eval", *_sets(tmp_path / "run"), "--model", "x", "--max-tokens", "0"])
    assert done.value.code == 2 and "argument --max-tokens: must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".hidden"])
def test_eval_name_stays_inside_the_eval_folder(capsys, tmp_path, tiny_model_dir, name):
    run = tmp_path / "deep" / "run"
    err = _error(capsys, ["eval", *_sets(run), "--model", str(tiny_model_dir), "--name", name, "--limit", "1"])
    assert f"--name {name!r}: give a plain folder name" in err
    assert not (tmp_path / "escape").exists() and not (run / "eval").exists()


def test_an_empty_eft_file_is_an_error_before_a_model_loads(capsys, tmp_path, tiny_model_dir):
    """It measured nothing, yet said judge_accuracy 0.0 (n 0) and exited 0."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    start = time.time()
    err = _error(capsys, ["eval", *_sets(tmp_path / "run"), "--model", str(tiny_model_dir), "--benchmarks",
                          "arith_test", "--limit", "1", "--eft", str(empty)])  # fmt: skip
    assert f"--eft: {empty} holds no judge examples" in err
    assert not (tmp_path / "run" / "eval").exists() and time.time() - start < 30


def test_an_empty_problems_file_and_empty_questions_are_errors_before_a_model_loads(capsys, tmp_path):
    empty = tmp_path / "none.jsonl"
    empty.write_text("\n")
    base = ["search", *_sets(tmp_path / "run"), "--model", "runs/nowhere", "--out", str(tmp_path / "out")]
    err = _error(capsys, [*base, "--problems", str(empty)])
    assert f"--problems {empty}: no problems" in err
    for key, row in (("question", {"question": "  "}), ("answer", {"answer": ""})):
        bad = tmp_path / f"no-{key}.jsonl"
        write_jsonl(bad, [Problem("a", "Mia has 3 pens.", "3", "t"), Problem(**{"id": "b", "question": "q",
                                                                                  "answer": "1", "source": "t", **row})])  # fmt: skip
        err = _error(capsys, [*base, "--problems", str(bad)])
        assert f"{bad}:2: empty '{key}'" in err
    assert not (tmp_path / "out").exists()


def test_an_empty_question_in_a_files_pool_is_named(tmp_path):
    from psrlm.configs import load_config
    from psrlm.initdata.pool import read_pool
    from psrlm.records import RecordError

    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"question": "What is 2 + 2?", "answer": "4"}) + "\n"
                    + json.dumps({"question": "", "answer": "5"}) + "\n")  # fmt: skip
    cfg = load_config(None, [f"data.questions={pool}"])
    with pytest.raises(RecordError, match=rf"{pool}:2: empty 'question'"):
        read_pool(cfg)


def test_a_full_disk_mid_search_is_one_line_naming_the_file_and_keeps_what_was_committed(
    capsys, tmp_path, tiny_model_dir, tiny_disk, monkeypatch
):
    """The disk fills while the search writes: one line naming the file (no chained OSError traceback), every
    problem committed before it reads back whole, and with room again the same command resumes."""
    import os

    from psrlm import folders
    from psrlm.records import SearchTrace, read_jsonl

    monkeypatch.setattr(folders, "MIN_FREE_BYTES", 0)  # the start-up check would refuse a 1 MiB disk at once
    problems = tmp_path / "many.jsonl"
    write_jsonl(problems, [Problem(f"p{i}", f"Mia has {i} pens and buys {i + 3} more. How many pens? " * 3,
                                   str(2 * i + 3), "t") for i in range(40)])  # fmt: skip
    filler = tiny_disk / "filler"
    os.truncate(filler, filler.stat().st_size - 24 * 1024)  # room for the stamp and a few problems, not 40
    out = tiny_disk / "out"
    argv = ["search", *_sets(tmp_path / "run", "search.width=2", "search.max_steps=2", "search.max_rounds=2",
                             "search.max_step_tokens=6", "search.verdict=logits", "search.max_active=4"),
            "--model", str(tiny_model_dir), "--problems", str(problems), "--out", str(out)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err  # progress bars, then the one line
    assert "Traceback" not in err and "Errno" not in err, err
    err = err.rstrip().splitlines()[-1]
    assert err.startswith(f"psrlm: error: cannot write {out}/") and "no space left on the device" in err
    done = read_jsonl(out / "traces.jsonl", SearchTrace)
    assert 0 < len(done) < 40
    filler.unlink()
    assert main(argv) == 0
    again = read_jsonl(out / "traces.jsonl", SearchTrace)
    assert [t.problem_id for t in again[: len(done)]] == [t.problem_id for t in done]
    assert sorted(t.problem_id for t in again) == sorted(f"p{i}" for i in range(40))


def _edited_config(tiny_model_dir, folder, **changes):
    model = folder / "edited"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(changes)
    (model / "config.json").write_text(json.dumps(config))
    return model


def test_an_unknown_model_type_is_named_before_a_model_loads(capsys, tmp_path, tiny_model_dir, problems_file):
    """transformers' answer was its own 'pip install --upgrade transformers' advice."""
    model = _edited_config(tiny_model_dir, tmp_path, model_type="llamaz")
    err = _error(capsys, ["search", *_sets(tmp_path / "run"), "--model", str(model), "--problems", str(problems_file),
                          "--out", str(tmp_path / "out")])  # fmt: skip
    assert f"{model / 'config.json'}: model_type 'llamaz' is not an architecture transformers" in err
    assert "pip install" not in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "changes,says",
    [({"hidden_size": 128, "intermediate_size": 256}, "model.embed_tokens.weight is [400, 64] in the weights but "
                                                       "[400, 128] by the config"),
     ({"num_hidden_layers": 3}, "the config has weights the checkpoint lacks (they would start at random): "
                                "model.layers.2.")],
)  # fmt: skip
def test_a_config_that_disagrees_with_the_weights_is_one_line(capsys, tmp_path, tiny_model_dir, changes, says):
    """Shapes that differ ended in transformers' load report and a RuntimeError traceback; layers the weights lack
    were silently initialised at random and evaluated."""
    model = _edited_config(tiny_model_dir, tmp_path, **changes)
    assert main(["eval", *_sets(tmp_path / "run"), "--model", str(model), "--benchmarks", "arith_test", "--limit", "1",
                 "--no-judge"]) == 2  # fmt: skip
    err = capsys.readouterr().err  # transformers' progress bar while it reads the weights, then one line
    assert "Traceback" not in err and "load report" not in err.lower()
    err = err.rstrip().splitlines()[-1]
    assert err.startswith("psrlm: error: ")
    assert f"{model / 'config.json'} does not describe the weights beside it" in err and says in err, err


def test_a_prebuilt_m0_built_otherwise_stops_naming_the_keys_unless_a_rebuild_is_asked(capsys, tmp_path, monkeypatch):
    """It pre-trained a new M0 (8-10 hours at scale) behind a warning naming two hashes. A model the user named is
    never replaced unasked: one line with the keys that differ, before any work; --rebuild-m0 pre-trains one into
    the run folder and leaves the named one as it is."""
    from psrlm import train
    from psrlm.configs import load_config
    from psrlm.m0 import ensure_m0, m0_key
    from psrlm.runfolder import Run

    from .conftest import REPO
    from .test_iterate import LOOP

    real_pretrain = train.pretrain
    monkeypatch.setattr(train, "pretrain", lambda *a, **k: pytest.fail("pre-trained an M0 nobody asked for"))
    run = tmp_path / "run"
    argv = ["iterate", "-c", str(REPO / "configs" / "demo.yaml"), "--set", f"paths.run_dir={run}",
            "--set", "pretrain.epochs=1", "--set", "arith.n_pretrain=200"]  # fmt: skip
    start = time.time()
    err = _error(capsys, argv)
    assert ("iterate.m0_path=checkpoints/arith-m0 was built with other settings (arith.n_pretrain: 12000 -> 200, "
            "pretrain.epochs: 3.0 -> 1.0): pass --rebuild-m0") in err  # fmt: skip
    assert time.time() - start < 30 and not (run / "models").exists()

    monkeypatch.setattr(train, "pretrain", real_pretrain)
    prebuilt = REPO / "checkpoints" / "arith-m0" / "model.safetensors"
    before = prebuilt.stat().st_mtime_ns
    cfg = load_config(None, LOOP + [f"paths.run_dir={run}", "iterate.m0_path=checkpoints/arith-m0"])
    m0 = ensure_m0(Run(cfg, rebuild_m0=True))
    assert m0 == run / "models" / f"M0-{m0_key(cfg)}" and (m0 / "model.safetensors").exists()
    assert prebuilt.stat().st_mtime_ns == before
