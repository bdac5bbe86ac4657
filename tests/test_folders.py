"""One writer per folder (real processes, real flock) and settings fingerprints that refuse a mixed resume."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from psrlm.folders import (
    LOCK_NAME,
    FolderError,
    FolderLock,
    check_writable,
    claim_settings,
    fingerprint,
    model_identity,
    recorded_settings,
)

HOLD = (
    "import sys, time; from psrlm.folders import FolderLock;"
    "lock = FolderLock(sys.argv[1], 'test holder'); lock.acquire(); print('locked', flush=True); time.sleep(60)"
)


def _holder(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    proc = _holder(tmp_path / "out")
    try:
        with pytest.raises(FolderError, match=rf"being written by `test holder` pid {proc.pid} on .*one writer"):
            FolderLock(tmp_path / "out").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    proc = _holder(tmp_path / "out")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "out" / LOCK_NAME).exists()  # kill -9 leaves the file; the kernel dropped the lock
    with caplog.at_level(logging.WARNING), FolderLock(tmp_path / "out", "me"):
        held = json.loads((tmp_path / "out" / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["stage"] == "me"
    assert f"taking over the lock left by `test holder` pid {proc.pid}" in caplog.text
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # released cleanly


def test_the_lock_is_reentrant_within_a_process(tmp_path):
    with FolderLock(tmp_path / "a"), FolderLock(tmp_path / "a"):
        assert (tmp_path / "a" / LOCK_NAME).exists()
    assert not (tmp_path / "a" / LOCK_NAME).exists()


def test_two_searches_into_one_folder_started_together(tiny_model_dir, tmp_path):
    """The reported race: two `psrlm search --out X` 2 s apart both finished and doubled the pairs. Now the second
    exits at once with a one-line message and the first writes each problem once."""
    from .test_iterate import LOOP

    run = tmp_path / "run"
    sets = sum((["--set", s] for s in LOOP + [f"paths.run_dir={run}"]), [])
    subprocess.run([sys.executable, "-m", "psrlm.cli", "data", "arith", *sets], check=True, capture_output=True)
    cmd = [sys.executable, "-m", "psrlm.cli", "search", *sets, "--model", str(tiny_model_dir), "--problems",
           str(run / "data" / "arith_test.jsonl"), "--limit", "4", "--out", str(tmp_path / "X")]  # fmt: skip
    env = {**os.environ, "TQDM_DISABLE": "1"}
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (tmp_path / "X" / LOCK_NAME).exists() and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2
    assert "is being written by `search --method psrlm` pid" in second.stderr
    assert "Traceback" not in second.stderr
    ids = [json.loads(line)["problem_id"] for line in (tmp_path / "X" / "traces.jsonl").read_text().splitlines()]
    assert len(ids) == 4 == len(set(ids))


def test_settings_resume_refuse_and_fresh(tmp_path):
    folder = tmp_path / "search"
    claim_settings(folder, {"search": {"width": 2, "beta": 0.1}, "model": "abc"})
    (folder / "traces.jsonl").write_text("{}\n")
    claim_settings(folder, {"search": {"width": 2, "beta": 0.1}, "model": "abc"})  # same: resume
    with pytest.raises(FolderError, match=r"other settings \(search\.width: 2 -> 3\).*--fresh"):
        claim_settings(folder, {"search": {"width": 3, "beta": 0.1}, "model": "abc"})
    assert (folder / "traces.jsonl").exists()  # a refusal touches nothing
    claim_settings(folder, {"search": {"width": 3, "beta": 0.1}, "model": "abc"}, fresh=True)
    assert not (folder / "traces.jsonl").exists()
    moved = list((tmp_path / "replaced").glob("*/search/traces.jsonl"))
    assert len(moved) == 1  # moved aside, never deleted
    assert recorded_settings(folder)["search.width"] == 3


def test_results_without_a_settings_record_are_not_silently_adopted(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("{}\n")
    with pytest.raises(FolderError, match="no record of the settings"):
        claim_settings(folder, {"a": 1})
    claim_settings(folder, {"a": 1}, replace=True)  # a cache (evaluation) recomputes instead
    assert not (folder / "pairs.jsonl").exists()


def test_fingerprint_is_order_independent_and_key_sensitive():
    assert fingerprint({"a": 1, "b": {"c": 2}}) == fingerprint({"b": {"c": 2}, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_model_identity_follows_content_not_name(tiny_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "same-name"
    shutil.copytree(tiny_model_dir, copy)
    assert model_identity(copy) == model_identity(tiny_model_dir)  # a copy is the same model
    (copy / "psrlm_build.json").write_text("{}")  # build notes do not change what it computes
    assert model_identity(copy) == model_identity(tiny_model_dir)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["rms_norm_eps"] = 1e-3
    (copy / "config.json").write_text(json.dumps(cfg))
    assert model_identity(copy) != model_identity(tiny_model_dir)


def test_full_and_read_only_folders_are_named_before_any_work(tiny_disk, read_only_disk):
    with pytest.raises(FolderError, match="no space left|MiB free"):
        check_writable(tiny_disk / "run")
    with pytest.raises(FolderError, match="read-only"):
        check_writable(read_only_disk / "run")


def test_fresh_moves_a_mount_point_s_content_aside_across_file_systems(tmp_path):
    """`--fresh` when --out is a mount point: rename(2) cannot cross file systems (EXDEV) and left an empty
    replaced/<time>/ behind; now the old results are copied over whole, then removed."""
    from .conftest import _mount_tmpfs

    out = tmp_path / "out"
    if not _mount_tmpfs(out, "size=4m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        claim_settings(out, {"search": {"width": 2}})
        (out / "traces.jsonl").write_text('{"problem_id": "p0"}\n')
        (out / "tts").mkdir()
        (out / "tts" / "traces.jsonl").write_text("{}\n")
        claim_settings(out, {"search": {"width": 3}}, fresh=True)
        [moved] = list((tmp_path / "replaced").glob("*/out"))
        assert (moved / "traces.jsonl").read_text() == '{"problem_id": "p0"}\n'
        assert (moved / "tts" / "traces.jsonl").exists() and (moved / "psrlm_settings.json").exists()
        assert sorted(p.name for p in out.iterdir()) == ["psrlm_settings.json"]
        assert recorded_settings(out)["search.width"] == 3
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


def test_a_move_aside_that_fails_leaves_everything_in_place_and_no_empty_folder(tmp_path, tiny_disk):
    """The replaced/ folder's disk is full: one line, the results still where they were, no empty replaced/<time>/."""
    from psrlm.folders import move_aside

    out = tmp_path / "out"
    out.mkdir()
    (out / "traces.jsonl").write_bytes(b"x" * (256 << 10))
    with pytest.raises(FolderError, match=rf"cannot move {out} aside to .*no space left.*nothing was lost"):
        move_aside(out, tiny_disk)
    assert (out / "traces.jsonl").stat().st_size == 256 << 10
    assert not (tiny_disk / "replaced").exists()


