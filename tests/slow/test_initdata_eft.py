"""`psrlm data eft` end to end on a tiny model: PRM training, policy SFT, MCTS, oracle teacher, filters, split,
then a kill-free rerun that resumes from what is on disk."""

import json

import pytest

from psrlm.cli import main
from psrlm.records import JudgeExample, read_jsonl

from ..test_iterate import LOOP

EFT = [
    "initdata.teacher=oracle",
    "initdata.prm_problems=40",
    "initdata.prm_samples=2",
    "initdata.prm_train.lr=0.003",
    "initdata.mcts_problems=6",
    "initdata.iterations=4",
    "initdata.simulation_depth=2",
    "initdata.expand_width=3",
    "initdata.max_step_tokens=12",
    "initdata.max_depth=4",
    "initdata.min_margin=0.0",
    "initdata.eft_test=2",
]


@pytest.mark.slow
def test_data_eft_end_to_end_and_rerun(tmp_path, capsys):
    args = ["data", "eft"] + sum((["--set", s] for s in LOOP + EFT + [f"paths.run_dir={tmp_path}"]), [])
    assert main(args) == 0
    counts = json.loads((tmp_path / "initdata" / "eft_counts.json").read_text())
    f = counts["filters"]
    assert f["candidate_pairs"] == counts["mcts"]["candidate_pairs"] > 0
    removed = f["removed_teacher_failure"] + f["removed_inconsistent"] + f["removed_disagrees_with_prm"]
    assert removed + f["kept"] == f["candidate_pairs"]
    assert counts["split"]["train"] + counts["split"]["test"] == f["kept"]
    assert 0.0 <= counts["prm"]["search_accuracy"]["accuracy"] <= 1.0
    train = read_jsonl(tmp_path / "initdata" / "eft_train.jsonl", JudgeExample)
    assert all(e.meta["teacher"] == "oracle" for e in train)
    first = (tmp_path / "initdata" / "mcts" / "pairs.jsonl").read_bytes()
    assert main(args) == 0  # resumes: every tree is on disk, the PRM and policy are cached
    assert (tmp_path / "initdata" / "mcts" / "pairs.jsonl").read_bytes() == first
    assert json.loads((tmp_path / "initdata" / "eft_counts.json").read_text())["filters"] == f
