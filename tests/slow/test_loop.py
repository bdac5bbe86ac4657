"""The whole loop on a tiny model: two problems, one iteration, both methods, the paper's prompt wording."""

import json

import pytest

from psrlm.configs import load_config
from psrlm.iterate import run_all

from ..test_iterate import LOOP


@pytest.mark.slow
def test_whole_loop_two_problems_one_iteration(tmp_path, capsys):
    cfg = load_config(None, LOOP + ["iterate.questions=[2]", "prompts.variant=paper", f"paths.run_dir={tmp_path}"])
    summary = run_all(cfg)
    assert set(summary["models"]) == {"M0", "psrlm-M1", "psrlm-M2", "srlm-M1", "srlm-M2"}
    out = capsys.readouterr().out
    assert "| psrlm-M2 " in out  # labelled where it is a copy of its parent
    for name in ("psrlm-M1", "psrlm-M2", "srlm-M1", "srlm-M2"):
        manifest = json.loads((tmp_path / "manifests" / f"{name}.json").read_text())
        assert manifest["model_path"].endswith(name) and manifest["config"]["prompts"]["variant"] == "paper"
    assert json.loads((tmp_path / "summary.json").read_text())["timings_s"]
