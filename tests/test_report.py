import json
import math

from psrlm.cli import main
from psrlm.confidence import mean_ci
from psrlm.report import science_check


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


def _fixture_run(run):
    """A finished run as `psrlm iterate` + `psrlm eval` leave it: manifests, eval JSONs, per-benchmark summaries."""
    (run / "manifests").mkdir(parents=True)
    (run / "eval").mkdir()
    for method, accs in (("psrlm", [0.2, 0.25, 0.3]), ("srlm", [0.2, 0.2, 0.22])):
        for it, acc in enumerate(accs, start=1):
            name = f"{method}-M{it}"
            bench = {"arith_test": {"n": 50, "accuracy": acc, "mean_steps": 3.0 + it / 10, "mean_step_chars": 40.0,
                                    "mean_step_tokens": 20.0 - it, "no_answer_rate": 0.0},
                     "arith_hard": {"n": 50, "accuracy": acc / 2, "mean_steps": 5.0, "mean_step_chars": 80.0,
                                    "mean_step_tokens": 30.0, "no_answer_rate": 0.0}}  # fmt: skip
            ev = {"test": bench["arith_test"], "hard": bench["arith_hard"], "benchmarks": bench,
                  "judge": {"judge_accuracy": 0.6 + it / 100, "consistency": 0.4, "no_verdict_rate": 0.0},
                  "judge_soft": {"accuracy": 0.7, "single_order_accuracy": 0.6, "position_bias": 0.45}}  # fmt: skip
            (run / "eval" / f"{name}.json").write_text(json.dumps(ev))
            metrics = {}
            if it > 1:
                metrics = {"pair_precision": {"precision": 0.5 + it / 10},
                           "search": {"problems": 10, "pairs": 30 * it, "tie_rate": 0.1, "rollback_rate": 0.05,
                                      "no_verdict_rate": 0.0}}  # fmt: skip
            (run / "manifests" / f"{name}.json").write_text(json.dumps({"metrics": metrics}))
    (run / "eval" / "M0.json").write_text(json.dumps({"test": {"n": 50, "accuracy": 0.02, "mean_steps": 1.0,
        "mean_step_chars": 50.0}, "hard": {"n": 50, "accuracy": 0.0, "mean_steps": 1.0, "mean_step_chars": 90.0},
        "judge": {"judge_accuracy": 0.0, "consistency": 0.0, "no_verdict_rate": 1.0}}))  # fmt: skip
    (run / "eval" / "psrlm-M3").mkdir()
    (run / "eval" / "psrlm-M3" / "summary.json").write_text(json.dumps({"gsm8k": {"n": 20, "accuracy": 0.05,
        "mean_steps": 2.0, "mean_step_chars": 60.0, "mean_step_tokens": 25.0, "no_answer_rate": 0.1}}))  # fmt: skip
    (run / "eval" / "psrlm-M3" / "tts.json").write_text(json.dumps({"n": 20, "greedy": {"accuracy": 0.3,
        "tokens_per_problem": 60}, "tts": {"accuracy": 0.4, "tokens_per_problem": 900, "judge_calls_per_problem": 40},
        "token_ratio": 15, "time_ratio": 12.5}))  # fmt: skip
    (run / "eval" / "appendix_b.json").write_text(json.dumps({"n": 20, "pair_judge": "m/psrlm-M1", "scorer": "m/srlm-M1",
        "pairwise": {"agreement": 0.6, "consistency": 0.3, "no_preference_rate": 0.0},
        "scoring": {"agreement": 0.2, "consistency": 0.1, "no_preference_rate": 0.7}}))  # fmt: skip


