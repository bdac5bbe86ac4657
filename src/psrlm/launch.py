"""Training stages as jobs: `accelerate launch ... -m psrlm.cli train STAGE ...`, exit status, manifest, log tail.

    launch:
      accelerate_config: zero3        # a name in configs/accelerate/ (zero3, zero3-offload, fsdp, cpu) or a path
      num_processes: 8                # 0 = as the accelerate config says

With `launch.accelerate_config` empty (the embedded default) `psrlm iterate` trains in-process. Otherwise each
training stage is its own job: the driver writes the effective config beside the output, runs the command this
module builds (logged, in its own process group, output to `<out>.launch.log`), and accepts the model only if the
job exits 0 and left `<out>/psrlm_manifest.json`; a failed job stops the iteration with the log's tail, and the
half-written model never looks finished (models are written to a temp folder and renamed by the main process).
A killed job rerun with the same settings resumes from its last trainer checkpoint (`train.save_steps`).

The command is a list built in one function (`train_command`) and run by an injectable `runner`, so tests assert on
the exact command; `psrlm iterate --dry-run` prints it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from psrlm.configs import REPO_ROOT, Config, ConfigError, save_config

ACCELERATE_CONFIGS = REPO_ROOT / "configs" / "accelerate"


class JobError(RuntimeError):
    """A launched job that failed; the message holds its command, exit status and log tail."""


def accelerate_config(name_or_path: str) -> Path:
    """A shipped config by name (configs/accelerate/<name>.yaml) or a path; anything else lists what there is."""
    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    shipped = ACCELERATE_CONFIGS / f"{name_or_path}.yaml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml"))
    raise ConfigError(f"launch.accelerate_config: no accelerate config {name_or_path!r}; shipped: {', '.join(names)} "
                      f"(in {ACCELERATE_CONFIGS}), or give a path to a .yaml")  # fmt: skip


def train_command(
    cfg: Config,
    recipe: Path,
    stage: str,
    model: Path,
    out: Path,
    data: dict[str, list[Path]],
    *,
    ref: Path | None = None,
    iteration: int = 0,
    seed_offset: int = 0,
) -> list[str]:
    """The `accelerate launch` command of one training stage; `recipe` holds the effective config."""
    lc = cfg.launch
    config = accelerate_config(lc.accelerate_config)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *_deepspeed_file(config)]
    if lc.num_processes:
        cmd += ["--num_processes", str(lc.num_processes)]
    cmd += [*lc.extra_args, "-m", "psrlm.cli", "train", stage, "-c", str(recipe), "--model", str(model),
            "--out", str(out), "--iteration", str(iteration), "--seed-offset", str(seed_offset)]  # fmt: skip
    flags = {"ift": "--ift", "eft": "--eft", "score": "--score", "pairs": "--pairs", "rows": "--rows"}
    for key, files in data.items():
        for f in files:
            cmd += [flags[key], str(f)]
    if ref is not None:
        cmd += ["--ref", str(ref)]
    return wrap(lc.wrapper, cmd) if lc.wrapper else cmd


def _deepspeed_file(config: Path) -> list[str]:
    """`--deepspeed_config_file PATH` where the accelerate config names a DeepSpeed JSON relative to its own folder
    (zero3-cpu.yaml): accelerate would read it relative to the working directory; the command line overrides it."""
    import yaml

    ds = (yaml.safe_load(config.read_text()) or {}).get("deepspeed_config") or {}
    name = ds.get("deepspeed_config_file")
    if not name or Path(name).is_absolute() or not (config.parent / name).is_file():
        return []
    return ["--deepspeed_config_file", str((config.parent / name).resolve())]


def _shell_word(arg: str) -> str:
    """One argument as a shell word; a bare `$NAME` stays expandable by the shell of each task (`$SLURM_PROCID`)."""
    return f'"{arg}"' if re.fullmatch(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", arg) else shlex.quote(arg)


def wrap(wrapper: str, cmd: list[str]) -> list[str]:
    """`launch.wrapper` with the command as one shell word in its {command} slot (srun ... bash -c {command})."""
    inner = " ".join(_shell_word(a) for a in cmd)
    head, _, rest = wrapper.partition("{command}")
    return [*shlex.split(head), inner, *shlex.split(rest)]


def run_job(cmd: list[str], log_path: Path, runner: Callable | None = None) -> None:
    """Run `cmd` in its own process group with its output in `log_path`; a non-zero exit raises JobError with the
    log's tail. Ctrl-C stops the whole job (every rank) before it propagates."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        log_file.write(f"\n$ {shlex.join(cmd)}\n".encode())
        log_file.flush()
        if runner is not None:
            code = runner(cmd, log_file)
        else:
            proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
            try:
                code = proc.wait()
            except BaseException:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=30)
                raise
    if code != 0:
        raise JobError(f"training job failed (exit {code}): {shlex.join(cmd)}\n--- {log_path}, last lines ---\n"
                       f"{tail(log_path)}")  # fmt: skip


def tail(path: Path, chars: int = 3000) -> str:
    try:
        text = Path(path).read_bytes()[-chars:].decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text


def launch_training(
    cfg: Config,
    stage: str,
    model: Path,
    out: Path,
    data: dict[str, list[Path]],
    *,
    ref: Path | None = None,
    iteration: int = 0,
    seed_offset: int = 0,
    runner: Callable | None = None,
):
    """Run one training stage as an accelerate job and return the manifest it wrote."""
    from psrlm.records import Manifest, from_dict, read_json
    from psrlm.train import MANIFEST_NAME

    recipe = out.with_name(out.name + ".launch.yaml")
    save_config(cfg, recipe)
    cmd = train_command(cfg, recipe, stage, model, out, data, ref=ref, iteration=iteration, seed_offset=seed_offset)
    run_job(cmd, out.with_name(out.name + ".launch.log"), runner)
    manifest = out / MANIFEST_NAME
    if not manifest.exists():
        raise JobError(f"training job exited 0 but left no {manifest}: {shlex.join(cmd)}")
    return from_dict(Manifest, read_json(manifest), str(manifest))
