"""What a run folder holds, stage by stage: what exists, and what is missing from a half-finished run.

`psrlm view` prints these lines before it builds the site and shows them on the site's Run page. The plan (which
methods, how many iterations and questions, whether test-time search was asked for) comes from the config the run
recorded (logs/runs.jsonl, else any manifest); a folder without one gets the stages that exist, nothing expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from psrlm.report_tables import model_order
from psrlm.run_layout import NOT_SEARCHES, RunLayout


@dataclass
class Stage:
    name: str  # "data", "psrlm-M1", "psrlm it2", "eval psrlm-M2", "summary", ...
    state: str  # "done" | "partial" | "missing"
    detail: str  # what exists, or what is missing and what makes it

    def line(self, width: int = 16) -> str:
        return f"{self.name:<{width}} {self.state:<8} {self.detail}"


def check_run_dir(run_dir: Path) -> None:
    """A clear one-line error for a path that is not a run folder at all."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir} does not exist")
    if not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is not a folder (give a run folder, e.g. runs/demo)")
    layout = RunLayout(run_dir)
    if not (any(d.is_dir() for d in (layout.data, layout.manifests, layout.evals)) or search_dirs(run_dir)
            or layout.run_log.is_file()):  # fmt: skip
        raise FileNotFoundError(f"{run_dir} is not a run folder: no data/, manifests/, eval/, <method>/itN/ or "
                                "logs/runs.jsonl in it (`psrlm iterate` makes one under paths.run_dir)")  # fmt: skip


def search_dirs(run_dir: Path) -> list[tuple[str, int, Path]]:
    """(method, iteration, folder) of every <method>/itN/ holding traces.jsonl: psrlm, srlm and any sweep label."""
    found = []
    for child in sorted(p for p in Path(run_dir).iterdir() if p.is_dir() and p.name not in NOT_SEARCHES):
        for it_dir in child.glob("it*"):
            if it_dir.name[2:].isdigit() and (it_dir / "traces.jsonl").is_file():
                found.append((child.name, int(it_dir.name[2:]), it_dir))
    order = {"psrlm": 0, "srlm": 1}
    return sorted(found, key=lambda t: (order.get(t[0], 2), t[0], t[1]))


def recorded_config(run_dir: Path) -> dict | None:
    """The config of the run's last `iterate`/`demo` job (logs/runs.jsonl), else of any manifest, else None."""
    runs = RunLayout(run_dir).run_log
    if runs.is_file():
        for line in reversed(runs.read_text(encoding="utf-8", errors="replace").splitlines()):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("stage") in ("iterate", "demo") and isinstance(rec.get("config"), dict):
                return rec["config"]
    for path in sorted(RunLayout(run_dir).manifests.glob("*.json")):
        try:
            config = json.loads(path.read_text(encoding="utf-8")).get("config")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            continue
        if isinstance(config, dict) and config.get("iterate"):
            return config
    return None


def _lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def run_stages(run_dir: Path) -> list[Stage]:
    """One line per stage of the run: the data, each method's M1, each iteration's search and model, each model's
    evaluation and test-time search, the summary."""
    run_dir = Path(run_dir)
    cfg = recorded_config(run_dir) or {}
    it_cfg = cfg.get("iterate") or {}
    methods = list(it_cfg.get("methods") or [])
    blocks = list(it_cfg.get("questions") or [])
    stages: list[Stage] = []

    layout = RunLayout(run_dir)
    fresh = layout.fresh_questions
    if fresh.is_file():
        stages.append(Stage("data", "done", f"data/fresh_questions.jsonl: {_lines(fresh)} questions"))
    else:
        stages.append(Stage("data", "missing", "data/fresh_questions.jsonl (`psrlm iterate` writes it first)"))

    found = {(m, it): d for m, it, d in search_dirs(run_dir)}
    planned = [(m, it) for m in methods for it in range(2, len(blocks) + 2)]
    for m in methods:
        stages.append(_model_stage(run_dir, f"{m}-M1", "SFT of M0 on EFT + IFT"))
        for it in range(2, len(blocks) + 2):
            stages.append(_search_stage(run_dir, m, it, found.get((m, it)), blocks[it - 2]))
    for m, it in sorted(set(found) - set(planned), key=lambda k: (k[0], k[1])):
        stages.append(_search_stage(run_dir, m, it, found[(m, it)], None))

    models = ["M0"] + [f"{m}-M{n}" for m in methods for n in range(1, len(blocks) + 2)] if methods else []
    evaluated = sorted((p.name for p in layout.evals.glob("*") if p.is_dir()), key=model_order)
    for name in models + [n for n in evaluated if n not in models]:
        stages.append(_eval_stage(run_dir, name))
    if it_cfg.get("eval_tts") and "psrlm" in methods:
        for name in dict.fromkeys(["psrlm-M1", f"psrlm-M{len(blocks) + 1}"]):
            stages.append(_tts_stage(run_dir, name, max(0, int(it_cfg["eval_tts"])) or None))
    else:
        for name in evaluated:
            if layout.tts_traces(name).is_file():
                stages.append(_tts_stage(run_dir, name, None))
    if layout.summary.is_file():
        stages.append(Stage("summary", "done", "summary.json (the run finished)"))
    else:
        stages.append(Stage("summary", "missing", "summary.json: the run has not finished (`psrlm iterate` resumes)"))
    return stages


def _model_stage(run_dir: Path, name: str, what: str) -> Stage:
    if RunLayout(run_dir).manifest(name).is_file():
        return Stage(name, "done", f"manifests/{name}.json, models/{name}/")
    return Stage(name, "missing", f"manifests/{name}.json ({what} not finished)")


def _search_stage(run_dir: Path, method: str, it: int, folder: Path | None, planned: int | None) -> Stage:
    name, model = f"{method} it{it}", f"{method}-M{it}"
    trained = RunLayout(run_dir).manifest(model).is_file()
    if folder is None:
        return Stage(name, "missing", f"{method}/it{it}/traces.jsonl: search by {method}-M{it - 1} not started")
    n = _lines(folder / "traces.jsonl")
    pairs = _lines(folder / "pairs.jsonl") if (folder / "pairs.jsonl").is_file() else 0
    of = f" of {planned}" if planned else ""
    complete = planned is None or n >= planned
    after = f"{model} trained" if trained else f"{model} not trained yet"
    state = "done" if complete and trained else "partial"
    return Stage(name, state, f"{method}/it{it}/traces.jsonl: {n}{of} questions searched, {pairs} pairs; {after}")


def _eval_stage(run_dir: Path, name: str) -> Stage:
    folder = RunLayout(run_dir).evaluation(name)
    files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    if not files:
        return Stage(f"eval {name}", "missing", f"eval/{name}/: not evaluated yet")
    counts = ", ".join(f"{p.stem} {_lines(p)}" for p in files)
    done = (folder / "metrics.json").is_file()
    return Stage(f"eval {name}", "done" if done else "partial",
                 f"eval/{name}/: {counts}" + ("" if done else " (metrics.json not written: evaluation stopped)"))  # fmt: skip


def _tts_stage(run_dir: Path, name: str, planned: int | None) -> Stage:
    layout = RunLayout(run_dir)
    path = layout.tts_traces(name)
    if not path.is_file():
        return Stage(f"tts {name}", "missing", f"eval/{name}/tts/traces.jsonl: test-time search not run yet")
    n = _lines(path)
    done = layout.eval_tts(name).is_file()
    of = f" ({planned} per TTS benchmark planned)" if planned else ""
    return Stage(f"tts {name}", "done" if done else "partial", f"eval/{name}/tts/traces.jsonl: {n}{of} problems")