def test_single_run_report_tables_and_plots(tmp_path):
    from psrlm.report import report

    run = tmp_path / "run"
    _fixture_run(run)
    text = report([run])
    assert (run / "report.md").read_text() == text
    # Table 1: every benchmark any model was evaluated on, "-" where one was not
    assert "| model | arith_test (n=50) | arith_hard (n=50) | gsm8k (n=20) | avg |" in text
    assert "| psrlm-M3 | 0.300 | 0.150 | 0.050 | 0.167 |" in text and "| srlm-M1 | 0.200 | 0.100 | - | - |" in text
    assert "| psrlm-M1 → psrlm-M3 | +0.100 | +0.050 | - |" in text  # Table 2
    assert "| M0 | 0.000 | 0.000 | 1.000 | - |" in text  # Table 3, M0 never wrote a verdict
    assert "| psrlm-M3 | 3.30 / 17.0 | 5.00 / 30.0 | 2.00 / 25.0 |" in text  # Table 4
    # Table 5: a tts.json from before the per-benchmark results and the search rules: the training search's rules
    assert "| psrlm-M3 | - | training | 20 | 0.300 | 0.400 | 60 | 900 | 40.0 | 12.5× |" in text
    assert "| pairwise, generated verdict | 0.600 | 0.300 | 0.000 |" in text  # Appendix B
    assert "| psrlm-M3 | 10 | 90 | 0.800 | - | - |" in text  # PPD pairs
    assert "Table 3b" not in text  # the fixture's judge items name no error kind
    plots = sorted(p.name for p in (run / "report_plots").iterdir())
    assert plots == ["accuracy_vs_iteration.png", "judge_vs_iteration.png", "pair_precision_vs_iteration.png",
                     "steps_vs_iteration.png"]  # fmt: skip
    for p in plots:
        data = (run / "report_plots" / p).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
        assert f"(report_plots/{p})" in text


def test_judge_by_error_kind_table_prefers_the_soft_reading():
    from psrlm.report_tables import table_judge_kinds

    kinds = {"arithmetic_slip": {"n": 74, "accuracy": 0.527}, "premature_answer": {"n": 57, "accuracy": 1.0}}
    models = {"M0": {"judge": {"judge_accuracy": 0.0}},
              "psrlm-M1": {"judge": {"by_kind": {"arithmetic_slip": {"n": 74, "accuracy": 0.1}}},
                           "judge_soft": {"by_kind": kinds}},
              "srlm-M1": {"judge": {"by_kind": {"arithmetic_slip": {"n": 74, "accuracy": 0.5}}}}}  # fmt: skip
    assert table_judge_kinds(models).splitlines() == [
        "| model | verdict | arithmetic_slip (n=74) | premature_answer (n=57) |", "|---|---|---|---|",
        "| psrlm-M1 | soft | 0.527 | 1.000 |", "| srlm-M1 | generated | 0.500 | - |"]  # fmt: skip
    assert table_judge_kinds({"M0": {"judge": {"judge_accuracy": 0.0}}}) is None


# ------------------------------------------------------------------------ what a report may show (issue 23)


def _model(run, name, weights: str):
    d = run / "models" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps({"weights": weights}))
    return d


def _current_run(run):
    """A run as `psrlm iterate` writes it now: models with manifests chained by the parent's settings
    fingerprint, evaluation folders stamped with the model they measured, and summary.json."""
    from psrlm.folders import SETTINGS_NAME, fingerprint, model_files, model_identity

    settings = {"psrlm-M1": {"sft.lr": 0.01}}
    settings["psrlm-M2"] = {"parent": fingerprint(settings["psrlm-M1"]), "dpo.beta": 0.1}
    settings["psrlm-M3"] = {"parent": fingerprint(settings["psrlm-M2"]), "dpo.beta": 0.1}
    (run / "manifests").mkdir(parents=True)
    summary = {}
    for k, (name, s) in enumerate(settings.items()):
        model = _model(run, name, f"w{k}")
        (run / "manifests" / f"{name}.json").write_text(json.dumps({"model_path": str(model), "settings": s,
                                                                     "metrics": {}}))  # fmt: skip
        ev = run / "eval" / name
        ev.mkdir(parents=True)
        sha = model_identity(model)
        (ev / SETTINGS_NAME).write_text(json.dumps({"settings": {"model.sha256": sha}, "extra": {"model": {
            "path": str(model), "files": model_files(model), "sha256": sha}}}))  # fmt: skip
        bench = {"arith_test": {"n": 3, "accuracy": 0.333 * (k + 1), "mean_steps": 2.0, "mean_step_chars": 9.0}}
        (ev / "summary.json").write_text(json.dumps(bench))
        summary[name] = {"benchmarks": bench, "judge": {"judge_accuracy": 0.5, "consistency": 0.5}}
    (run / "summary.json").write_text(json.dumps({"models": summary, "timings_s": {}, "wall_s": 1}))


