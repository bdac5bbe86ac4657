"""Progress where it is read: bars on a terminal, plain lines in a log file, nothing under --quiet."""

import io
import os

import pytest

from psrlm import progress
from psrlm.progress import LineProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_log_file_gets_a_line_at_the_start_every_interval_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(400, "search", "problem", initial=0, every_s=30, file=out, clock=clock)
    for _ in range(10):
        clock.t += 5
        bar.update(4)
    bar.set_postfix(pairs=12, rollbacks=1, refresh=False)
    clock.t += 10  # 60 s in: a second line
    bar.update(20)
    clock.t += 1
    bar.update(1)  # within the interval: no line
    bar.close()
    bar.close()  # closing twice says nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == [
        "search: 0/400 problem (0%), 00:00 elapsed",
        "search: 24/400 problem (6%), 00:30 elapsed, ETA 07:50",
        "search: 60/400 problem (15%), 01:00 elapsed, ETA 05:40, pairs=12, rollbacks=1",
        "search: 61/400 problem (15%), 01:01 elapsed, ETA 05:39, pairs=12, rollbacks=1",
    ]


@pytest.mark.parametrize(
    ("total", "initial", "done", "seconds", "expected"),
    [
        (10, 0, 10, 3725, "x: 10/10 it (100%), 1:02:05 elapsed"),  # finished: no ETA
        (10, 6, 2, 20, "x: 8/10 it (80%), 00:20 elapsed, ETA 00:20"),  # resumed at 6: the rate of this run's 2
        (10, 6, 0, 20, "x: 6/10 it (60%), 00:20 elapsed"),  # nothing done yet: no rate, no ETA
        (0, 0, 0, 1, "x: 0/0 it, 00:01 elapsed"),
    ],
)
def test_line_text(total, initial, done, seconds, expected):
    clock = Clock()
    bar = LineProgress(total, "x", initial=initial, file=io.StringIO(), clock=clock)
    bar.n += done
    clock.t = seconds
    assert bar.line() == expected


def test_bars_follow_the_terminal_and_quiet(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # an earlier in-process `psrlm` off a terminal set it
    monkeypatch.setattr(progress, "interactive", lambda: True)
    assert isinstance(progress.bar(5, "x"), tqdm) and not progress.bar(5, "x").disable
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert isinstance(progress.bar(5, "x", enabled=True), LineProgress)
    assert progress.bar(5, "x", enabled=False).disable  # the caller asked for none
    assert progress.trainer_args() == {"disable_tqdm": True}
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    progress.configure(False)  # off a terminal: TRL's own bars (DPO's reference log probs) off too
    assert os.environ["TQDM_DISABLE"] == "1"
    monkeypatch.setenv(progress.QUIET_ENV, "1")
    assert progress.bar(5, "x").disable


def test_quiet_psrlm_search_prints_its_result_and_nothing_else(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """`psrlm --quiet search`: no bar, no info lines on a real model's search; off a terminal (pytest's captured
    stderr) the same search without --quiet writes plain progress lines, no carriage returns."""
    import json

    from psrlm.cli import main

    monkeypatch.delenv(progress.QUIET_ENV, raising=False)
    problems = tmp_path / "p.jsonl"
    problems.write_text(
        json.dumps({"id": "q0", "question": "Mia has 2 pens. She buys 3 more.", "answer": "5", "source": "arith"})
        + "\n"
    )
    common = ["--model", str(tiny_model_dir), "--problems", str(problems), "--set", "prompts.variant=compact",
              "--set", "search.width=2", "--set", "search.max_steps=2", "--set", "search.max_step_tokens=8"]  # fmt: skip
    assert main(["search", *common, "--out", str(tmp_path / "loud")]) == 0
    err = capsys.readouterr().err
    assert "search: 0/1 problem" in err and "search: 1/1 problem (100%)" in err and "\r" not in err
    assert main(["--quiet", "search", *common, "--out", str(tmp_path / "quiet")]) == 0
    out, err = capsys.readouterr()
    assert "search:" not in err and " INFO " not in err
    assert "done in" in out
