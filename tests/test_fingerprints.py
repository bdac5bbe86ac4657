"""The settings fingerprints that decide whether a run folder resumes, pinned to their values.

Every model, search folder and evaluation cache records the settings that made it; a rerun resumes only when they
are equal. A change to what those settings contain (a renamed key, a new field at its default, a moved function
that builds them differently) would make every user's run folder rebuild, hours at scale. These values were
recorded before the package was restructured; a deliberate change updates them here and says so in its commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from psrlm.configs import load_config
from psrlm.folders import fingerprint, flatten
from psrlm.records import Manifest, Problem, write_json

from .conftest import SMALL

# the machine must not enter a fingerprint here: engine precision is pinned
SETTINGS = [*SMALL, "engine.dtype=float32"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from psrlm.initdata.build import build_arith_data
    from psrlm.runfolder import Run

    cfg = load_config(None, [*SETTINGS, f"paths.run_dir={tmp_path_factory.mktemp('fp') / 'run'}"])
    build_arith_data(cfg)
    return Run(cfg)


def _fake_model(path: Path, **build) -> Path:
    """A model folder with fixed bytes: its identity hash is a function of these bytes alone."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"model_type": "llama"}\n')
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "tokenizer.json").write_text("{}\n")
    (path / "psrlm_build.json").write_text(json.dumps(build) + "\n")
    return path


def test_the_m0_key_and_m1_settings(run):
    from psrlm.m0 import m0_key
    from psrlm.stages import m1_settings

    assert m0_key(run.cfg) == M0_KEY
    m0 = _fake_model(run.dir / "models" / "M0-fake", m0_key=m0_key(run.cfg))
    assert fingerprint(m1_settings(run, "psrlm", m0)) == M1["psrlm"]
    assert fingerprint(m1_settings(run, "srlm", m0)) == M1["srlm"]


def test_the_iteration_settings_of_both_methods(run):
    from psrlm.stages import iteration_settings, m1_settings

    m0 = _fake_model(run.dir / "models" / "M0-fake", m0_key="k")
    questions = [Problem(id=f"q{i}", question=f"Q {i}?", answer=str(i), source="t") for i in range(3)]
    for method in ("psrlm", "srlm"):
        run.write_manifest(f"{method}-M1", Manifest(iteration=1, method=method, parent_model="", model_path="",
                                                    settings=flatten(m1_settings(run, method, m0))))  # fmt: skip
        search, model = iteration_settings(run, method, 2, f"{method}-M1", questions)
        assert (fingerprint(search), fingerprint(model)) == ITERATION[method], method


def test_each_iteration_is_keyed_by_the_rate_it_trains_at(run):
    # dpo.lr_scale_by_iteration reaches the model settings of the iteration that reads it (and M2 keeps its key)
    import dataclasses

    from psrlm.runfolder import Run
    from psrlm.stages import iteration_settings, m1_settings

    m0 = _fake_model(run.dir / "models" / "M0-fake", m0_key="k")
    run.write_manifest("psrlm-M1", Manifest(iteration=1, method="psrlm", parent_model="", model_path="",
                                            settings=flatten(m1_settings(run, "psrlm", m0))))  # fmt: skip
    questions = [Problem(id="q0", question="Q 0?", answer="0", source="t")]
    scaled = dataclasses.replace(run.cfg.dpo, lr_scale_by_iteration=[1, 0.1])
    per_iteration = Run(dataclasses.replace(run.cfg, dpo=scaled))
    for it, lr in ((2, run.cfg.dpo.lr), (3, run.cfg.dpo.lr * 0.1)):
        assert iteration_settings(per_iteration, "psrlm", it, "psrlm-M1", questions)[1]["dpo"]["lr"] == lr
    assert iteration_settings(per_iteration, "psrlm", 2, "psrlm-M1", questions) == iteration_settings(
        run, "psrlm", 2, "psrlm-M1", questions
    )


def test_the_evaluation_and_generation_settings(run, tmp_path):
    from psrlm.evaluate import eval_settings
    from psrlm.identity import generation_settings, train_settings

    model = _fake_model(tmp_path / "model")
    settings, _ = eval_settings(run.cfg.engine, model, "compact", 240, None, {}, {"include_percentage": True})
    assert fingerprint(settings) == EVAL
    assert fingerprint(generation_settings(run.cfg.search)) == GENERATION["search"]
    assert fingerprint(generation_settings(run.cfg.srlm)) == GENERATION["srlm"]
    assert fingerprint(train_settings(run.cfg.dpo)) == GENERATION["dpo"]


def test_the_cache_keys_of_iterate_and_the_standalone_commands(run):
    """The caches `psrlm iterate` and `psrlm eval` / `psrlm search` share since one orchestration serves both: a
    model's metrics.json, its tts.json, and a `psrlm search` folder."""
    from psrlm.evaluation import metrics_settings, tts_settings
    from psrlm.identity import generation_identity

    assert fingerprint(metrics_settings(run, True, False, True)) == CACHES["metrics"]
    assert fingerprint(tts_settings(run, 2)) == CACHES["tts"]
    for method, gen_cfg in (("psrlm", run.cfg.search), ("srlm", run.cfg.srlm)):
        search = {"method": method, **generation_identity(method, gen_cfg, run.cfg.prompts.variant)}
        assert fingerprint(search) == CACHES[f"search {method}"], method


def test_a_settings_file_reads_back_as_written(tmp_path):
    write_json(tmp_path / "s.json", {"settings": flatten({"a": {"b": [1, 2]}})})
    assert json.loads((tmp_path / "s.json").read_text()) == {"settings": {"a.b": [1, 2]}}


# recorded on the commit before the package was restructured (issue 21)
M0_KEY = "d6c8cb394e"
M1 = {"psrlm": "f52da16acdfe5bc8", "srlm": "066726d685b30fc4"}
ITERATION = {"psrlm": ("f7f28befb2ac6588", "0e205cbb7038a64b"), "srlm": ("6519a6a03646a243", "a53123b8d4adff96")}
EVAL = "83b88945eae5fc38"
GENERATION = {"search": "34c33ca45b39bb1b", "srlm": "b6c6922922038117", "dpo": "e62dbc6c2572423b"}
# recorded on the commit before evaluation and search had one orchestration (issue 21, items 2, 3 and 6)
CACHES = {"metrics": "707c2e2443598b5d", "tts": "cbf079f964532ebb", "search psrlm": "4d821cc97276947e",
          "search srlm": "1de63f59871e320c"}  # fmt: skip
