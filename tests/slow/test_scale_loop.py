"""One iteration of `psrlm iterate` as a real run is laid out, at CPU size: every checkpoint that needs generation is
served by a `transformers serve` the driver starts and stops, and every training stage is an `accelerate launch`
job of 2 processes (configs/accelerate/cpu.yaml)."""

import json
import os
import subprocess
import sys

import pytest

from ..test_iterate import LOOP

pytestmark = pytest.mark.slow


def test_iterate_with_managed_servers_and_launched_training(tmp_path):
    run = tmp_path / "run"
    sets = LOOP + [f"paths.run_dir={run}", "iterate.methods=[psrlm]", "engine.kind=transformers",
                   "engine.port=8900", "engine.concurrency=4", "launch.accelerate_config=cpu",
                   "search.verdict=generate", "search.judge_max_tokens=4", "iterate.eval_eft=2"]  # fmt: skip
    cmd = [sys.executable, "-m", "psrlm.cli", "iterate", *sum((["--set", s] for s in sets), [])]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env={**os.environ, "TQDM_DISABLE": "1"})
    assert done.returncode == 0, done.stderr[-4000:]
    logs = sorted(p.name for p in (run / "servers").glob("*.log"))
    # one server per checkpoint and stage that generates: M0 and M1 evaluated, M1 searched, M2 evaluated
    assert {"M0-0.log", "psrlm-M1-0.log", "psrlm-M2-0.log"} <= set(logs), logs
    assert all("serve" in (run / "servers" / n).read_text() for n in logs)
    m1 = json.loads((run / "models" / "psrlm-M1" / "psrlm_manifest.json").read_text())["metrics"]["train"]
    assert m1["stage"] == "sft" and m1["processes"] == 2
    assert "accelerate.commands.launch" in (run / "models" / "psrlm-M1.launch.log").read_text()
    m2 = json.loads((run / "models" / "psrlm-M2" / "psrlm_manifest.json").read_text())["metrics"]
    # the tiny model rarely writes a verdict through a server in 4 tokens: with no pair, M2 is M1's copy (recorded
    # as such); DPO as a 2-process job is covered by tests/test_scale.py
    if m2["search"]["pairs"]:
        assert m2["train"]["stage"] == "dpo" and m2["train"]["processes"] == 2
    else:
        assert m2["train"] == {"stage": "dpo", "pairs": 0, "skipped": True}
    assert json.loads((run / "manifests" / "psrlm-M2.json").read_text())["settings"]  # the driver's record too
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["models"]) == {"M0", "psrlm-M1", "psrlm-M2"}
