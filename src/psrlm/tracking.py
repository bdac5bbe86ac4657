"""Experiment tracking: the losses of every TRL trainer and psrlm's own per-stage metrics, where researchers look.

    psrlm iterate -c configs/demo.yaml --set track.report_to=tensorboard     # then: tensorboard --logdir runs/demo/tracking

`track.report_to` (configs.TrackConfig) is handed to every TRL trainer as transformers' `report_to`: each training
stage reports its losses as a tracking run of its own, `<run_name>-<model>`. TensorBoard, trackio and W&B also get
the loop's own metrics, per method and iteration (step = the model's number: M1 is 1, M2 is 2), in one run named
`run_name` (the run folder's name unless set), resumed when the run is rerun: what was logged is remembered in
`<run>/tracking/logged.json`, so a rerun that finds every stage done logs nothing twice.

Offline unless `track.offline: false`: TensorBoard's event files under `<run>/tracking/tensorboard/` (`loop/` and one
folder per trained model), trackio's local store under `<run>/tracking/trackio/` (unless TRACKIO_DIR is set), W&B in
offline mode under `<run>/tracking/` (unless WANDB_MODE is set). Each integration is an optional dependency
(`pip install psrlm[track]` brings tensorboard and trackio); a missing one fails before any work, naming the extra.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from psrlm.records import read_json, write_json
from psrlm.run_layout import RunLayout

LOOP_BACKENDS = ("tensorboard", "trackio", "wandb")  # the integrations the loop's own metrics go to
_MODULES = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb", "mlflow": "mlflow",
            "comet_ml": "comet_ml", "clearml": "clearml", "neptune": "neptune", "swanlab": "swanlab",
            "dvclive": "dvclive", "codecarbon": "codecarbon", "dagshub": "dagshub", "azure_ml": "azureml",
            "flyte": "flytekit", "kubeflow": "kfp"}  # fmt: skip


def tracking_dir(cfg) -> Path:
    return RunLayout(cfg.paths.run_dir).tracking


def run_name(cfg) -> str:
    return cfg.track.run_name or Path(cfg.paths.run_dir).resolve().name


def check_installed(cfg) -> None:
    """Every integration asked for is importable (else one line naming the extra), before any work."""
    missing = [n for n in cfg.track.integrations() if importlib.util.find_spec(_MODULES[n]) is None]
    if missing:
        raise ValueError(f"track.report_to={cfg.track.report_to!r}: {', '.join(missing)} not installed "
                         "(pip install 'psrlm[track]' for tensorboard and trackio, or the integration's own package)")  # fmt: skip


def _offline_environment(cfg) -> None:
    if not cfg.track.offline:
        return
    d = tracking_dir(cfg)
    os.environ.setdefault("TRACKIO_DIR", str(d / "trackio"))  # trackio reads it when imported
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_DIR", str(d))


def trainer_args(cfg, model_name: str) -> dict:
    """The TrainingArguments fields a TRL trainer of `model_name` reports with (report_to, run_name, project), with
    the integrations' environment set: TensorBoard writes under <run>/tracking/tensorboard/<model_name>."""
    names = cfg.track.integrations()
    if not names:
        return {"report_to": []}
    _offline_environment(cfg)
    if "tensorboard" in names:  # transformers' TensorBoardCallback reads it when the trainer is built
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(tracking_dir(cfg) / "tensorboard" / model_name)
    return {"report_to": names, "run_name": f"{run_name(cfg)}-{model_name}", "project": cfg.track.project}


class Tracker:
    """The loop's own metrics in the run's tracking run. `log` is cheap when tracking is off, and never logs a
    (metric, step) twice, across reruns too. Each call opens and closes its writers: a tracking run stays open only
    while it is written, so a trainer's run (trackio and W&B keep one current run per process) is never written
    by mistake."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.names = [n for n in cfg.track.integrations() if n in LOOP_BACKENDS]
        self.dir = tracking_dir(cfg)
        self._logged_path = self.dir / "logged.json"

    def log(self, metrics: dict[str, float | None], step: int) -> None:
        if not self.names:
            return
        done = set(read_json(self._logged_path)["logged"]) if self._logged_path.exists() else set()
        new = {k: float(v) for k, v in metrics.items() if v is not None and f"{k}@{step}" not in done}
        if not new:
            return
        _offline_environment(self.cfg)
        for name in self.names:
            getattr(self, f"_log_{name}")(new, step)
        write_json(self._logged_path, {"run_name": run_name(self.cfg),
                                       "logged": sorted(done | {f"{k}@{step}" for k in new})})  # fmt: skip

    def _log_tensorboard(self, metrics: dict[str, float], step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.dir / "tensorboard" / "loop"))
        for k, v in metrics.items():
            writer.add_scalar(k, v, step)
        writer.close()

    def _log_trackio(self, metrics: dict[str, float], step: int) -> None:
        import trackio

        t = self.cfg.track
        run = trackio.init(project=t.project, name=run_name(self.cfg), group=run_name(self.cfg), resume="allow",
                           embed=False)  # fmt: skip
        run.log(metrics=metrics, step=step)
        run.finish()

    def _log_wandb(self, metrics: dict[str, float], step: int) -> None:
        import wandb

        name = run_name(self.cfg)
        run_id = hashlib.sha256(str(self.dir.resolve()).encode()).hexdigest()[:16]  # one W&B run per run folder
        run = wandb.init(project=self.cfg.track.project, name=name, id=run_id, resume="allow", group=name)
        run.log(metrics, step=step)
        run.finish()


def model_step(name: str) -> tuple[str, int]:
    """("psrlm", 2) for psrlm-M2, ("base", 0) for M0: a model's series and step in the loop's tracking run."""
    if "-M" not in name:
        return "base", 0
    label, number = name.rsplit("-M", 1)
    return label, int(number) if number.isdigit() else 0


def evaluation_metrics(name: str, metrics: dict) -> tuple[dict[str, float | None], int]:
    """A model's evaluation (iterate.evaluate_model's metrics) as tracked metrics, and its step."""
    label, step = model_step(name)
    out: dict[str, float | None] = {
        f"{label}/eval/{b}": s.get("accuracy") for b, s in metrics.get("benchmarks", {}).items()
    }
    judge = metrics.get("judge") or {}
    out[f"{label}/judge_accuracy"] = judge.get("judge_accuracy") if judge.get("n") else None
    soft = metrics.get("judge_soft") or {}
    out[f"{label}/judge_accuracy_soft"] = soft.get("accuracy") if soft.get("n") else None
    return out, step


def iteration_metrics(name: str, manifest_metrics: dict, seconds: dict[str, float]) -> tuple[dict, int]:
    """What one iteration made (its manifest's metrics), as tracked metrics, and its step."""
    label, step = model_step(name)
    search = manifest_metrics.get("search") or {}
    precision = manifest_metrics.get("pair_precision") or {}
    train = manifest_metrics.get("train") or {}
    out = {f"{label}/pairs": search.get("pairs"), f"{label}/pair_precision": precision.get("precision"),
           f"{label}/search_gen_tokens": search.get("gen_tokens"), f"{label}/search_judge_calls": search.get("judge_calls"),
           f"{label}/train_final_loss": train.get("final_loss"),
           **{f"{label}/seconds/{k}": v for k, v in seconds.items()}}  # fmt: skip
    return out, step
