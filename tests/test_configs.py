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
        ("dpo.lr=1e-4x", "expected float"),
        ("dpo.nll_weight=-1", r"dpo\.nll_weight=-1\.0 .*must be >= 0"),
        ("dpo.lr_scale_by_iteration=[1, 0]", r"dpo\.lr_scale_by_iteration=.*must list factors > 0 of lr"),
        ("sft.lr_scale_by_iteration=[1]", r"sft\.lr_scale_by_iteration=.*is for the iterated stages \(dpo, rft\)"),
    ],
)
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize(
    "text, value", [("1e-4", 1e-4), ("5E-7", 5e-7), ("2.5e-5", 2.5e-5), ("0.001", 0.001), ("3", 3.0)]
)
def test_exponent_floats_are_numbers(text, value, tmp_path):
    # YAML 1.1 reads 1e-4 (no dot) as a string: on the command line and in a recipe it is still the number
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"sft:\n  lr: {text}\n")
    assert load_config(None, [f"dpo.lr={text}"]).dpo.lr == value
    assert load_config(recipe).sft.lr == value


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

    from psrlm.m0 import m0_key

    cfg = load_config(REPO / "configs" / "initdata-arith.yaml")
    built = json.loads((REPO / cfg.iterate.m0_path / "psrlm_build.json").read_text())
    assert m0_key(cfg) == built["m0_key"] == m0_key(load_config(REPO / "configs" / "demo.yaml"))


# ---------------------------------------------------------------------------------- values checked at load

BAD_VALUES = [
    ("search.max_rounds=0", "search.max_rounds"),
    ("arith.pretrain_step_share=1.5", "arith.pretrain_step_share"),
    ("search.temperature=-0.1", "search.temperature"),
    ("search.top_p=0", "search.top_p"),
    ("search.top_p=1.5", "search.top_p"),
    ("search.width=1", "search.width"),
    ("search.max_step_tokens=0", "search.max_step_tokens"),
    ("search.judge_max_tokens=0", "search.judge_max_tokens"),
    ("search.max_steps=0", "search.max_steps"),
    ("search.judge_mode=every", "search.judge_mode"),
    ("search.verdict=maybe", "search.verdict"),
    ("srlm.n_samples=0", "srlm.n_samples"),
    ("srlm.top_p=2", "srlm.top_p"),
    ("srlm.max_solution_tokens=0", "srlm.max_solution_tokens"),
    ("engine.batch_size=0", "engine.batch_size"),
    ("engine.dtype=float8", "engine.dtype"),
    ("engine.static_cache=sometimes", "engine.static_cache"),
    ("sft.batch_size=0", "sft.batch_size"),
    ("dpo.lr=0", "dpo.lr"),
    ("sft.bf16=yes-please", "sft.bf16"),
    ("pretrain.lr_scheduler=cosin", "pretrain.lr_scheduler"),
    ("sft.sampler=shortest_first", "sft.sampler"),
    ("dpo.sampler=group_by_length", "dpo.sampler"),  # a DPO row has two lengths
    ("arith.min_ops=5", "arith.min_ops"),  # min_ops <= max_ops (max_ops is 4 by default)
    ("arith.hard_min_ops=9", "arith.hard_min_ops"),
    ("arith.n_train=-1", "arith.n_train"),
    ("data.eft_test=-2", "data.eft_test"),
    ("iterate.eval_max_tokens=0", "iterate.eval_max_tokens"),
    ("iterate.eval_limit=-1", "iterate.eval_limit"),
    ("iterate.questions=[]", "iterate.questions"),
    ("iterate.questions=[3, 0]", "iterate.questions"),
    ("iterate.methods=[psrlm, dpo]", "iterate.methods"),
    ("iterate.eval_benchmarks=[gsm9k]", "iterate.eval_benchmarks"),
    ("iterate.oracle_iterations=-1", "iterate.oracle_iterations"),
    ("iterate.oracle_iterations=4", "iterate.oracle_iterations"),  # one per block of iterate.questions (3)
    ("initdata.top_p=0", "initdata.top_p"),
    ("initdata.segment_max_tokens=0", "initdata.segment_max_tokens"),
    ("initdata.prm_train.batch_size=0", "initdata.prm_train.batch_size"),
    ("model.hidden_size=250", "model.hidden_size"),  # not a multiple of num_heads=4
    ("prompts.variant=fancy", "prompts.variant"),
]


