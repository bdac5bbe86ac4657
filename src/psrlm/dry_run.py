"""`psrlm iterate --dry-run`: what the loop would run, in order, and what the run folder's records say the current
settings would keep, build or rebuild, without changing anything.
"""

from __future__ import annotations

from pathlib import Path

from psrlm.configs import Config
from psrlm.evaluation import evaluation_kept, tts_search_cfg
from psrlm.folders import flatten, settings_diff
from psrlm.identity import m0_identity, model_status
from psrlm.m0 import m0_key, prebuilt_m0, prebuilt_m0_mismatch
from psrlm.questions import question_blocks
from psrlm.runfolder import Run, is_model
from psrlm.stages import iteration_settings, loop_stages, m1_data, m1_eft, m1_settings_for, stage_run


def plan_stages(run: Run) -> list[str]:
    """What the current settings would keep, build and rebuild in the run folder, stage by stage, read from what the
    folder records (manifests, settings stamps) and changing nothing: the same fingerprints `psrlm iterate`
    compares, a parent's planned settings feeding its children's. A rebuild stops without `--fresh`."""
    from psrlm.folders import recorded_settings

    cfg = run.cfg
    needs = "" if run.fresh else " (stops without --fresh)"
    lines = [f"what these settings would do in {run.dir} (read from what it records; nothing is changed):"]

    def say(stage: str, what: str) -> None:
        lines.append(f"  {stage:<12} {what}")

    if cfg.model.path:
        m0, m0_id = Path(cfg.model.path), None
        say("M0", f"the checkpoint model.path={cfg.model.path}")
    else:
        key = m0_key(cfg)
        m0, m0_id = run.layout.m0(key), {"m0_key": key}
        diff = prebuilt_m0_mismatch(cfg) if cfg.iterate.m0_path else None
        if cfg.iterate.m0_path and diff is None:
            m0 = prebuilt_m0(cfg)
            say("M0", f"kept: the prebuilt {m0}, built with these settings")
        elif cfg.iterate.m0_path and not run.rebuild_m0:
            say("M0", f"STOPS: iterate.m0_path was built with other settings ({diff}); --rebuild-m0 pre-trains one")
            return lines
        else:
            say("M0", f"kept: {m0}" if is_model(m0) else f"pre-trained into {m0}")
    m0_ident = m0_identity(m0) if m0.exists() or m0_id is None else m0_id  # not pre-trained yet: by its key
    evaluated: dict[str, tuple[str, Path]] = {"M0": ("kept" if m0.exists() else "built", m0)}
    planned: dict[str, dict | None] = {}  # a model's planned settings (None: not known before it is built)
    for stage in loop_stages(cfg):
        name, method, it = stage.name, stage.method, stage.it
        if stage.kind == "m1":
            eft = m1_eft(run, method)  # only named: srlm_eft_file(run) would write arith's scoring data
            if not all(f.is_file() for f in [*run.ift_files(), eft]):
                say(name, "built (its data is not written yet)")
                evaluated[name], planned[name] = ("built", run.layout.model(name)), None
            else:
                settings = m1_settings_for(run, method, m0_ident, eft)
                status, diff = model_status(run, name, settings)
                say(name, status + (f": {diff}{needs}" if status == "rebuilt" else ""))
                evaluated[name], planned[name] = (status, run.layout.model(name)), settings
        elif stage.kind == "iteration":
            if cfg.iterate.schedule != "fixed":
                say(name, "questions chosen by probing its parent first: kept or rebuilt is known then")
                evaluated[name], planned[name] = ("unknown", run.layout.model(name)), None
                continue
            parent = planned[stage.parent]
            blocks = question_blocks(run) if run.layout.fresh_questions.is_file() else None
            if parent is None or blocks is None:
                say(name, "built (what it depends on is not built yet)")
                evaluated[name], planned[name] = ("built", run.layout.model(name)), None
                continue
            label, srun = stage.label or method, stage_run(run, stage)  # the oracle arm: its own search config
            search, settings = iteration_settings(srun, method, it, "", blocks[it - 2], parent_settings=parent)
            recorded = recorded_settings(run.layout.search(label, it))
            done = _lines_in(run.layout.traces(label, it))
            if recorded == flatten(search):
                searched = f"search kept ({done} of {len(blocks[it - 2])} problems done)"
            elif recorded is None or not done:
                searched = "search run"
            else:
                searched = f"search rerun: {_why(recorded, search, stage.parent)}{needs}"
            status, _ = model_status(run, name, settings)
            manifest = run.load_manifest(name) if status == "rebuilt" else None
            why = _why(manifest.settings, settings, stage.parent) if manifest else ""
            trained = {"kept": "DPO kept", "built": "DPO run"}.get(status, f"DPO rerun: {why}{needs}")
            say(name, f"{searched}; {trained}")
            evaluated[name], planned[name] = (status, run.layout.model(name)), settings
    cached = [n for n, (st, model) in evaluated.items() if st == "kept" and evaluation_kept(run, n, model)]
    afresh = [n for n in evaluated if n not in cached]
    say("evaluation", "; ".join(filter(None, [f"kept for {', '.join(cached)}" if cached else "",
                                              f"afresh for {', '.join(afresh)}" if afresh else ""])))  # fmt: skip
    return lines


