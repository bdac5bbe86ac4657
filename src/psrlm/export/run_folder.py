"""What a finished or half-finished run folder holds, read for `psrlm export` (docs/commands.md, "What a run folder holds").

Reads only: the recorded config (the newest `iterate`/`demo` entry of logs/runs.jsonl, else the newest manifest),
the data files that config names, each search folder with the manifest of the model trained on its pairs, the eval
folders and the model folders. Paths recorded by the run are used as written, or re-rooted under the run folder
when the run was moved since.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from psrlm.records import read_json, sha256_file
from psrlm.run_layout import RunLayout

MODEL_MARK = "psrlm_build.json"  # what every psrlm-built model folder holds (runfolder.is_model)
_SEARCH = re.compile(r"^it(\d+)$")


@dataclass
class Search:
    """<run>/<label>/it<n>/: pairs.jsonl and traces.jsonl of one iteration of one method."""

    label: str  # psrlm | srlm | a sweep's judge label
    iteration: int
    dir: Path
    trained: str | None = None  # the model whose manifest lists these pairs
    hash_ok: bool | None = None  # pairs.jsonl has the sha256 that manifest recorded (None: no manifest names it)

    @property
    def config(self) -> str:
        return f"{self.label}_it{self.iteration}"


class RunFolder:
    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)
        self.layout = RunLayout(self.dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir} is not a folder")
        layout = self.layout
        marks = [layout.data, layout.manifests, layout.models, layout.evals, layout.summary]
        if not any(m.exists() for m in marks) and not self._search_dirs():
            raise ValueError(f"{self.dir} is not a psrlm run folder (none of {', '.join(m.name for m in marks)} or "
                             "<method>/it<n>/ in it); give the paths.run_dir of a `psrlm iterate` run")  # fmt: skip
        self.manifests = self._manifests()
        self.config, self.config_source = self._config()

    # ------------------------------------------------------------------------------------------ settings

    def _manifests(self) -> dict[str, dict]:
        folder = self.layout.manifests
        return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}

    def _config(self) -> tuple[dict, str]:
        log = self.layout.run_log
        if log.exists():
            entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
            for e in reversed(entries):
                if e.get("stage") in ("iterate", "demo") and e.get("config"):
                    return e["config"], f"{log} ({e['stage']} {e.get('started', '')})"
        recorded = [(p, m) for p, m in self.manifests.items() if m.get("config")]
        if recorded:
            name, m = max(recorded, key=lambda pm: self.layout.manifest(pm[0]).stat().st_mtime)
            return m["config"], str(self.layout.manifest(name))
        return {}, ""

    def section(self, name: str) -> dict:
        return self.config.get(name) or {}

    def resolve(self, recorded: str | Path) -> Path:
        """A path the run recorded. One inside the run folder as it was recorded (paths.run_dir) is read from this
        folder, wherever the run has moved or been copied to; any other as written, or, if relative and not found
        from here, from the repository root (where a prebuilt M0 such as checkpoints/arith-m0 lives)."""
        from psrlm.configs import REPO_ROOT

        path = Path(recorded)
        old_root = self.section("paths").get("run_dir")
        if old_root:
            try:
                return self.dir / path.relative_to(old_root)
            except ValueError:
                pass
        if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
            return REPO_ROOT / path
        return path

    @property
    def arith(self) -> bool:
        return self.section("data").get("source", "arith") == "arith"

    # ------------------------------------------------------------------------------------------ data

    def data_files(self) -> dict[str, list[Path]]:
        """The initialisation data as `Run` names it (runfolder.Run.ift_files/eft_*_file, srlm_eft_file):
        {"ift": [...], "eft_train": [...], "eft_test": [...], "srlm_eft": [...]}; absent entries are empty."""
        d = self.section("data")
        layout = self.layout
        if self.arith:
            policy = d.get("eft_source") == "policy"
            files = {"ift": [layout.ift], "eft_train": [layout.eft("train", policy)],
                     "eft_test": [layout.eft("test", policy)], "srlm_eft": [layout.srlm_eft]}  # fmt: skip
        else:
            named = {"ift": d.get("ift_files") or [], "eft_train": [d.get("eft_train_file")],
                     "eft_test": [d.get("eft_test_file")], "srlm_eft": [d.get("srlm_eft_file")]}  # fmt: skip
            files = {k: [self.resolve(p) for p in v if p] for k, v in named.items()}
        return files

    # ------------------------------------------------------------------------------------------ searches

    def _search_dirs(self) -> list[Path]:
        return [p for p in self.dir.glob("*/it*") if _SEARCH.match(p.name) and (p / "traces.jsonl").exists()]

    def searches(self) -> list[Search]:
        """Every search folder with traces, with the manifest that trained on its pairs (if any), in the order
        label, iteration."""
        trained_on: dict[Path, tuple[str, str]] = {}
        for name, m in self.manifests.items():
            for path, digest in (m.get("data_files") or {}).items():
                if Path(path).name == "pairs.jsonl":
                    trained_on[self.resolve(path).resolve()] = (name, digest)
        out = []
        for d in self._search_dirs():
            s = Search(d.parent.name, int(_SEARCH.match(d.name).group(1)), d)
            hit = trained_on.get((d / "pairs.jsonl").resolve())
            if hit:
                s.trained = hit[0]
                s.hash_ok = (d / "pairs.jsonl").exists() and sha256_file(d / "pairs.jsonl") == hit[1]
            out.append(s)
        return sorted(out, key=lambda s: (s.label != "psrlm", s.label, s.iteration))

    # ------------------------------------------------------------------------------------------ expected stages

    def methods(self) -> list[str]:
        return list(self.section("iterate").get("methods") or [])

    def iterations(self) -> list[int]:
        return list(range(2, 2 + len(self.section("iterate").get("questions") or [])))

    # ------------------------------------------------------------------------------------------ models

    def m0(self) -> Path | None:
        """The M0 the run's M1s were trained from (the parent in their manifests), wherever it lives."""
        for name in ("psrlm-M1", "srlm-M1"):
            parent = (self.manifests.get(name) or {}).get("parent_model")
            if parent:
                return self.resolve(parent)
        summary = self.layout.summary
        if summary.exists():
            path = read_json(summary).get("models", {}).get("M0", {}).get("model")
            return self.resolve(path) if path else None
        return None

    def models(self) -> dict[str, Path]:
        """{export name: folder}: M0 if psrlm built it (a Hub checkpoint is named as a base model, not copied), then
        every model folder under models/ that a manifest describes (psrlm-M1.., srlm-M1.., a sweep's M2s)."""
        out: dict[str, Path] = {}
        m0 = self.m0()
        if m0 is not None and (m0 / MODEL_MARK).exists():
            out["M0"] = m0
        for name in self.manifests:
            folder = self.layout.model(name)
            if (folder / MODEL_MARK).exists() or (folder / "config.json").exists():
                out[name] = folder
        return out

    def skipped_models(self) -> list[Path]:
        """Model folders under models/ that are not exported: the random initial weights, M0s of other settings,
        a half-written folder."""
        exported = {p.resolve() for p in self.models().values()}
        folder = self.layout.models
        if not folder.is_dir():
            return []
        return [p for p in sorted(folder.iterdir())
                if p.is_dir() and p.resolve() not in exported and not p.name.endswith((".trainer", ".tmp"))]  # fmt: skip

    def eval_dirs(self) -> dict[str, Path]:
        folder = self.layout.evals
        return {p.name: p for p in sorted(folder.iterdir()) if p.is_dir()} if folder.is_dir() else {}
