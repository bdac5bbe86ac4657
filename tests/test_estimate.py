"""The demo's time estimate: training and the rest scaled by their own speed ratios, from a reference run of the same
recipe; no reference (or a changed recipe) says so instead of guessing."""

import json

import pytest

from psrlm.configs import load_config
from psrlm.estimate import Speeds, estimate, recipe_fingerprint, say_estimate, split_times, write_reference
from psrlm.runfolder import WALL_KEY

from .conftest import SMALL

TIMINGS = [  # timings.json keys (stage/model) -> (training, other)
    ({"psrlm M1 SFT/psrlm-M1": 60.0}, (60.0, 0.0)),
    ({"psrlm DPO/psrlm-M2": 5.0, "srlm DPO/srlm-M2": 3.0}, (8.0, 0.0)),
    ({"psrlm RFT/psrlm-M2": 4.0, "M0 pretrain": 100.0, "policy EFT": 7.0}, (111.0, 0.0)),
    ({"psrlm search/psrlm-M1": 10.0, "evaluation/M0": 12.0, "data": 2.5}, (0.0, 24.5)),
    ({"tts evaluation/psrlm-M1": 6.0, "appendix B": 5.0, "frontier probe/M1": 1.0}, (0.0, 12.0)),
    ({WALL_KEY: 999.0, "psrlm M1 SFT/psrlm-M1": 1.0, "srlm search/srlm-M1": 2.0}, (1.0, 2.0)),  # wall time left out
    ({}, (0.0, 0.0)),
]


@pytest.mark.parametrize("timings,expected", TIMINGS, ids=[",".join(t) or "empty" for t, _ in TIMINGS])
def test_stage_times_split_into_training_and_the_rest(timings, expected):
    assert split_times(timings) == pytest.approx(expected)


def test_each_part_scales_by_its_own_ratio():
    reference = {"speeds": {"train_step_s": 0.5, "generate_s": 2.0, "cpu": "ref CPU"}, "train_s": 100.0,
                 "other_s": 50.0}  # fmt: skip
    e = estimate(reference, Speeds(train_step_s=4.0, generate_s=3.0))  # training 8x slower, generation 1.5x
    assert e["seconds"] == pytest.approx(100 * 8 + 50 * 1.5)
    assert (e["train_x"], e["generate_x"], e["reference_s"], e["reference_cpu"]) == (8.0, 1.5, 150.0, "ref CPU")


def test_recipe_fingerprint_ignores_where_a_run_writes_but_not_what_it_does():
    base = recipe_fingerprint(load_config(None, SMALL))
    assert recipe_fingerprint(load_config(None, [*SMALL, "paths.run_dir=/elsewhere"])) == base
    assert recipe_fingerprint(load_config(None, [*SMALL, "iterate.questions=[7]"])) != base


def test_no_reference_or_a_changed_recipe_says_none(tmp_path, capsys, tiny_model_dir):
    cfg = load_config(None, SMALL)
    recipe = tmp_path / "demo.yaml"
    recipe.write_text("{}\n")
    assert say_estimate(cfg, None, tiny_model_dir) is None
    assert say_estimate(cfg, recipe, tiny_model_dir) is None
    assert capsys.readouterr().out.count("estimate: none (no reference run recorded for this recipe)") == 2
    (tmp_path / "demo.reference.json").write_text(json.dumps({"recipe": "something else"}))
    assert say_estimate(cfg, recipe, tiny_model_dir) is None
    assert "estimate: none (settings differ from the reference run's, demo.reference.json)" in capsys.readouterr().out


def test_calibrated_reference_estimates_its_own_machine_near_its_own_time(tmp_path, capsys, tiny_model_dir):
    """The whole path on a real tiny model: calibrate (a training step, a batched generation), write the reference
    beside the recipe, estimate from it on the same machine: both ratios near 1, so about the reference's time."""
    cfg = load_config(None, [*SMALL, "engine.batch_size=8", "sft.batch_size=4"])
    recipe = tmp_path / "demo.yaml"
    recipe.write_text("{}\n")
    from psrlm.estimate import calibrate

    speeds = calibrate(cfg, tiny_model_dir)
    assert speeds.train_step_s > 0 and speeds.generate_s > 0 and speeds.cpu
    path = write_reference(recipe, cfg, speeds, {"psrlm M1 SFT/psrlm-M1": 600.0, "psrlm search/psrlm-M1": 600.0},
                           recipe_fingerprint(cfg))  # fmt: skip
    assert path == tmp_path / "demo.reference.json"
    e = say_estimate(cfg, recipe, tiny_model_dir)
    assert e is not None and 0.2 < e["train_x"] < 5 and 0.2 < e["generate_x"] < 5  # one machine, noisy timings
    assert "estimate: about" in capsys.readouterr().out