@pytest.mark.parametrize("override,key", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_out_of_range_values_are_caught_at_load_naming_key_and_source(override, key):
    with pytest.raises(ConfigError, match=rf"{key.replace('.', r'[.]')}=.*\(--set {override.split('=')[0]}"):
        load_config(None, [override])


def test_range_error_in_a_recipe_names_the_file(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("search:\n  max_rounds: 0\n")
    with pytest.raises(ConfigError, match=r"search\.max_rounds=0 \(.*r\.yaml\): must be >= 1"):
        load_config(recipe)


def test_every_bad_value_is_reported_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["search.max_rounds=0", "srlm.top_p=3"])
    assert "search.max_rounds" in str(e.value) and "srlm.top_p" in str(e.value)


def test_openai_engine_without_a_url_is_caught_before_any_request():
    with pytest.raises(ConfigError, match=r"engine\.base_urls"):
        load_config(None, ["engine.kind=openai"])


@pytest.mark.parametrize("value,expected", [("false", False), ("true", True), ("'true'", True), ("auto", "auto")])
def test_bf16_and_static_cache_take_yaml_booleans(value, expected):
    cfg = load_config(None, [f"sft.bf16={value}", f"engine.static_cache={value}"])
    assert cfg.sft.bf16 == expected and cfg.engine.static_cache == expected


def test_duplicate_keys_in_a_recipe_are_an_error(tmp_path):
    recipe = tmp_path / "dup.yaml"
    recipe.write_text("sft:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml.*duplicate key 'lr' \(first on line 2\)"):
        load_config(recipe)
    recipe.write_text("sft:\n  lr: 0.1\nsft:\n  epochs: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'sft'"):
        load_config(recipe)


def test_recipe_that_is_not_utf8_names_file_and_line(tmp_path):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("paths:\n  run_dir: runs/x\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml:3: not UTF-8"):
        load_config(recipe)


def test_config_given_a_directory_or_a_bad_override(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"--set search\.width=\[: not valid YAML"):
        load_config(None, ["search.width=["])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(None, [".width=3"])


def test_demo_recipe_leaves_precision_to_the_machine():
    cfg = load_config(REPO / "configs" / "demo.yaml")
    assert cfg.engine.dtype == "auto" and cfg.engine.static_cache == "auto"
    assert cfg.pretrain.bf16 == cfg.sft.bf16 == cfg.dpo.bf16 == "auto"


@pytest.mark.parametrize("recipe", ["paper-7b.yaml", "paper-72b.yaml"])
def test_paper_recipes_have_the_papers_settings_and_room_to_answer(recipe):
    cfg = load_config(REPO / "configs" / recipe)
    assert cfg.prompts.variant == "paper" and cfg.data.source == "files"
    gpus = cfg.launch.num_processes
    assert (cfg.sft.epochs, cfg.sft.lr, cfg.sft.batch_size * cfg.sft.grad_accum * gpus) == (3, 1e-6, 32)
    assert (cfg.dpo.epochs, cfg.dpo.lr, cfg.dpo.batch_size * cfg.dpo.grad_accum * gpus) == (1, 5e-7, 32)
    # at scale: a vLLM server per checkpoint, training as ZeRO-3 jobs on 8 GPUs with activation checkpointing
    assert cfg.engine.kind == "vllm" and cfg.launch.accelerate_config.startswith("zero3") and gpus == 8
    assert cfg.sft.gradient_checkpointing and cfg.dpo.gradient_checkpointing and cfg.dpo.save_steps > 0
    s = cfg.search
    assert (s.width, s.temperature, s.top_p, s.judge_mode, s.max_rounds) == (6, 0.5, 0.95, "all_ordered", 20)
    assert cfg.iterate.questions == [400, 800, 1200] and cfg.iterate.eval_benchmarks == ["paper"]
    # caps that leave a real model room to finish (Qwen2.5-Math has a 4,096-token context)
    assert cfg.iterate.eval_max_tokens >= 2048 and s.max_steps >= 20
    assert cfg.srlm.max_solution_tokens >= 1024 and cfg.srlm.judge_max_tokens >= 256
    assert cfg.initdata.segment_max_tokens >= 2048 and cfg.initdata.judge_max_tokens >= 2048


@pytest.mark.parametrize("sets, key", [
    (["search.judge=oracle", "data.source=files"], "search.judge"),
    (["search.judge=oracle", "search.judge_flip=1.5"], "search.judge_flip"),
    (["search.judge=oracle", "search.judge_flip=-0.1"], "search.judge_flip"),
    (["search.judge_flip=0.2"], "search.judge_flip"),  # flips only the oracle's verdicts
    (["search.judge=teacher"], "search.judge"),
])  # fmt: skip
def test_the_controlled_judge_is_checked(sets, key):
    with pytest.raises(ConfigError, match=key.replace(".", "[.]")):
        load_config(None, sets)
    assert load_config(None, ["search.judge=oracle", "search.judge_flip=0.3"]).search.judge_flip == 0.3


@pytest.mark.parametrize("sets, why", [
    (["iterate.oracle_iterations=1", "iterate.methods=[srlm]"], "needs psrlm in iterate.methods"),
    (["iterate.oracle_iterations=1", "data.source=files"], "needs the arith domain's step oracle"),
    (["iterate.oracle_iterations=2", "iterate.questions=[5]"], "must be 0 .off. .. 1"),
])  # fmt: skip
def test_the_oracle_arm_is_checked(sets, why):
    with pytest.raises(ConfigError, match=rf"iterate[.]oracle_iterations=\d \(--set .*\): {why}"):
        load_config(None, sets)
    assert load_config(None, ["iterate.oracle_iterations=3"]).iterate.oracle_iterations == 3
    assert load_config(None).iterate.oracle_iterations == 0  # off unless asked: the paper's recipes do not run it


def test_a_later_setting_left_at_its_default_keeps_old_model_identities():
    # dpo.nll_weight came after runs were made: at 0 it must not change what an existing model folder is keyed on,
    # or every finished run would be refused on resume
    from psrlm.identity import train_settings

    assert "nll_weight" not in train_settings(load_config(None).dpo)
    assert train_settings(load_config(None, ["dpo.nll_weight=0.5"]).dpo)["nll_weight"] == 0.5


@pytest.mark.parametrize(
    "scales, iteration, lr",
    [
        ([], 2, 5e-5),  # empty: dpo.lr every iteration, as the paper
        ([], 4, 5e-5),
        ([1, 0.2], 2, 5e-5),  # M2 takes the first entry
        ([1, 0.2], 3, 1e-5),
        ([1, 0.2], 6, 1e-5),  # the last entry repeats
        ([2, 0.2], 0, 1e-4),  # `psrlm train dpo` without --iteration: the first
    ],
)
def test_lr_scale_by_iteration_gives_each_iteration_its_rate(scales, iteration, lr):
    from psrlm.configs.train import TrainConfig

    tc = TrainConfig(lr=5e-5, lr_scale_by_iteration=scales).for_iteration(iteration)
    assert tc.lr == pytest.approx(lr) and tc.lr_scale_by_iteration == []


def test_a_rate_per_iteration_keeps_the_first_models_identity():
    # a run made at a constant dpo.lr that adds lr_scale_by_iteration starting at 1 resumes its M2 and rebuilds only
    # the iterations whose rate changed; `--set dpo.lr=...` still sets the rate the scales multiply
    from psrlm.identity import train_settings

    plain = load_config(None, ["dpo.lr=0.00005"]).dpo
    per_iteration = load_config(None, ["dpo.lr=0.00005", "dpo.lr_scale_by_iteration=[1, 0.2]"]).dpo
    assert "lr_scale_by_iteration" not in train_settings(plain)
    assert train_settings(per_iteration.for_iteration(2)) == train_settings(plain)
    assert train_settings(per_iteration.for_iteration(3)) == {**train_settings(plain), "lr": pytest.approx(1e-5)}


def test_the_frontier_recipe_trains_the_dpo_its_results_were_measured_with():
    # docs/results.md's frontier numbers came from these settings; an edit that drops one (a lost line falls back
    # to the default, batch 32 without precomputed reference log-probs) would make every run of the recipe rebuild
    dpo = load_config(REPO / "configs" / "frontier.yaml").dpo
    measured = dict(epochs=4, lr=5e-5, nll_weight=1.0, lr_scale_by_iteration=[1, 0.2], beta=0.1, batch_size=16,
                    precompute_ref_log_probs=True)  # fmt: skip
    assert {k: getattr(dpo, k) for k in measured} == measured


@pytest.mark.parametrize("recipe", ["demo.yaml", "initdata-arith.yaml"])
def test_the_prebuilt_m0_was_built_by_the_recipes_that_use_it(recipe):
    """checkpoints/arith-m0 stands in for `psrlm model pretrain` with these recipes: a recipe whose domain, model or
    pre-training settings drift from the checkpoint's build config would describe a model it does not load."""
    from psrlm.configs import config_to_dict

    built = config_to_dict(load_config(REPO / "checkpoints" / "arith-m0" / "build_config.yaml"))
    used = config_to_dict(load_config(REPO / "configs" / recipe))
    assert used["iterate"]["m0_path"] == "checkpoints/arith-m0"
    for section in ("arith", "model", "pretrain"):
        # precision is the building machine's (bf16 where the CPU has it), not part of what the recipe describes
        assert {k: v for k, v in used[section].items() if k != "bf16"} == {
            k: v for k, v in built[section].items() if k != "bf16"
        }, section


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_pretraining_text_mixes_the_step_layout_by_its_share(share, tmp_path):
    """Both halves of the stream (in-distribution and hard-style) get the step layout at the same rate, and the
    share keys M0 only when it leaves 0, so every M0 built before the setting existed keeps its key."""
    from psrlm.m0 import m0_key, m0_texts
    from psrlm.runfolder import Run

    sets = ["arith.n_train=40", "arith.n_test=10", "arith.n_pretrain=400", f"paths.run_dir={tmp_path}"]
    cfg = load_config(None, [*sets, f"arith.pretrain_step_share={share}"])
    texts = m0_texts(Run(cfg))
    assert len(texts) == 400
    for half in (texts[0::2], texts[1::2]):  # the stream alternates in-distribution and hard-style problems
        stepped = sum("\nStep 1: " in t for t in half) / len(half)
        assert abs(stepped - share) < 0.12, stepped
    assert all(" = " in t for t in texts)
    assert (m0_key(cfg) == m0_key(load_config(None, sets))) == (share == 0.0)


# ------------------------------------------------------------------------------------- layers (issue 23)


def test_two_recipes_are_layered_in_order_and_show_config_names_each_value_s_source(tmp_path, capsys):
    """`-c demo.yaml -c over.yaml` kept only the last: m0_path went empty and iterate pre-trained M0 from scratch."""
    from psrlm.cli import main

    over = tmp_path / "over.yaml"
    over.write_text("search:\n  width: 3\niterate:\n  questions: [5, 5]\n")
    demo = REPO / "configs" / "demo.yaml"
    cfg = load_config([demo, over])
    assert cfg.search.width == 3 and cfg.iterate.questions == [5, 5]
    assert cfg.iterate.m0_path == "checkpoints/arith-m0" and cfg.prompts.variant == "compact"  # from demo.yaml
    assert load_config([over, demo]).search.width == load_config(demo).search.width  # the later one wins

    assert main(["show-config", "-c", str(demo), "-c", str(over), "--set", "sft.lr=0.002"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# defaults < {demo} < {over} < --set sft.lr=0.002 (later overrides earlier)\n")
    assert f"  width: 3  # {over}\n" in out and f"  m0_path: checkpoints/arith-m0  # {demo}\n" in out
    assert "  lr: 0.002  # --set sft.lr=0.002\n" in out and "  top_p: 0.95\n" in out  # a default: no source
    import yaml

    shown = yaml.safe_load(out)  # still a recipe that loads back to the same config
    assert shown["search"]["width"] == 3 and shown["iterate"]["m0_path"] == "checkpoints/arith-m0"


@pytest.mark.parametrize("sets,calls", [(["search.width=1000"], "999,000"),
                                        (["search.width=40", "search.judge_mode=one_order"], "780")])  # fmt: skip
def test_a_width_far_beyond_anything_measured_warns_with_the_judge_calls(sets, calls, caplog):
    import logging

    with caplog.at_level(logging.WARNING):
        load_config(None, sets)
    assert f"search.width={sets[0].split('=')[1]} (--set {sets[0]})" in caplog.text
    assert f"{calls} judge calls per search round" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        load_config(None, ["search.width=12"])  # 132 calls: larger than the paper's, not absurd
        load_config(REPO / "configs" / "paper-7b.yaml")
    assert "judge calls" not in caplog.text


# ------------------------------------------------------------------------------- the rules (issue 21)


def test_validate_checks_every_section_and_changes_nothing():
    """Each section's rules() and configs/rules.py are applied to every section, nested ones included; validate only
    reads (the loader normalises the bool/str settings before it)."""
    import copy
    import dataclasses

    from psrlm.configs import validate
    from psrlm.configs.rules import SECTIONS

    def sections(obj, prefix=""):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                yield prefix + f.name
                yield from sections(value, prefix + f.name + ".")

    cfg = Config()
    assert sorted(SECTIONS) == sorted(sections(cfg))
    cfg.engine.static_cache, cfg.sft.bf16, cfg.initdata.prm_train.bf16 = "TRUE", " Auto", "false"
    before = copy.deepcopy(cfg)
    validate(cfg)
    assert cfg == before
    loaded = load_config(None, ["engine.static_cache='TRUE'", "sft.bf16=' Auto'"])
    assert (loaded.engine.static_cache, loaded.sft.bf16) == (True, "auto")