def _tables(text: str) -> str:
    return text.split("## Stale results")[0]


def test_a_report_shows_only_results_of_current_models_and_marks_the_rest_stale(tmp_path):
    """After an interrupted `iterate --fresh`: psrlm-M2's model, manifest and evaluation were moved to replaced/
    (summary.json still holds its 0.666), and psrlm-M3's parent is gone. Neither may show as a result."""
    from psrlm.report import report

    run = tmp_path / "run"
    _current_run(run)
    text = report([run], plots=False)
    assert "| psrlm-M2 | 0.666 |" in text and "Stale" not in text  # all current
    for part in ("models/psrlm-M2", "manifests/psrlm-M2.json", "eval/psrlm-M2"):
        dest = run / "replaced" / "t" / part
        dest.parent.mkdir(parents=True, exist_ok=True)
        (run / part).rename(dest)
    text = report([run], plots=False)
    assert "| psrlm-M1 | 0.333 |" in _tables(text)
    assert "psrlm-M2" not in _tables(text) and "psrlm-M3" not in _tables(text)
    assert "| psrlm-M2 | its evaluation was moved aside (replaced/) and not redone yet |" in text
    assert "| psrlm-M3 | its parent psrlm-M2 was replaced |" in text

    # M2 rebuilt with other settings (and evaluated); M3 was made from the old M2: still stale
    (run / "replaced" / "t" / "manifests" / "psrlm-M2.json").rename(run / "manifests" / "psrlm-M2.json")
    manifest = json.loads((run / "manifests" / "psrlm-M2.json").read_text())
    manifest["settings"]["dpo.beta"] = 0.5
    (run / "manifests" / "psrlm-M2.json").write_text(json.dumps(manifest))
    (run / "replaced" / "t" / "models" / "psrlm-M2").rename(run / "models" / "psrlm-M2")
    (run / "replaced" / "t" / "eval" / "psrlm-M2").rename(run / "eval" / "psrlm-M2")
    text = report([run], plots=False)
    assert "| psrlm-M2 | 0.666 |" in _tables(text) and "psrlm-M3" not in _tables(text)
    assert "| psrlm-M3 | its parent psrlm-M2 was rebuilt since, with other settings |" in text

    # an evaluation of weights that have changed since
    _model(run, "psrlm-M1", "other weights")
    text = report([run], plots=False)
    assert "psrlm-M1" not in _tables(text)
    assert "| psrlm-M1 | its evaluation was made from other weights than" in text


def test_a_report_of_a_run_with_nothing_evaluated_says_so(tmp_path, capsys):
    """It ended in matplotlib's `Number of columns must be a positive integer, not 0`."""
    run = tmp_path / "run"
    (run / "manifests").mkdir(parents=True)
    _model(run, "psrlm-M1", "w")
    (run / "manifests" / "psrlm-M1.json").write_text(json.dumps({"model_path": "x", "metrics": {}}))
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "No model of this run has been evaluated yet" in text and "Stale" not in text


