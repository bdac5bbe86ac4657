"""The base model M0 of a run: a prebuilt checkpoint (`iterate.m0_path`) when this config's model, arith and
pre-training settings built it, else pre-trained on raw domain text into the run folder, cached by its key.

Its own module because both the loop (iterate) and the EFT pipeline (initdata/eft_pipeline) start from M0.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from psrlm.configs import REPO_ROOT, Config, ConfigError
from psrlm.folders import settings_diff
from psrlm.records import read_json, write_json
from psrlm.runfolder import Run, is_model

# its lines keep the logger name they were always printed under (`psrlm.iterate: M0 pre-trained in ...`)
log = logging.getLogger("psrlm.iterate")


def prebuilt_m0(cfg: Config) -> Path:
    pre = Path(cfg.iterate.m0_path).expanduser()
    if not pre.is_absolute() and not pre.exists():
        pre = REPO_ROOT / pre
    if not pre.exists():
        raise ConfigError(f"iterate.m0_path: {cfg.iterate.m0_path} does not exist (looked in the current folder "
                          f"and in {REPO_ROOT}); fix the path, or set it empty to pre-train M0")  # fmt: skip
    if not is_model(pre):
        raise ConfigError(f"iterate.m0_path: {pre} is not a psrlm-built model (no psrlm_build.json)")
    return pre


def m0_texts(run: Run) -> list[str]:
    """Raw domain text: problems with worked solutions (no prompt template, no judge data), from a pre-training
    stream disjoint from the training pool and the test splits, half of it hard-style (more operations, bigger
    numbers): the base model has seen the domain, not these problems. A share `arith.pretrain_step_share` of the
    solutions is written as "Step n:" lines, the rest as prose (drawn per problem, seeded)."""
    import random

    from psrlm.initdata.build import pretrain_stream
    from psrlm.tasks.arith import pretraining_text

    easy, hard = pretrain_stream(run.cfg)
    mixed = [p for pair in zip(easy, hard, strict=False) for p in pair] + easy[len(hard) :] + hard[len(easy) :]
    share, rng = run.cfg.arith.pretrain_step_share, random.Random(f"pretrain-layout-{run.cfg.arith.seed}")
    stepped = [rng.random() < share for _ in mixed]
    return [pretraining_text(p, s) for p, s in zip(mixed, stepped, strict=True)]


M0_RECIPE_KEYS = ("epochs", "lr", "batch_size", "grad_accum", "warmup_steps", "weight_decay", "lr_scheduler",
                  "max_length", "lora", "lora_r", "lora_alpha", "seed")  # fmt: skip


M0_POOL_KEYS = ("seed", "n_train", "n_test", "min_ops", "max_ops", "max_number", "n_pretrain", "hard_min_ops",
                "hard_max_ops", "hard_max_number")  # fmt: skip


def m0_build_settings(cfg: Config) -> dict:
    """What decides M0, by key (what `m0_key` hashes): the model, what shapes the training pool M0 reads, and the
    pre-training recipe; not precision or logging (how a machine runs the recipe: a prebuilt M0 must serve a CPU
    with native bf16 and one without alike), nor fields added to TrainConfig later."""
    a = cfg.arith
    arith = {k: getattr(a, k) for k in M0_POOL_KEYS}
    if a.pretrain_step_share:  # added later: at its default it leaves every earlier M0's key as it was
        arith["pretrain_step_share"] = a.pretrain_step_share
    return {"model": dataclasses.asdict(cfg.model), "arith": arith,
            "pretrain": {k: getattr(cfg.pretrain, k) for k in M0_RECIPE_KEYS}}  # fmt: skip


def m0_key(cfg: Config) -> str:
    from psrlm.tiny import config_key

    b = m0_build_settings(cfg)
    return config_key(b["model"], list(b["arith"].values()), b["pretrain"])


def prebuilt_m0_mismatch(cfg: Config) -> str | None:
    """None when the prebuilt M0 (`iterate.m0_path`) was built by this config's model/arith/pretrain settings, else
    the keys that differ (`pretrain.epochs: 3 -> 1`), read from the build config saved beside it."""
    from psrlm.configs import load_config

    pre = prebuilt_m0(cfg)
    built = read_json(pre / "psrlm_build.json")
    if built.get("m0_key") == m0_key(cfg):
        return None
    if (pre / "build_config.yaml").exists():
        old = m0_build_settings(load_config(pre / "build_config.yaml"))
    else:  # built before build configs were saved: its model and recipe are in psrlm_build.json
        old = {"model": built.get("model") or {}, "arith": {},
               "pretrain": {k: v for k, v in (built.get("pretrain") or {}).items() if k in M0_RECIPE_KEYS}}  # fmt: skip
    mine = m0_build_settings(cfg)
    if not old["arith"]:
        mine = {**mine, "arith": {}}
    return settings_diff(old, mine) or f"key {built.get('m0_key')} -> {m0_key(cfg)}"


def check_prebuilt_m0(cfg: Config, rebuild: bool = False) -> None:
    """An M0 the recipe names (`iterate.m0_path`) is never replaced unasked: built with other settings, it stops
    here, naming the keys, unless `rebuild` (`--rebuild-m0`): then a new M0 is pre-trained into the run folder and
    the named one is left as it is."""
    diff = prebuilt_m0_mismatch(cfg)
    if diff is None:
        return
    if rebuild:
        log.warning("iterate.m0_path=%s was built with other settings (%s): --rebuild-m0 pre-trains a new M0 in "
                    "%s/models/", cfg.iterate.m0_path, diff, cfg.paths.run_dir)  # fmt: skip
        return
    raise ConfigError(f"iterate.m0_path={cfg.iterate.m0_path} was built with other settings ({diff}): pass "
                      "--rebuild-m0 to pre-train a new M0 for these settings into the run folder (hours at the demo's "
                      "size), set iterate.m0_path empty to always pre-train, or set the keys back")  # fmt: skip


def ensure_m0(run: Run) -> Path:
    """The prebuilt M0 (`iterate.m0_path`) when this config built it; with other settings a stop naming the keys
    (`check_prebuilt_m0`), or with `run.rebuild_m0` / an empty m0_path a pre-trained one (cached by its key)."""
    from psrlm import train
    from psrlm.initdata.build import init_tiny_model

    cfg = run.cfg
    if cfg.model.path:  # a real checkpoint is M0 as it is
        from psrlm.checkpoints import resolve_model

        return resolve_model(cfg.model.path, key="model.path")
    key = m0_key(cfg)
    if cfg.iterate.m0_path:
        if prebuilt_m0_mismatch(cfg) is None:
            return prebuilt_m0(cfg)
        check_prebuilt_m0(cfg, run.rebuild_m0)  # stops, naming the keys, unless asked to rebuild
    target = run.layout.m0(key)
    if is_model(target):
        return target
    start = time.time()
    init = init_tiny_model(cfg)
    from psrlm.tracking import trainer_args

    info = train.pretrain(init, m0_texts(run), cfg.pretrain, target, trainer_args(cfg, target.name))
    meta = read_json(target / "psrlm_build.json")
    meta.update(m0_key=key, model=dataclasses.asdict(cfg.model), pretrain=dataclasses.asdict(cfg.pretrain))
    write_json(target / "psrlm_build.json", meta)
    run.timed("M0 pretrain", start)
    log.info("M0 pre-trained in %.0fs, final loss %.3f", time.time() - start, info["final_loss"])
    return target
