"""What makes a stage's output, as settings: the fingerprints a run folder records beside every model, search and
evaluation, and the rule that reuses a finished model only when they match.

    reuse_model(run, "psrlm-M2", settings)   # the model, None (build it), or a FolderError naming the keys

A setting added later keys a stage only away from its default, so run folders made before it still resume
(tests/test_fingerprints.py pins these values).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from psrlm.folders import FolderError, flatten, move_aside, settings_diff
from psrlm.records import read_json
from psrlm.runfolder import Run, is_model

log = logging.getLogger(__name__)


def train_settings(tc) -> dict:
    """What a training stage's config contributes to a model's identity: precision and logging are how a machine
    ran it, not what it built (a run moved between a bf16 CPU and an fp32 one still resumes)."""
    # a setting added later counts only when it leaves its default, so runs made before it still resume
    return {k: v for k, v in dataclasses.asdict(tc).items()
            if k not in ("bf16", "logging_steps", "save_steps", "gradient_checkpointing", "padding_free")
            and not (k == "nll_weight" and v == 0) and not (k == "sampler" and v == "random")
            and not (k == "lr_scale_by_iteration" and not v)}  # fmt: skip


def generation_settings(cfg) -> dict:
    """What a search / SRLM config contributes: everything but how many problems share a batch (max_active),
    which cannot change a result (samples are seeded per problem). The oracle judge's knobs do nothing for the
    model's own judge: a self-judged search records them at their defaults, so a sweep that changes them still
    resumes its self-judged arm."""
    out = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "max_active"}
    for key, default in (("pairs_per_round", "best_worst"), ("ties", "rollback")):
        if out.get(key) == default:  # added later: at its default it keys nothing
            del out[key]
    if out.get("judge") == "self" and "judge_flip" in out:  # a search config
        out.update(judge_flip=0.0, oracle_ties="tie")
    elif out.get("judge") == "self":  # srlm's judge, added later: at its default it keys nothing
        del out["judge"]
    return out


def generation_identity(method: str, gen_cfg, prompts_variant: str) -> dict:
    """What a search (psrlm) or SRLM sampling (srlm) folder's pairs depend on besides its model and questions: the
    prompts and the generation config, under the config's own section name (search.width, srlm.n_samples)."""
    section = "search" if method == "psrlm" else "srlm"
    return {"prompts": {"variant": prompts_variant}, section: generation_settings(gen_cfg)}


def engine_settings(run: Run) -> dict:
    from psrlm import hardware

    e = run.cfg.engine
    if e.kind != "hf":
        return {"kind": e.kind, "model_name": e.model_name}
    return {"kind": "hf", "dtype": hardware.engine_dtype(e.dtype, hardware.pick_device(e.device))}


def m0_identity(m0: Path) -> dict:
    """How a run names its M0: the build key of a psrlm-built one, else the checkpoint's path and file stats."""
    from psrlm.folders import model_files

    info = read_json(m0 / "psrlm_build.json") if is_model(m0) else {}
    if info.get("m0_key"):
        return {"m0_key": info["m0_key"]}
    return {"path": str(m0), "files": model_files(m0)}


def reuse_model(run: Run, name: str, settings: dict) -> Path | None:
    """The finished model `name` if it was made with exactly `settings`; None when it must be (re)built. Made with
    other settings: a FolderError naming the keys, or with `run.fresh` its outputs are moved aside first."""
    out = run.layout.model(name)
    manifest = run.load_manifest(name) if is_model(out) else None
    if manifest is None:
        return None
    flat = flatten(settings)
    if manifest.settings == flat:
        return out
    why = (f"other settings ({settings_diff(manifest.settings, flat)})" if manifest.settings
           else "no record of its settings (an older psrlm?)")  # fmt: skip
    if not run.fresh:
        raise FolderError(f"{out} was made with {why}: rerun with the same settings to resume, or pass --fresh to "
                          "rebuild it and what follows (old outputs are moved to a replaced/ folder)")  # fmt: skip
    # the model, its manifest and its evaluation; the search folder that fed it answers to its own settings
    # (claim_settings in run_iteration): a change of dpo.* alone keeps the pairs, the costliest stage
    for path in (out, run.manifest_path(name), run.layout.evaluation(name)):
        move_aside(path, run.dir)
    run.forget_times(name)
    log.warning("%s was made with %s: rebuilding it (old outputs in %s/replaced/)", name, why, run.dir)
    return None


def model_status(run: Run, name: str, settings: dict) -> tuple[str, str]:
    """What `reuse_model` would do with model `name` under `settings`, without doing it: ("kept" | "built" |
    "rebuilt", the keys that differ)."""
    manifest = run.load_manifest(name) if is_model(run.layout.model(name)) else None
    if manifest is None:
        return "built", ""
    flat = flatten(settings)
    if manifest.settings == flat:
        return "kept", ""
    return "rebuilt", settings_diff(manifest.settings, flat) if manifest.settings else "no record of its settings"
