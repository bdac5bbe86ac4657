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
