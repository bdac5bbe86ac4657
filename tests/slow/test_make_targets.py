"""One smoke test per `make` target the README documents: the real target (the Makefile's own command line), run to
its end at the smallest size through the Makefile's CONFIG / SET / ARGS / SEEDS / RUNS variables, checking the
output it promises. Users keep the defaults and get the full size; these take minutes, so they are `slow`.
(`make test` is the suite itself; tests/test_commands.py::test_every_documented_command_has_a_smoke_test reads
COVERED from here.)"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from ..conftest import REPO

pytestmark = pytest.mark.slow

COVERED: dict[str, str] = {}


def covers(*targets: str):
    def mark(fn):
        for t in targets:
            COVERED[t] = fn.__name__
        return fn

    return mark


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    from ..test_commands import TINY, recipe_file

    return recipe_file(tmp_path_factory.mktemp("make") / "tiny.yaml", TINY)


def make(target: str, timeout: float = 1800, **variables: str) -> str:
    if shutil.which("make") is None:
        pytest.skip("no `make` on this machine")
    cmd = ["make", "--no-print-directory", "-C", str(REPO), target, *(f"{k}={v}" for k, v in variables.items())]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@covers("make demo")
def test_make_demo(recipe, tmp_path):
    out = make("demo", CONFIG=str(recipe), SET=f"--set paths.run_dir={tmp_path / 'demo'}")
    assert "| psrlm-M2 " in out and "| srlm-M2 " in out  # a model may be labelled (copy of its parent)
    assert (tmp_path / "demo" / "summary.json").exists() and (tmp_path / "demo" / "report.md").exists()


@covers("make bench")
def test_make_bench(recipe, tmp_path):
    out = make("bench", CONFIG=str(recipe), SET=f"--set paths.run_dir={tmp_path / 'bench'}",
               ARGS="--problems 2 --naive-problems 1")  # fmt: skip
    assert re.search(r"search_vs_raw=[0-9.]+ search_vs_naive=[0-9.]+", out)
    report = json.loads((tmp_path / "bench" / "bench" / "bench.json").read_text())
    assert report["search"]["problems"] == 2 and report["judge_mode_agreement"]["verdict"] == "generate"


@covers("make demo-full")
def test_make_demo_full(recipe, tmp_path):
    out = make("demo-full", FULL=str(recipe), SET=f"--set paths.run_dir={tmp_path / 'full'}")
    assert "report:" in out and (tmp_path / "full" / "report.md").exists()


@covers("make science")
def test_make_science(recipe, tmp_path):
    make("science", FULL=str(recipe), RUNS=str(tmp_path), SEEDS="0 1")
    text = (tmp_path / "science" / "report.md").read_text()
    assert "seed0" in text and "seed1" in text and "95" in text
    for s in (0, 1):
        assert json.loads((tmp_path / "science" / f"seed{s}" / "summary.json").read_text())["models"]


@covers("make sweep")
def test_make_sweep(recipe, tmp_path):
    make("sweep", FULL=str(recipe), RUNS=str(tmp_path), ARGS="--accuracies 1.0 --seeds 0 --questions 2")
    summary = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert summary["accuracies"] == [1.0] and (tmp_path / "sweep" / "sweep.png").exists()


@covers("make upper")
def test_make_upper(recipe, tmp_path):
    make("upper", FULL=str(recipe), RUNS=str(tmp_path), ARGS="--seeds 0 --questions 2")
    summary = json.loads((tmp_path / "upper" / "sweep.json").read_text())
    assert summary["accuracies"] == [0.5, 1.0] and summary["oracle_ties"] == "accept" and summary["questions"] == 2


@pytest.fixture(scope="module")
def frontier_recipe(tmp_path_factory) -> Path:
    """The tiny recipe with a two-level ladder that the random-weight model meets anywhere (band from 0)."""
    from ..test_commands import TINY, recipe_file
    from ..test_frontier import LEVELS

    sets = [*TINY, *LEVELS, "iterate.frontier_band=[0.0, 1.0]", "rft.lr=0.001", "rft.batch_size=4"]
    return recipe_file(tmp_path_factory.mktemp("frontier") / "tiny-frontier.yaml", sets)


@covers("make frontier")
def test_make_frontier(frontier_recipe, tmp_path):
    make("frontier", FRONTIER=str(frontier_recipe), RUNS=str(tmp_path),
         ARGS="--arms oracle --seeds 0 --set iterate.questions=[3]")  # fmt: skip
    summary = json.loads((tmp_path / "frontier" / "frontier.json").read_text())
    assert list(summary["arms"]) == ["oracle"] and summary["seeds"] == [0]


@covers("make frontier-controls")
def test_make_frontier_controls(frontier_recipe, tmp_path):
    make("frontier-controls", FRONTIER=str(frontier_recipe), RUNS=str(tmp_path),
         ARGS="--seeds 0 --set iterate.questions=[3,3]")  # fmt: skip
    summary = json.loads((tmp_path / "frontier" / "frontier.json").read_text())
    its = {
        arm: [r["iteration"] for r in summary["per_seed"]["0"]["arms"][arm]["iterations"]] for arm in summary["arms"]
    }
    assert its == {"self": [2, 3], "oracle": [2, 3], "rft": [2], "outcome": [2], "srlm": [2]}
    assert summary["per_seed"]["0"]["arms"]["srlm"]["m1"] == "srlm-M1"  # the baseline starts from its own M1


@covers("make frontier-pilot")
def test_make_frontier_pilot(frontier_recipe, tmp_path):
    make("frontier-pilot", FRONTIER=str(frontier_recipe), RUNS=str(tmp_path),
         ARGS="--arms oracle,rft --seeds 0 --set iterate.questions=[3]")  # fmt: skip
    summary = json.loads((tmp_path / "frontier-pilot" / "frontier.json").read_text())
    assert list(summary["arms"]) == ["oracle", "rft"] and summary["questions"] == [3]


@covers("make frontier-dpo-grid")
def test_make_frontier_dpo_grid(frontier_recipe, tmp_path):
    make("frontier", FRONTIER=str(frontier_recipe), RUNS=str(tmp_path),
         ARGS="--arms oracle --seeds 0,1 --set iterate.questions=[3,3]")  # fmt: skip
    # The tiny model's 3-question search rarely mixes a right and a wrong step, so where it made no pairs the seed
    # gets hand-written ones (a right and a wrong next step): the grid's trainings need something to train on.
    from psrlm.prompts import get_prompts
    from psrlm.records import PreferencePair, write_jsonl

    q = "Mia has 12 apples. She finds 3 more apples. How many apples does Mia have now?"
    pair = PreferencePair(get_prompts("compact").step_prompt(q, []), " She has 12 + 3 = 15. The answer is \\boxed{15}.",
                          " She has 12 + 3 = 16. The answer is \\boxed{16}.",
                          {"problem_id": "a", "step": 1, "chosen_final": True, "rejected_final": True})  # fmt: skip
    for seed in (0, 1):
        for it in (2, 3):
            pairs = tmp_path / "frontier" / f"seed{seed}" / "oracle" / f"it{it}" / "pairs.jsonl"
            if not pairs.read_text().strip():
                write_jsonl(pairs, [pair] * 4)
    make("frontier-dpo-grid", FRONTIER=str(frontier_recipe), RUNS=str(tmp_path))
    table = (tmp_path / "frontier" / "dpo-grid.md").read_text()
    for setting in ("| M1 |", "| recipe |", "| long |", "| long_nll |"):
        assert setting in table
    grid = tmp_path / "frontier" / "seed1" / "dpo-grid"
    trained = json.loads((grid / "long_nll" / "psrlm_manifest.json").read_text())
    assert trained["config"]["dpo"]["nll_weight"] == 1.0 and trained["config"]["dpo"]["epochs"] == 4
    # the later iterations' rate, from oracle-M2 on its own pairs: the recipe's scaled rate against the first rate
    # and against M1 as the reference
    import yaml

    scaled = yaml.safe_load(frontier_recipe.read_text())
    scaled.setdefault("dpo", {})["lr_scale_by_iteration"] = [1, 0.25]
    (tmp_path / "scaled.yaml").write_text(yaml.safe_dump(scaled))
    make("frontier-dpo-grid", FRONTIER=str(tmp_path / "scaled.yaml"), RUNS=str(tmp_path), GRID_ITERATION="3")
    table = (tmp_path / "frontier" / "dpo-grid-it3.md").read_text()
    for setting in ("| M2 |", "| constant |", "| scaled |", "| ref_m1 |"):
        assert setting in table
    lr = {v: json.loads((tmp_path / "frontier" / "seed1" / "dpo-grid-it3" / v / "psrlm_manifest.json").read_text())
          for v in ("constant", "scaled", "ref_m1")}  # fmt: skip
    first = lr["constant"]["metrics"]["train"]["lr"]
    assert lr["scaled"]["metrics"]["train"]["lr"] == first / 4 and lr["ref_m1"]["metrics"]["train"]["lr"] == first
    assert lr["constant"]["parent_model"].endswith("oracle-M2")


@covers("make gpu_check")
def test_make_gpu_check():
    out = make("gpu_check", timeout=600)
    import torch

    if not torch.cuda.is_available():  # every CUDA check is skipped, each with its reason
        assert "skipped" in out and "passed" not in out
    else:
        assert "passed" in out


@covers("make slow_test")
def test_make_slow_test():
    # the slow suite's own entry point, narrowed to its quickest test (the whole of it is what this file is in)
    out = make("slow_test", PYTEST_ARGS="tests/slow/test_make_targets.py -k test_make_quality")
    assert "1 passed" in out


@covers("make quality")
def test_make_quality():
    out = make("quality", timeout=300)
    assert "All checks passed" in out or "already formatted" in out


@covers("make lock")
def test_make_lock_resolves_afresh_into_a_scratch_lock(tmp_path):
    """`make lock` without its 10-minute suite (LOCK_TEST=0), writing a scratch lock: resolves every extra from the
    registry, keeps torch at the pinned CPU build's version, and says what changed against requirements.lock."""
    out = make("lock", timeout=1800, LOCK_TEST="0", LOCK_OUT=str(tmp_path / "new.lock"),
               LOCK_VENV=str(tmp_path / "venv"))  # fmt: skip
    new = (tmp_path / "new.lock").read_text()
    assert "torch==2.13.0\n" in new and "trl==" in new and "deepspeed==" in new
    assert re.search(r"lock: \d+ change\(s\) against requirements.lock", out)
    assert not (tmp_path / "venv").exists() and os.path.getsize(REPO / "requirements.lock") > 0


@covers("make gpu_wheels")
def test_make_gpu_wheels(tmp_path):
    make("gpu_wheels", timeout=600, WHEELS=str(tmp_path / "wheels"))
    names = sorted(p.name for p in (tmp_path / "wheels").glob("*.whl"))
    assert any(n.startswith("math_verify") for n in names) and len(names) == 3
