"""One run folder (`paths.run_dir`) and what every stage driving it shares: its paths and data files, manifests,
the engine and training of a stage, stage timings (`Run`), and results cached by their settings (`cached`).

Its own module, below iterate, because the loop is not its only driver: the EFT pipeline (initdata/eft_pipeline),
sweep, frontier, bench and the CLI's single stages work in the same run folder.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path

from psrlm import progress
from psrlm.benchmark_names import parse_benchmarks
from psrlm.configs import Config
from psrlm.folders import flatten
from psrlm.records import Manifest, Problem, StepSolution, from_dict, read_json, read_jsonl, write_json
from psrlm.run_layout import RunLayout


def is_model(path: Path) -> bool:
    """A finished psrlm-built model folder (written to a temp folder and renamed when whole)."""
    return (Path(path) / "psrlm_build.json").exists()


WALL_KEY = "(wall)"  # timings.json: the wall time of every process, beside the per-stage times


class Run:
    """The shared pieces of one run folder; its paths are `layout` (a RunLayout). `fresh`: rebuild what was made
    with other settings (the old outputs are moved to <run>/replaced/) instead of stopping with the keys that differ.
    `rebuild_m0`: pre-train an M0 for these settings when the one `iterate.m0_path` names was built with others (never
    done unasked)."""

    def __init__(self, cfg: Config, fresh: bool = False, rebuild_m0: bool = False):
        from psrlm.prompts import prompts_of

        self.cfg = cfg
        self.fresh = fresh
        self.rebuild_m0 = rebuild_m0  # pre-train a new M0 when the prebuilt one was built with other settings
        self.layout = RunLayout(cfg.paths.run_dir)
        self.dir = self.layout.dir
        self.data = self.layout.data
        self.models = self.layout.models
        self.manifests = self.layout.manifests
        self.prompts = prompts_of(cfg)
        self.seed = cfg.iterate.seed
        self.timings_path = self.layout.timings
        self._wall_mark: float | None = None  # set by count_wall: then `timed` banks this process's wall time

    # ------------------------------------------------------------------ the data this run reads (data.source)

    @property
    def arith(self) -> bool:
        return self.cfg.data.source == "arith"

    def ift_files(self) -> list[Path]:
        return [self.layout.ift] if self.arith else [Path(f) for f in self.cfg.data.ift_files]

    def eft_train_file(self) -> Path:
        if not self.arith:
            return Path(self.cfg.data.eft_train_file)
        return self.layout.eft("train", policy=self.cfg.data.eft_source == "policy")

    def eft_test_file(self) -> Path:
        if not self.arith:
            return Path(self.cfg.data.eft_test_file)
        return self.layout.eft("test", policy=self.cfg.data.eft_source == "policy")

    def srlm_eft_path(self) -> Path:
        """Where SRLM's M1 reads its solution-scoring data (arith: written on first use, iterate.srlm_eft_file)."""
        return self.layout.srlm_eft if self.arith else Path(self.cfg.data.srlm_eft_file)

    def ift(self) -> list[StepSolution]:
        return [s for f in self.ift_files() for s in read_jsonl(f, StepSolution)]

    def tts_benchmarks(self) -> list[str]:
        """Where test-time search is measured: iterate.eval_tts_benchmark (one, a comma list or a group), else
        arith_test (arith) or every evaluated benchmark (a real run: the paper's six)."""
        it = self.cfg.iterate
        if it.eval_tts_benchmark:
            return parse_benchmarks(it.eval_tts_benchmark)
        return ["arith_test"] if self.arith else parse_benchmarks(it.eval_benchmarks)

    def benchmarks(self, names: list[str], limit: int) -> dict[str, list[Problem]]:
        from psrlm.tasks.benchmarks import load_benchmark

        data_dir = self.cfg.paths.resolved_data_dir()
        return {b: load_benchmark(b, data_dir, limit=limit, run_data=self.data) for b in names}

    def manifest_path(self, name: str) -> Path:
        return self.layout.manifest(name)

    def load_manifest(self, name: str) -> Manifest | None:
        p = self.manifest_path(name)
        return from_dict(Manifest, read_json(p), str(p)) if p.exists() else None

    def write_manifest(self, name: str, m: Manifest) -> None:
        write_json(self.manifest_path(name), dataclasses.asdict(m))

    @contextmanager
    def serving(self, model_dir: Path, name: str = "model"):
        """An engine for `model_dir` for the span of a stage: in-process (hf), an existing server (openai), or
        servers started on this checkpoint now and stopped after (vllm, sglang, transformers)."""
        from psrlm.engines import engine_for

        with engine_for(self.cfg.engine, model_dir, self.layout.servers, name) as engine:
            yield engine

    def train(self, stage: str, model: Path, out: Path, data: dict, **kw):
        """One training stage, in-process or (launch.accelerate_config) as an `accelerate launch` job; both write
        `<out>/psrlm_manifest.json` and return it, with this run's settings and metrics in it."""
        from psrlm.train import MANIFEST_NAME, train_stage

        kw.setdefault("seed_offset", self.seed)
        if not self.cfg.launch.accelerate_config:
            return train_stage(stage, model, out, self.cfg, data, **kw)
        from psrlm.launch import launch_training

        manifest = launch_training(self.cfg, stage, model, out, data, ref=kw.get("ref_dir"),
                                   iteration=kw.get("iteration", 0), seed_offset=kw["seed_offset"])  # fmt: skip
        manifest.method = kw.get("method") or stage
        manifest.settings = flatten(kw.get("settings") or {})
        manifest.metrics = {**(kw.get("metrics") or {}), **manifest.metrics}
        write_json(out / MANIFEST_NAME, dataclasses.asdict(manifest))
        return manifest

    def seeded(self, tc):
        return dataclasses.replace(tc, seed=tc.seed + self.seed)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds per stage, summed over the models of each stage ("psrlm search", "evaluation", ...), over every
        process that worked on this run: a rerun that finds everything done keeps what the first run measured."""
        out: dict[str, float] = {}
        for key, seconds in self._stage_times().items():
            if key == WALL_KEY:
                continue
            stage = key.split("/", 1)[0]
            out[stage] = out.get(stage, 0.0) + seconds
        return out

    @property
    def wall_s(self) -> float:
        """Wall time of every process that worked on this run (a killed one up to its last finished stage)."""
        return self._stage_times().get(WALL_KEY, 0.0)

    def _stage_times(self) -> dict[str, float]:
        return read_json(self.timings_path) if self.timings_path.exists() else {}

    def count_wall(self) -> None:
        """From now on `timed` also banks this process's wall time on the run (the driver's Run only: other Run
        objects over the same folder, as a sweep makes, would count the same seconds twice)."""
        self._wall_mark = time.time()

    def timed(self, key: str | None, start: float = 0.0, model: str = "") -> None:
        """Add the time since `start` to stage `key` (for `model`), and (see count_wall) this process's wall time
        since it last banked it, persisted at once so a kill keeps them. `key=None` banks the wall time alone."""
        times = self._stage_times()
        now = time.time()
        if key is not None:
            k = f"{key}/{model}" if model else key
            times[k] = times.get(k, 0.0) + now - start
            if not progress.quiet():  # the stage's one-line summary, beside its bar's last line
                print(f"[{key}{' ' + model if model else ''}] done in {_duration(now - start)}", flush=True)
        if self._wall_mark is not None:
            times[WALL_KEY] = times.get(WALL_KEY, 0.0) + now - self._wall_mark
            self._wall_mark = now
        write_json(self.timings_path, times)

    def forget_times(self, model: str) -> None:
        times = self._stage_times()
        kept = {k: v for k, v in times.items() if not k.endswith(f"/{model}")}
        if kept != times:
            write_json(self.timings_path, kept)


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s} s" if m else f"{seconds:.1f} s"


def cached(path: Path, settings: dict, compute) -> dict:
    """A JSON result that is reused only when it records exactly `settings`."""
    flat = flatten(settings)
    if path.exists():
        data = read_json(path)
        if data.get("settings") == flat:
            return data
    result = {**compute(), "settings": flat}
    write_json(path, result)
    return result