def test_a_stamp_without_results_does_not_ask_for_fresh(tmp_path):
    """A start that crashed before its first result (a model that would not load, Ctrl-C during loading) left the
    stamp and empty result files; the next run with other settings then demanded --fresh."""
    folder = tmp_path / "search"
    claim_settings(folder, {"search": {"width": 2}, "model": "broken"})
    (folder / "traces.jsonl").write_text("")  # opened for appending, nothing committed
    (folder / "tts").mkdir()
    claim_settings(folder, {"search": {"width": 3}, "model": "good"})
    assert recorded_settings(folder) == {"search.width": 3, "model": "good"}
    assert not (tmp_path / "replaced").exists()
    (folder / "traces.jsonl").write_text('{"problem_id": "p0"}\n')  # a result: now it is protected
    with pytest.raises(FolderError, match=r"search\.width: 3 -> 4"):
        claim_settings(folder, {"search": {"width": 4}, "model": "good"})


def test_a_search_that_crashed_while_its_model_loaded_reruns_with_other_settings(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    from psrlm import engines
    from psrlm.cli import main

    from .test_cli_errors import _sets

    problems = tmp_path / "p.jsonl"
    problems.write_text(json.dumps({"id": "a", "question": "Mia has 2 pens. How many?", "answer": "2",
                                    "source": "t"}) + "\n")  # fmt: skip
    small = ["search.max_steps=1", "search.max_rounds=1", "search.max_step_tokens=4", "search.verdict=logits"]
    base = ["search", "--model", str(tiny_model_dir), "--problems", str(problems), "--out", str(tmp_path / "out")]
    real = engines.engine_for

    def dies_loading(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C (or a crash) while the model loads: nothing computed yet

    monkeypatch.setattr(engines, "engine_for", dies_loading)
    assert main([*base, *_sets(tmp_path / "run", *small, "search.width=2")]) == 130
    monkeypatch.setattr(engines, "engine_for", real)
    assert main([*base, *_sets(tmp_path / "run", *small, "search.width=3")]) == 0, capsys.readouterr().err
    assert recorded_settings(tmp_path / "out")["search.width"] == 3
