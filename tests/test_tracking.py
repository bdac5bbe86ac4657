"""Experiment tracking: a real tiny loop reporting to TensorBoard and trackio, read back from their own files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from psrlm.configs import REPORT_TO, ConfigError, load_config

from .test_iterate import LOOP

pytest.importorskip("tensorboard", reason="tracking needs the `track` extra (tensorboard)")
pytest.importorskip("trackio", reason="tracking needs the `track` extra (trackio)")


def _iterate(run: Path, env: dict) -> subprocess.CompletedProcess:
    sets = [
        *LOOP,
        "iterate.methods=[psrlm]",
        f"paths.run_dir={run}",
        "track.report_to=[tensorboard, trackio]",
        "dpo.logging_steps=1",
        "sft.logging_steps=1",
    ]
    cmd = [sys.executable, "-m", "psrlm.cli", "iterate", *(a for s in sets for a in ("--set", s))]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _trackio_logs(store: Path, run: str) -> list[dict]:
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage; "
            f"print(json.dumps(SQLiteStorage.get_logs('psrlm', run={run!r}), default=str))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ, "TRACKIO_DIR": str(store)})  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tracked") / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("TRACKIO_DIR", "TENSORBOARD_LOGGING_DIR")}
    done = _iterate(run, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return run, env


def test_tensorboard_holds_every_trainers_losses_and_the_loops_metrics(tracked_run):
    run, _ = tracked_run
    tb = run / "tracking" / "tensorboard"
    for model in ("psrlm-M1", "psrlm-M2"):  # each TRL trainer's own run
        assert _scalars(tb / model)["train/loss"], model
    loop = _scalars(tb / "loop")
    assert [s for s, _ in loop["psrlm/eval/arith_test"]] == [1, 2] and [
        s for s, _ in loop["base/eval/arith_test"]
    ] == [0]
    ((step, pairs),) = loop["psrlm/pairs"]
    manifest = json.loads((run / "manifests" / "psrlm-M2.json").read_text())
    assert step == 2 and pairs == manifest["metrics"]["search"]["pairs"]
    summary = json.loads((run / "summary.json").read_text())
    assert loop["psrlm/eval/arith_hard"][0][1] == pytest.approx(
        summary["models"]["psrlm-M1"]["benchmarks"]["arith_hard"]["accuracy"]
    )
    assert "psrlm/seconds/search" in loop and "psrlm/search_gen_tokens" in loop


def test_trackio_has_one_run_named_after_the_run_and_one_per_trainer(tracked_run):
    run, _ = tracked_run
    store = run / "tracking" / "trackio"
    loop = _trackio_logs(store, "run")
    assert {2} == {row["step"] for row in loop if "psrlm/pairs" in row}
    assert any("psrlm/eval/arith_test" in row for row in loop)
    assert any("train/loss" in row for row in _trackio_logs(store, "run-psrlm-M2"))


def test_a_rerun_resumes_the_tracking_run_without_logging_anything_twice(tracked_run):
    run, env = tracked_run
    before = (run / "tracking" / "logged.json").read_text()
    assert _iterate(run, env).returncode == 0
    assert (run / "tracking" / "logged.json").read_text() == before
    assert len(_scalars(run / "tracking" / "tensorboard" / "loop")["psrlm/pairs"]) == 1


def test_an_unknown_integration_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"track.report_to='tensorbord'.*choose none or any of azure_ml, .*wandb"):
        load_config(None, ["track.report_to=tensorbord"])


def test_the_known_integrations_are_transformers_own():
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert set(REPORT_TO) == set(INTEGRATION_TO_CALLBACK)


def test_a_missing_integration_fails_before_any_work(tmp_path, monkeypatch):
    import importlib.util

    from psrlm import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name))
    cfg = load_config(None, [f"paths.run_dir={tmp_path}", "track.report_to=[tensorboard, wandb]"])
    with pytest.raises(ValueError, match=r"wandb not installed \(pip install 'psrlm\[track\]'"):
        tracking.check_installed(cfg)
