"""Progress that reads well where it is read.

On a terminal: one tqdm bar per long stage, with counts, rate and ETA. Where stderr is a file or a pipe (a batch
job's log, `make demo > demo.log`): no carriage-return redraws, which a log file keeps as one endless line, but a
plain line every `LOG_EVERY_S` seconds and one when the stage ends. Under `psrlm --quiet`: nothing but warnings,
errors and the results. The libraries' own bars (transformers' weight loading, datasets' map, the TRL trainers'
step bars) follow the same switch (`configure`).
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

QUIET_ENV = "PSRLM_QUIET"  # set by `psrlm --quiet`; inherited by the processes psrlm starts (accelerate launch)
LOG_EVERY_S = 30.0


def quiet() -> bool:
    return os.environ.get(QUIET_ENV) == "1"


def interactive() -> bool:
    """A person watching a terminal (redrawn bars) rather than a file being written (lines)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stderr
        return False


def configure(quiet_mode: bool = False) -> None:
    """Set the switch for this process and the processes it starts, and the libraries' bars with it."""
    if quiet_mode:
        os.environ[QUIET_ENV] = "1"
    if quiet() or not interactive():
        # TRL's bars (DPO's "Computing reference log probs") read this variable at each call, and tqdm's defaults in
        # the processes psrlm starts; psrlm's own bars off a terminal are LineProgress, which it does not touch
        os.environ.setdefault("TQDM_DISABLE", "1")
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights: 100%|..." per model load
        try:
            import datasets

            datasets.disable_progress_bars()
        except ImportError:
            pass
    if quiet():
        logging.getLogger("psrlm").setLevel(logging.WARNING)
    import torch

    if not torch.cuda.is_available():  # DeepSpeed (imported by TRL) warns on every start that it chose the CPU
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    # TRL calls transformers' renamed is_gradient_checkpointing once per DPO stage: a warning no user can act on
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def trainer_args() -> dict:
    """TrainingArguments for the TRL trainers: their step bar on a terminal only. Off a terminal the trainer prints
    one line of metrics per logging step instead (transformers' PrinterCallback), which is what a log should hold;
    under --quiet, trainer_quiet() removes those too."""
    return {"disable_tqdm": quiet() or not interactive()}


def trainer_quiet(trainer) -> None:
    """--quiet: no per-step metric lines from the trainer (they stay in train_log.json and the tracking run)."""
    if quiet():
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)


def bar(total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True):
    """A progress bar for `total` items: tqdm on a terminal, LineProgress off one, a silent one when not `enabled`
    (the caller asked for none) or under --quiet. Every one has tqdm's update / set_postfix / set_postfix_str /
    close and works as a context manager."""
    from tqdm.auto import tqdm

    if not enabled or quiet():
        return tqdm(total=total, initial=initial, disable=True)
    if interactive():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True)
    return LineProgress(total, desc, unit, initial)


class LineProgress:
    """A progress bar for log files: `desc: n/total unit (p %), elapsed, ETA, postfix`, one line at the start, then
    at most one every LOG_EVERY_S seconds, and a last one at close."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, every_s: float = LOG_EVERY_S,
                 file=None, clock=time.monotonic):  # fmt: skip
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self._start_n, self._every, self._file, self._clock = initial, every_s, file, clock
        self._start = self._last = clock()
        self._postfix = ""
        self._closed = False
        self._say()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._clock() - self._last >= self._every:
            self._say()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self._postfix = s

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._say()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def line(self) -> str:
        elapsed = self._clock() - self._start
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({self.n / self.total:.0%})"
        parts.append(f"{_clock_text(elapsed)} elapsed")
        done = self.n - self._start_n
        if 0 < done and self.n < self.total:
            parts.append(f"ETA {_clock_text(elapsed / done * (self.total - self.n))}")
        if self._postfix:
            parts.append(self._postfix)
        return ", ".join(parts)

    def _say(self) -> None:
        self._last = self._clock()
        print(self.line(), file=self._file or sys.stderr, flush=True)


def _clock_text(seconds: float) -> str:
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"
