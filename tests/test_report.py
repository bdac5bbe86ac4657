import json
import math

from psrlm.cli import main
from psrlm.report import mean_ci, science_check


def _summary(run, psrlm_m1, psrlm_m3, srlm_m1, srlm_m3, precision=0.6):
    def m(acc, prec=None):
        r = {"test": {"accuracy": acc, "mean_steps": 3.0, "mean_step_chars": 40.0},
             "hard": {"accuracy": acc / 2, "mean_steps": 6.0, "mean_step_chars": 40.0},
             "judge": {"judge_accuracy": 0.7, "consistency": 0.5}}  # fmt: skip
        if prec is not None:
            r["manifest"] = {"pair_precision": {"precision": prec}, "search": {"pairs": 10}}
        return r

    models = {"M0": m(0.1), "psrlm-M1": m(psrlm_m1), "psrlm-M3": m(psrlm_m3, precision),
              "srlm-M1": m(srlm_m1), "srlm-M3": m(srlm_m3)}  # fmt: skip
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"models": models, "timings_s": {"data": 1}, "wall_s": 5}))


def test_mean_ci():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and abs(half - 4.303 * 1 / math.sqrt(3)) < 1e-9
    assert math.isnan(mean_ci([1.0])[1])


def test_science_check_over_seeds(tmp_path):
    runs = []
    for k, (a, b) in enumerate([(0.30, 0.35), (0.30, 0.36), (0.31, 0.37)]):
        _summary(tmp_path / f"s{k}", a, b, 0.30, 0.30)
        runs.append(tmp_path / f"s{k}")
    sc = science_check(runs)
    assert abs(sc["test"]["psrlm"]["mean"] - 0.0567) < 1e-3
    assert sc["test"]["srlm"]["mean"] == 0.0
    assert sc["test"]["psrlm_minus_srlm"]["ci95"] > 0
    assert sc["pair_precision"]["psrlm-M3"]["mean"] == 0.6


def test_report_cli(tmp_path, capsys):
    _summary(tmp_path / "a", 0.3, 0.4, 0.3, 0.3)
    _summary(tmp_path / "b", 0.3, 0.35, 0.3, 0.31)
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "r.md")]) == 0
    out = capsys.readouterr().out
    assert "| psrlm-M3 |" in out and "Science check" in out
    assert (tmp_path / "r.md").exists() and (tmp_path / "r.json").exists()
    assert main(["report", str(tmp_path / "missing")]) == 2
