import subprocess
import sys
import time

from psrlm.cli import main

from .conftest import SMALL


def test_help_is_fast_and_lists_stages():
    start = time.time()
    out = subprocess.run([sys.executable, "-m", "psrlm.cli", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in out.stdout and "data" in out.stdout
    assert time.time() - start < 10


def test_unknown_key_is_a_clear_error_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"paths:\n  run_dir: {tmp_path / 'run'}\narith:\n  n_tests: 3\n")
    assert main(["data", "arith", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'arith.n_tests'" in err and "bad.yaml" in err
    assert not (tmp_path / "run").exists()


def test_data_arith_writes_files_and_run_log(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["data", "arith"] + sum((["--set", s] for s in SMALL), []) + ["--set", f"paths.run_dir={run}"]
    assert main(args) == 0
    assert (run / "data" / "eft_test.jsonl").exists()
    assert (run / "logs" / "runs.jsonl").read_text().count('"stage": "data arith"') == 1
    assert list((run / "logs").glob("data_arith-*.yaml"))


def test_every_stage_has_help(capsys):
    import pytest

    for stage in (["data", "arith"], ["data", "ift"], ["data", "eft"], ["model", "init"], ["model", "pretrain"], ["iterate"], ["search"], ["eval"],
                  ["bench"], ["demo"], ["report"], ["show-config"]):  # fmt: skip
        with pytest.raises(SystemExit) as done:
            main([*stage, "--help"])
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_help_texts_show_no_doubled_percent_signs(capsys):
    """argparse %-formats option help (where `%%` is one sign) but not a description (where it stays two)."""
    import argparse

    import pytest

    from psrlm.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        nested = [a for a in sub._actions if isinstance(a, argparse._SubParsersAction)]
        for argv in [[name, *n] for a in nested for n in ([k] for k in a.choices)] or [[name]]:
            with pytest.raises(SystemExit):
                main([*argv, "--help"])
            assert "%%" not in capsys.readouterr().out, argv


def test_every_command_declares_its_needs_where_it_is_registered():
    """What main does around a command (config, the precision line, the run log) is declared beside its parser."""
    import argparse

    from psrlm.cli import build_parser

    def leaves(parser, path):
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not nested:
            yield " ".join(path), parser._defaults
        for action in nested:
            for name, sub in action.choices.items():
                yield from leaves(sub, [*path, name])

    commands = dict(leaves(build_parser(), []))
    assert {name for name, d in commands.items() if d["name"] != name} == set()
    assert {name for name, d in commands.items() if d["needs"].computes} == {
        "iterate", "demo", "search", "eval", "bench", "sweep", "frontier", "model pretrain", "data eft", "data ift",
        "train sft", "train dpo", "train prm",
    }  # fmt: skip
    assert {name for name, d in commands.items() if not d["needs"].config} == {"report", "figure2", "export", "view"}
    assert {name for name, d in commands.items() if not d["needs"].recorded} == {
        "report", "figure2", "export", "view", "show-config",
    }  # fmt: skip
