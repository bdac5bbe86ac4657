"""How a run is carried out and recorded: the `launch`, `plan` and `track` sections."""

from __future__ import annotations

from dataclasses import dataclass, field

from psrlm.configs.checks import Rule


@dataclass
class LaunchConfig:
    """How training stages run (launch.py).

    accelerate_config: "" = in-process (the embedded default); a name in configs/accelerate/ (zero3, zero3-offload,
        fsdp, cpu) or a path = every training stage of `psrlm iterate` runs as an `accelerate launch` job of
        `psrlm train`.
    num_processes: processes per job (0 = as the accelerate config says).
    extra_args: more arguments for `accelerate launch` (e.g. ["--main_process_port", "29600"]). With a wrapper, an
        argument that is just `$NAME` is left for the shell of each task to expand (e.g. `$SLURM_PROCID`).
    wrapper: "" = run the command here; else a command template with slot {command}, the whole `accelerate launch`
        command as one shell word, to start it on every node (e.g. `srun --nodes=2 --ntasks-per-node=1 --overlap
        bash -c {command}`, with --machine_rank $SLURM_PROCID in extra_args: scripts/slurm/psrlm-iterate.slurm).
    """

    accelerate_config: str = ""
    num_processes: int = 0
    extra_args: list[str] = field(default_factory=list)
    wrapper: str = ""

    def rules(self) -> list[Rule]:
        return [
            ("num_processes", self.num_processes >= 0, "must be >= 0 (0 = from the accelerate config)"),
            ("wrapper", not self.wrapper or "{command}" in self.wrapper,
             "must hold the slot {command} (where the accelerate command goes)"),
        ]  # fmt: skip


@dataclass
class PlanConfig:
    """Hardware and rates `psrlm plan` turns tokens into GPU-hours with (plan.py).

    gpu: H100, H200, A100, L40S (peak dense bf16 TFLOP/s from a table) or CPU. gpus: GPUs of the run.
    zero_stage: the ZeRO stage memory is estimated under (0-3) when training runs in-process; with
        launch.accelerate_config the stage, offloading and processes are read from that file.
    train_mfu: training FLOP utilisation.
    gen_mfu: generation FLOP utilisation, used when decode_tok_per_s is 0. decode_tok_per_s: measured generated
        tokens per second per GPU of the serving engine (vLLM on the model at hand), when known.
    steps_per_question / tokens_per_step / question_tokens: the search's shape before any IFT data exists (0 = read
        it from the IFT files); after an iteration the finished traces are used instead.
    """

    gpu: str = "H100"
    gpus: int = 8
    zero_stage: int = 3
    train_mfu: float = 0.35
    gen_mfu: float = 0.05
    decode_tok_per_s: float = 0.0
    steps_per_question: float = 0.0
    tokens_per_step: float = 0.0
    question_tokens: float = 64.0

    def rules(self) -> list[Rule]:
        return [
            ("gpus", self.gpus >= 1, "must be >= 1"),
            ("zero_stage", 0 <= self.zero_stage <= 3, "0..3"),
            ("train_mfu", 0 < self.train_mfu <= 1, "must be in (0, 1]"),
            ("gen_mfu", 0 < self.gen_mfu <= 1, "must be in (0, 1]"),
            ("decode_tok_per_s", self.decode_tok_per_s >= 0, "must be >= 0"),
        ]


# transformers' report_to integrations (transformers.integrations.INTEGRATION_TO_CALLBACK; a test keeps this in step)
REPORT_TO = ("azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte", "kubeflow", "mlflow",
             "neptune", "swanlab", "tensorboard", "trackio", "wandb")  # fmt: skip


@dataclass
class TrackConfig:
    """Experiment tracking (tracking.py): where the training losses of every TRL trainer and psrlm's own per-stage
    metrics go.

    report_to: "none", or one or a list of transformers' integrations: tensorboard, trackio, wandb, mlflow, ... Every
        training stage passes it to its TRL trainer (one tracking run per stage, named `<run_name>-<model>`), and
        tensorboard / trackio / wandb also get the loop's own metrics in one run named `run_name` (per iteration and
        method: pairs, pair precision where the oracle can tell, judge accuracy, accuracy per benchmark, search
        tokens and seconds), resumed when the run is rerun.
    project: the project (trackio, wandb) the runs are grouped under.
    run_name: the tracking run's name; empty = the run folder's name.
    offline: keep everything on this machine (the default; clusters and this build machine have no network):
        TensorBoard event files and trackio's store under `<run_dir>/tracking/` (unless TRACKIO_DIR is set),
        W&B in offline mode (unless WANDB_MODE is set). false: the integrations' own defaults (a trackio Space,
        W&B's server).
    """

    report_to: str | list[str] = "none"
    project: str = "psrlm"
    run_name: str = ""
    offline: bool = True

    def integrations(self) -> list[str]:
        names = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        return [r for r in names if r != "none"]

    def rules(self) -> list[Rule]:
        names = [self.report_to] if isinstance(self.report_to, str) else self.report_to
        return [
            ("report_to", set(names) <= {"none", *REPORT_TO}, f"choose none or any of {', '.join(REPORT_TO)}"),
            ("project", bool(self.project.strip()), "must name a project"),
        ]
