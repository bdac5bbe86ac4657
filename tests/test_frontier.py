"""The frontier experiment's parts: the difficulty ladder, the frontier schedule, SRLM with the oracle as judge,
RFT's training data, and `psrlm frontier` end to end on a tiny model."""

import json

import pytest

from psrlm.configs import ConfigError, SRLMConfig, load_config
from psrlm.prompts import get_prompts
from psrlm.records import Problem, SearchTrace, read_jsonl

from .conftest import small_config
from .test_srlm import SolutionEngine

LEVELS = ["arith.levels=[[3, 4, 30], [4, 5, 40]]", "arith.level_pool=30", "arith.level_probe=5"]


def test_the_ladder_is_disjoint_from_every_split_and_from_the_pretraining_stream(tmp_path):
    from psrlm.initdata.build import arith_splits, arith_valid, arith_valid_hard, build_arith_data, pretrain_stream

    cfg = small_config(tmp_path / "run", *LEVELS)
    build_arith_data(cfg)
    data = tmp_path / "run" / "data"
    ladder = {f.stem: read_jsonl(f, Problem) for f in data.glob("arith_level*.jsonl")}
    assert sorted(ladder) == ["arith_level0_probe", "arith_level1", "arith_level1_probe", "arith_level2",
                              "arith_level2_probe"]  # fmt: skip
    assert len(ladder["arith_level1"]) == 30 and len(ladder["arith_level2_probe"]) == 5
    assert all(3 <= len(p.meta["equations"]) for p in ladder["arith_level1"])  # (an op is one or two equations)
    splits = arith_splits(cfg)
    valid = arith_valid(cfg, splits)
    others = [*splits.values(), valid, arith_valid_hard(cfg, splits, valid), *pretrain_stream(cfg, splits)]
    hashes = [p.meta["hash"] for ps in [*others, *ladder.values()] for p in ps]
    assert len(hashes) == len(set(hashes))


def test_a_ladder_with_an_impossible_level_is_rejected_by_name():
    with pytest.raises(ConfigError, match=r"arith.levels=\[\[5, 3, 30\]\].*min_ops <= max_ops"):
        load_config(None, ["arith.levels=[[5, 3, 30]]"])
    with pytest.raises(ConfigError, match="iterate.schedule='frontier'.*arith.levels"):
        load_config(None, ["iterate.schedule=frontier"])


def _run_with_rates(tmp_path, monkeypatch, rates: dict[int, float], band: str, questions: str = "[4, 4]"):
    """A run folder whose probes report `rates` (the selection rule's glue; the probe itself is real elsewhere)."""
    from psrlm.initdata.build import build_arith_data
    from psrlm.runfolder import Run

    cfg = small_config(tmp_path / "run", *LEVELS, "iterate.schedule=frontier", f"iterate.frontier_band={band}",
                       f"iterate.questions={questions}")  # fmt: skip
    build_arith_data(cfg)
    monkeypatch.setattr("psrlm.questions.probe_levels", lambda run, model: rates)
    return Run(cfg)


def test_the_frontier_is_the_easiest_level_not_yet_mastered(tmp_path, monkeypatch):
    from psrlm.questions import frontier_questions

    run = _run_with_rates(tmp_path, monkeypatch, {0: 0.9, 1: 0.55, 2: 0.3}, "[0.2, 0.7]")
    questions, schedule = frontier_questions(run, "psrlm", 2, tmp_path / "psrlm-M1")
    assert schedule["level"] == 1 and schedule["difficulty"] == [3, 4, 30] and schedule["offset"] == 0
    assert schedule["pass_rates"] == {"0": 0.9, "1": 0.55, "2": 0.3}
    pool = read_jsonl(tmp_path / "run" / "data" / "arith_level1.jsonl", Problem)
    assert [q.id for q in questions] == [q.id for q in pool[:4]]


def test_a_chain_draws_the_next_unused_questions_of_its_level(tmp_path, monkeypatch):
    from psrlm.questions import frontier_questions
    from psrlm.records import Manifest

    run = _run_with_rates(tmp_path, monkeypatch, {0: 0.9, 1: 0.55, 2: 0.3}, "[0.2, 0.7]")
    _, first = frontier_questions(run, "psrlm", 2, tmp_path / "psrlm-M1")
    run.write_manifest("psrlm-M2", Manifest(iteration=2, method="psrlm", parent_model="", model_path="",
                                            metrics={"questions": {"schedule": first}}))  # fmt: skip
    questions, second = frontier_questions(run, "psrlm", 3, tmp_path / "psrlm-M2")
    pool = read_jsonl(tmp_path / "run" / "data" / "arith_level1.jsonl", Problem)
    assert second["offset"] == 4 and [q.id for q in questions] == [q.id for q in pool[4:8]]
    # another chain (another label) starts at the beginning of the level: the controls see the same questions
    other, _ = frontier_questions(run, "oracle", 2, tmp_path / "psrlm-M1")
    assert [q.id for q in other] == [q.id for q in pool[:4]]


@pytest.mark.parametrize(
    "rates, band, message",
    [
        (
            {0: 0.95, 1: 0.9, 2: 0.8},
            "[0.2, 0.7]",
            r"psrlm-M1 masters every level \(pass rates level 0 \(2, 4, 20\): 0.95",
        ),
        ({0: 0.9, 1: 0.1, 2: 0.0}, "[0.2, 0.7]", r"solves level 1 at 0.10, below it"),
    ],
)
def test_a_band_no_level_reaches_stops_with_the_rates(tmp_path, monkeypatch, rates, band, message):
    from psrlm.questions import frontier_questions

    run = _run_with_rates(tmp_path, monkeypatch, rates, band)
    with pytest.raises(ConfigError, match=message):
        frontier_questions(run, "psrlm", 2, tmp_path / "psrlm-M1")