def test_a_report_is_not_written_into_a_run_another_process_is_writing(tmp_path, capsys):
    import subprocess
    import sys

    run = tmp_path / "run"
    _current_run(run)
    hold = ("import sys, time; from psrlm.folders import FolderLock; FolderLock(sys.argv[1], 'iterate').acquire(); "
            "print('locked', flush=True); time.sleep(60)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert main(["report", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"{run} is being written by `iterate` pid {proc.pid}" in err and "--out" in err
        assert err.count("\n") == 1
        assert not (run / "report.md").exists() and not (run / "report_plots").exists()
        assert main(["report", str(run), "--out", str(tmp_path / "elsewhere.md")]) == 0  # outside the run: fine
        assert (tmp_path / "elsewhere_plots").is_dir()
    finally:
        proc.kill()
        proc.wait()


def test_the_oracle_arm_shows_beside_the_method_labelled_oracle_and_a_copy_says_so(tmp_path):
    """iterate.oracle_iterations: oracle-M2 (from psrlm-M1, pairs judged by the step oracle) is listed right after
    the method's chain in every table and never without its ORACLE mark, Table 2 measures it from the psrlm-M1 it
    starts from, and its parent is read from its manifest (not an "oracle-M1" it never had, which made it stale).
    A model whose search made no pairs says it is its parent's copy."""
    from psrlm.folders import fingerprint
    from psrlm.report import collect, report
    from psrlm.summary_table import format_table

    run = tmp_path / "run"
    (run / "manifests").mkdir(parents=True)
    settings = {"psrlm-M1": {"sft.lr": 0.01}, "srlm-M1": {"sft.lr": 0.02}}
    chain = {"psrlm-M2": ("psrlm-M1", {}), "oracle-M2": ("psrlm-M1", {"judge": {"kind": "oracle", "flip": 0.0}}),
             "srlm-M2": ("srlm-M1", {"judge": {"kind": "self"}, "train": {"pairs": 0, "skipped": True}})}  # fmt: skip
    accs = {"psrlm-M1": 0.2, "psrlm-M2": 0.25, "oracle-M2": 0.4, "srlm-M1": 0.2, "srlm-M2": 0.2}
    for name, acc in accs.items():
        parent, metrics = chain.get(name, ("M0", {}))
        s = settings.get(name) or {"parent": fingerprint(settings[parent]), "dpo.beta": 0.1}
        man = {"parent_model": str(run / "models" / parent), "settings": s,
               "metrics": {"search": {"problems": 3, "pairs": 0 if name == "srlm-M2" else 5}, **metrics}}  # fmt: skip
        (run / "manifests" / f"{name}.json").write_text(json.dumps(man))
        (run / "eval" / name).mkdir(parents=True)
        (run / "eval" / name / "summary.json").write_text(json.dumps({"arith_test": {"n": 4, "accuracy": acc,
                                                                                     "mean_steps": 2.0}}))  # fmt: skip
    text = report([run])
    oracle = "oracle-M2 [ORACLE judge, accuracy 1.00]"
    assert "Stale" not in text and "**Science arm beside the method: 1 model(s)" in text
    table1 = text.split("## Table 1")[1].split("## Table 2")[0]
    rows = [
        line.split(" | ")[0].lstrip("| ")
        for line in table1.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows[1:] == ["psrlm-M1", "psrlm-M2", oracle, "srlm-M1", "srlm-M2 (copy of srlm-M1: nothing to train on)"]
    assert f"| psrlm-M1 → {oracle} | +0.200 |" in text and "| psrlm-M1 → psrlm-M2 | +0.050 |" in text
    assert "oracle-M2 |" not in text.replace(f"{oracle} |", "")  # nowhere without its mark
    closing = format_table(collect(run)["models"])
    assert (
        f"| {oracle} | 0.400 |" in closing and "| srlm-M2 (copy of srlm-M1: nothing to train on) | 0.200 |" in closing
    )
    assert (run / "report_plots" / "accuracy_vs_iteration.png").is_file()