def _why(old: dict, new: dict, parent: str) -> str:
    """The keys that differ, with a parent's changed fingerprint said in words."""
    old, new = flatten(old), flatten(new)
    if old.get("parent") == new.get("parent"):
        return settings_diff(old, new)
    rest = settings_diff(
        {k: v for k, v in old.items() if k != "parent"}, {k: v for k, v in new.items() if k != "parent"}
    )
    return f"its parent {parent} is rebuilt" + (f"; {rest}" if rest else "")


def _lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def dry_run(cfg: Config, fresh: bool = False, rebuild_m0: bool = False) -> list[str]:
    """What `psrlm iterate` would run, in order, without running anything: the servers each stage starts, the
    training jobs (`accelerate launch` commands, or in-process stages), the searches and the evaluations; and,
    where the run folder exists, which stages its current settings would keep and which they would rebuild."""
    import shlex

    from psrlm.engines.servers import MANAGED_KINDS, plan_replicas
    from psrlm.launch import train_command

    run = Run(cfg, fresh=fresh, rebuild_m0=rebuild_m0)
    ec = cfg.engine
    lines: list[str] = plan_stages(run) + [""] if (run.manifests.is_dir() or run.data.is_dir()) else []

    def serve(model: Path, what: str) -> None:
        if ec.kind in MANAGED_KINDS:
            for i, r in enumerate(plan_replicas(ec, model, run.layout.servers, probe_ports=False)):
                env = "".join(f"{k}={v} " for k, v in r.env.items())
                lines.append(f"  serve {model.name} [{i}]: {env}{shlex.join(r.cmd)}")
        lines.append(f"  {what} with {ec.kind} engine on {model}")
        if ec.kind in MANAGED_KINDS:
            lines.append(f"  stop the {ec.servers} server(s) of {model.name}")

    def train(stage: str, model: Path, out: Path, data: dict, ref: Path | None = None, it: int = 0) -> None:
        if cfg.launch.accelerate_config:
            recipe = out.with_name(out.name + ".launch.yaml")
            cmd = train_command(cfg, recipe, stage, model, out, data, ref=ref, iteration=it, seed_offset=run.seed)
            lines.append(f"  train: {shlex.join(cmd)}")
        else:
            lines.append(f"  train {stage} in-process: {model} -> {out}")

    from psrlm.initdata.pool import data_lines

    it = cfg.iterate
    m0 = Path(cfg.model.path) if cfg.model.path else run.layout.model("M0 (prebuilt or pre-trained)")
    models = {"M0": m0}  # name -> the folder each stage makes
    for stage in loop_stages(cfg):
        name, method = stage.name, stage.method
        if stage.kind == "data":
            lines.append(f"data: {'the arith domain' if run.arith else 'files'} -> {run.data}; M0 = {m0}")
            lines += data_lines(cfg)  # a real run: the source's blocks and sizes; a stop when they cannot fill
        elif stage.kind == "m1":
            models[name] = run.layout.model(name)
            lines.append(f"{name}:")
            train("sft", m0, models[name], m1_data(run, method), it=1)
        elif stage.kind == "iteration":
            parent, models[name] = models[stage.parent], run.layout.model(name)
            pairs = run.layout.pairs(stage.label or method, stage.it)
            lines.append(f"{name}:")
            source = "questions"
            if stage.label:  # the oracle arm: the method's questions of this iteration, chosen where it chose them
                source = f"questions of {method}-M{stage.it} (the same), judged by the ORACLE (science arm)"
            elif it.schedule == "frontier":
                levels = len(cfg.arith.levels) + 1
                serve(parent, f"probe {parent.name} on the {levels} level probes (greedy, "
                              f"{cfg.arith.level_probe} problems each); frontier band {it.frontier_band}")  # fmt: skip
                source = "questions of the frontier level"
            what = "step search" if method == "psrlm" else "SRLM sampling + scoring"
            serve(parent, f"{what} of {it.questions[stage.it - 2]} {source} -> {pairs}")
            train("dpo", parent, models[name], {"pairs": [pairs]}, ref=parent, it=stage.it)
        elif stage.kind == "evaluate":
            if name == "M0":  # the first evaluation
                lines.append("evaluation:")
            shots = sorted(set(it.m0_three_shot)) if name == "M0" else []
            how = f" ({' and '.join(shots)} 3-shot)" if shots else ""
            serve(models[name], f"evaluate {name}{how}")
        elif stage.kind == "tts":
            tc = tts_search_cfg(run)
            if name == "psrlm-M1":  # the first test-time search
                rules = (f"a tie takes its most-sampled step, no rollback; ends at an answer or {tc.max_steps} steps"
                         if tc.ties == "accept" else
                         f"the training search's rules: rollback on ties, {tc.max_rounds} rounds")  # fmt: skip
                lines.append(f"test-time search (Tables 5/9, iterate.eval_tts_rules={it.eval_tts_rules}: {rules}):")
            n = "every problem" if it.eval_tts < 0 else f"the first {it.eval_tts} problem(s)"
            serve(models[name], f"step search (w={tc.width}, T={tc.temperature}, top-p {tc.top_p}, {tc.judge_mode}) "
                                f"vs greedy on {n} of {', '.join(run.tts_benchmarks())} with {name}")  # fmt: skip
        # m0: named on the data line; appendix_b: not listed by the dry run (yet)
    return lines