def test_a_level_without_enough_questions_names_its_pool(tmp_path, monkeypatch):
    from psrlm.questions import frontier_questions

    run = _run_with_rates(tmp_path, monkeypatch, {0: 0.9, 1: 0.5, 2: 0.3}, "[0.2, 0.7]", questions="[31]")
    with pytest.raises(
        ConfigError, match=r"needs 31 questions of level 1 \(3, 4, 30\) but its pool has 30 left of 30"
    ):
        frontier_questions(run, "psrlm", 2, tmp_path / "psrlm-M1")


def test_srlm_with_the_oracle_pairs_a_right_solution_against_a_wrong_one():
    # SolutionEngine writes "sol k \boxed{k}": with answer 2, only sol 2 is right; no scoring prompt is sent
    problems = [Problem(id="p", question="q", answer="2", source="t"), Problem(id="r", question="q", answer="9",
                                                                                source="t")]  # fmt: skip
    res = run_srlm_oracle(problems)
    (pair,) = res.pairs  # "r": every solution wrong, no preference
    assert "sol 2" in pair.chosen and pair.meta["chosen_score"] == 5.0 and pair.meta["rejected_score"] == 0.0
    assert pair.meta["judge"] == "oracle" and res.traces[0].judge_calls == 0 and res.traces[1].ties == 1


def run_srlm_oracle(problems):
    from psrlm.srlm import run_srlm

    engine = SolutionEngine()
    res = run_srlm(problems, engine, get_prompts("compact"), SRLMConfig(n_samples=4, judge="oracle"), progress=False)
    return res


def test_rft_trains_on_the_searches_complete_right_solutions_only():
    from psrlm.stages import right_solutions

    q = [Problem(id=f"q{i}", question=f"question {i}", answer="7", source="t") for i in range(4)]
    traces = [
        SearchTrace("q0", ["3 + 4 = 7.", "So \\boxed{7}."], finished=True, final_answer="7"),  # right
        SearchTrace("q1", ["3 + 5 = 8.", "So \\boxed{8}."], finished=True, final_answer="8"),  # wrong answer
        SearchTrace("q2", ["3 + 4 = 7."], finished=False, final_answer=None, stop_reason="max_steps"),  # unfinished
        SearchTrace("q3", ["So \\boxed{7.0}."], finished=True, final_answer="7.0"),  # right, graded as the loop does
    ]
    sols = right_solutions(traces, q)
    assert [s.problem_id for s in sols] == ["q0", "q3"] and sols[0].meta["question"] == "question 0"
    assert sols[0].steps == ["3 + 4 = 7.", "So \\boxed{7}."] and sols[0].final_answer == "7"


@pytest.mark.slow
def test_frontier_runs_every_arm_end_to_end_on_a_tiny_model(tmp_path, capsys):
    """`psrlm frontier`: the table, the JSON and the figure, every arm labelled; the tiny model solves no level,
    so the band here starts at 0."""
    from psrlm.cli import main

    from .test_iterate import LOOP

    sets = [*LOOP, *LEVELS, "iterate.frontier_band=[0.0, 1.0]", "iterate.questions=[3, 3]", "rft.lr=0.001",
            "rft.batch_size=4"]  # fmt: skip
    args = ["frontier", "--seeds", "0", "--out", str(tmp_path / "out"), *(a for s in sets for a in ("--set", s)),
            "--iterations", "self=1,oracle=1,outcome=1,srlm=1"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert list(summary["arms"]) == ["self", "oracle", "rft", "outcome", "srlm"]
    for arm, a in summary["arms"].items():
        rows = a["iterations"]
        assert len(rows) == (2 if arm == "rft" else 1), arm  # --iterations capped every arm but rft
        assert rows[0]["levels"] == [0] and len(a["series"]["arith_hard"]) == len(rows) + 1, arm
    seed = tmp_path / "out" / "seed0"
    man = json.loads((seed / "manifests" / "rft-M2.json").read_text())
    assert man["metrics"]["questions"]["schedule"]["kind"] == "frontier" and "rft" in man["metrics"]
    assert json.loads((seed / "manifests" / "oracle-M2.json").read_text())["metrics"]["judge"]["kind"] == "oracle"
    assert json.loads((seed / "manifests" / "outcome-M2.json").read_text())["metrics"]["judge"]["kind"] == "oracle"
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 0
    text = (tmp_path / "out" / "frontier.md").read_text()
    assert "PSRLM (ORACLE judge)" in text and "SFT on right solutions (ORACLE)" in text and "| | self-M2 |" in text
    assert "| | rft-M3 |" in text and "self-M3" not in text


@pytest.mark.parametrize("text, expected", [
    ("", {}),
    ("self=1", {"self": 1}),
    (" self=1 , rft=3 ", {"self": 1, "rft": 3}),
    ("self", "write ARM=N"),
    ("self=x", "write ARM=N"),
    ("srlm=1", "'srlm' is not among the arms run"),
    ("rft=0", "N must be 1..3"),
    ("rft=4", "N must be 1..3"),
])  # fmt: skip
def test_iterations_per_arm_are_read_or_refused_by_name(text, expected):
    from psrlm.frontier import parse_iterations

    if isinstance(expected, dict):
        assert parse_iterations(text, ["self", "oracle", "rft"], 3) == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_iterations(text, ["self", "oracle", "rft"], 3)


@pytest.mark.parametrize("command", ["iterate", "demo", "search", "sweep", "frontier"])
def test_every_command_that_can_ask_for_fresh_accepts_it(command):
    """Their run folders stop on changed settings with "... or pass --fresh": the option must exist there."""
    from psrlm.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "stage").choices[command]
    assert any("--fresh" in a.option_strings for a in sub._actions)
