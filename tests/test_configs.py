from pathlib import Path

import pytest

from psrlm.configs import Config, ConfigError, load_config, save_config

from .conftest import REPO

RECIPES = sorted((REPO / "configs").glob("*.yaml"))


def test_recipes_exist():
    assert any(p.name == "demo.yaml" for p in RECIPES)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_parses(recipe: Path):
    cfg = load_config(recipe)
    assert isinstance(cfg, Config)


def test_unknown_key_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("arith:\n  n_trian: 5\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown config key 'arith\.n_trian'"):
        load_config(bad)


def test_unknown_section_rejected(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("serach:\n  width: 5\n")
    with pytest.raises(ConfigError, match="unknown config key 'serach'"):
        load_config(bad)


def test_override_beats_recipe_and_is_typed(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("arith:\n  n_train: 100\n")
    cfg = load_config(recipe, ["arith.n_train=7", "prompts.variant=compact"])
    assert cfg.arith.n_train == 7 and cfg.prompts.variant == "compact"


@pytest.mark.parametrize(
    "override, message",
    [
        ("arith.n_train=lots", "expected int"),
        ("arith.nope=1", "unknown config key 'arith.nope'"),
        ("arith=3", "must be a mapping"),
        ("arith.n_train", "expected section.key=value"),
        ("arith.n_train=true", "expected int"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("arith: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_saved_config_loads_back(tmp_path):
    cfg = load_config(None, ["arith.seed=3"])
    save_config(cfg, tmp_path / "cfg.yaml")
    assert load_config(tmp_path / "cfg.yaml") == cfg


def test_initdata_recipe_reuses_the_prebuilt_m0():
    """configs/initdata-arith.yaml must match demo.yaml where M0 is keyed, or `psrlm data eft` pre-trains for an hour."""
    import json

    from psrlm.iterate import m0_key

    cfg = load_config(REPO / "configs" / "initdata-arith.yaml")
    built = json.loads((REPO / cfg.iterate.m0_path / "psrlm_build.json").read_text())
    assert m0_key(cfg) == built["m0_key"] == m0_key(load_config(REPO / "configs" / "demo.yaml"))
