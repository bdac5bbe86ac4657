"""`psrlm view`: the site builder on a run folder made by the real search, SRLM and evaluation code (scripted engines
on real arith problems), and the page itself in a real headless Chromium (skipped where none is installed)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from psrlm.cli import main
from psrlm.configs import SearchConfig, SRLMConfig
from psrlm.engines.base import Completion, EngineStats
from psrlm.evaluate import accuracy_summary, pair_precision, solve_greedy
from psrlm.prompts import get_prompts
from psrlm.records import PreferencePair, SearchTrace, read_jsonl, write_json, write_jsonl
from psrlm.search import run_search
from psrlm.srlm import run_srlm
from psrlm.steps import render_steps
from psrlm.tasks.arith import ERROR_KINDS, Difficulty, corrupt_step, generate_split
from psrlm.view.site import CHUNK, build_site

from .browser import Browser, find_chromium
from .fakes import ScriptedEngine

PROMPTS = get_prompts("compact")
HOSTILE = '<img src=x onerror="document.title=1"> She has <b>5</b> & more'  # a candidate step that is markup


def _wrong_steps(problem, k: int, seed: str) -> list[str]:
    rng = random.Random(seed)
    gold = problem.meta["steps"][k]
    out = [corrupt_step(problem, k, kind, rng) for kind in ERROR_KINDS]
    return list(dict.fromkeys(w for w in out if w and w != gold))


def make_run(root: Path, n: int = 6) -> tuple[Path, list]:
    """A half-finished run: data, PSRLM and SRLM searches of iteration 2 (iteration 3 planned, never run), one
    model's evaluation. Problem 0 rolls back once (its second step ties), problem 1 meets a candidate that is HTML,
    problem 2 draws one text for its first step (unanimous)."""
    run = root / "run"
    problems = generate_split(7, n, Difficulty(2, 3, 20), "arith-train")
    write_jsonl(run / "data" / "fresh_questions.jsonl", problems)
    tests = generate_split(8, 4, Difficulty(2, 3, 20), "arith-test")
    write_jsonl(run / "data" / "arith_test.jsonl", tests)
    write_jsonl(run / "logs" / "runs.jsonl", [{"stage": "iterate", "config": {
        "iterate": {"methods": ["psrlm", "srlm"], "questions": [n, n], "eval_tts": 0}}}])  # fmt: skip
    by_q = {p.question: p for p in problems}
    right = {" ".join(s.split()) for p in problems for s in p.meta["steps"]}
    visits: Counter = Counter()

    def step_fn(question, prev, params):
        p = by_q[question]
        k = min(len(prev), len(p.meta["steps"]) - 1)
        visits[(p.id, k)] += 1
        first = visits[(p.id, k)] == 1
        gold, wrong = p.meta["steps"][k], _wrong_steps(p, k, f"{p.id}:{k}:{visits[(p.id, k)]}")
        if p is problems[0] and k == 1 and first:
            cands = [wrong[0], wrong[1], wrong[0], wrong[1]]  # no right step: the judge prefers none -> rollback
        elif p is problems[1] and k == 0 and first:
            cands = [gold, HOSTILE, wrong[0], gold]
        elif p is problems[2] and k == 0:
            cands = [gold] * 4
        else:
            cands = [gold, wrong[0], gold, wrong[-1]]
        return cands[: params.n]

    def judge_fn(a, b):
        ra, rb = " ".join(a.split()) in right, " ".join(b.split()) in right
        if ra and rb:
            return "Both steps are right; A is as good. [[A]]"
        if ra or rb:
            side = "A" if ra else "B"
            return f"Step {side} computes the needed quantity; the other step has an error. [[{side}]]"
        return "Both steps are wrong, so neither is better."

    cfg = SearchConfig(width=4, verdict="generate", max_steps=8, max_rounds=20, max_active=3)
    run_search(problems, ScriptedEngine(step_fn, judge_fn), PROMPTS, cfg, out_dir=run / "psrlm" / "it2",
               iteration=2, progress=False)  # fmt: skip
    run_srlm(problems, SolutionEngine(problems), PROMPTS, SRLMConfig(n_samples=3, n_judgments=1),
             out_dir=run / "srlm" / "it2", iteration=2, progress=False)  # fmt: skip
    results = solve_greedy(tests, SolutionEngine(tests), PROMPTS)
    write_jsonl(run / "eval" / "psrlm-M1" / "arith_test.jsonl", results)
    write_json(run / "eval" / "psrlm-M1" / "metrics.json", {"test": accuracy_summary(results)})
    return run, problems


class SolutionEngine:
    """Whole solutions for SRLM and greedy evaluation: the gold chain, or the chain with its last step wrong; the
    scorer gives 4 to a gold solution and 1 to any other."""

    def __init__(self, problems):
        self.stats = EngineStats()
        self.by_q = {p.question: p for p in problems}
        self.gold = {render_steps(p.meta["steps"]).strip() for p in problems}

    def _solution(self, p, wrong: bool) -> str:
        steps = list(p.meta["steps"])
        if wrong:
            steps[-1] = _wrong_steps(p, len(steps) - 1, p.id)[0]
        return render_steps(steps)

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            if prompt.startswith("Score 1-5."):
                body = prompt.split("\n", 1)[1].rsplit("\nScore:", 1)[0].strip()
                out.append([Completion(f"Looks {'right' if body in self.gold else 'wrong'}. Score: "
                                       f"{4 if body in self.gold else 1}", 4)] * params.n)  # fmt: skip
            else:
                p = self.by_q[re.match(r"Q: (.*)\nA:\n", prompt).group(1)]
                wrong_first = int(p.id[-1]) % 2 == 1  # odd problems: a wrong greedy answer
                out.append(
                    [Completion(self._solution(p, k == 0 and wrong_first or k == 2), 30) for k in range(params.n)]
                )
        return out


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    run, problems = make_run(root)
    summary = build_site(run)
    return run, problems, summary


def _data(site_dir: Path, key: str):
    text = (site_dir / "data" / f"{key}.js").read_text(encoding="utf-8")
    m = re.fullmatch(r'psrlmView\.put\("([^"]+)",(.*)\);\n', text, re.S)
    assert m and m.group(1) == key
    return json.loads(m.group(2))


def _details(site_dir: Path) -> list[dict]:
    meta = _data(site_dir, "meta")
    return [_data(site_dir, f"t/{i // 1000}/{i}") for i in range(meta["searches"])]


# ------------------------------------------------------------------------------------------------ builder


def test_every_step_search_replays_to_its_trace_and_its_pairs(site):
    run, problems, summary = site
    out = Path(summary["out"])
    traces = {t.problem_id: t for t in read_jsonl(run / "psrlm" / "it2" / "traces.jsonl", SearchTrace)}
    pairs = read_jsonl(run / "psrlm" / "it2" / "pairs.jsonl", PreferencePair)
    steps = [d for d in _details(out) if d["kind"] == "steps"]
    assert len(steps) == len(problems) == len(traces)
    for d in steps:
        t = traces[d["id"]]
        assert d["replay_ok"], d["id"]
        assert [s["text"] for s in d["steps"]] == t.steps
        assert len(d["rounds"]) == len(t.rounds) == t.rounds_used
        trained = [r for r in d["rounds"] if r.get("pair", {}).get("state") == "trained"]
        mine = [p for p in pairs if p.meta["problem_id"] == d["id"]]
        assert len(trained) == len(mine) == len(d["pairs"])  # every surviving pair found, and no other
        assert not [r for r in d["rounds"] if r.get("pair", {}).get("state") == "missing"]
        for r in d["rounds"]:
            if r["action"] == "accept":  # the kept step is the best-scored distinct candidate
                scores = [c["score"] for c in r["cands"]]
                assert r["cands"][r["best"]]["score"] == max(scores) and r["cands"][r["worst"]]["score"] == min(scores)
                assert r["cands"][r["best"]]["ok"] and not r["cands"][r["worst"]]["ok"]  # oracle labels, computed here
            assert sum(c["dup"] for c in r["cands"]) == r["drawn"]

    rolled = next(d for d in steps if d["id"] == problems[0].id)
    rollback = next(r for r in rolled["rounds"] if r["action"] == "rollback")
    dropped = rolled["rounds"][rollback["dropped"] - 1]
    assert dropped["pair"] == {"state": "discarded", "by": rollback["n"]} and dropped["step"] == 1
    assert dropped["discarded_by"] == rollback["n"]
    assert rollback["ctx"] == [dropped["n"]]  # the tie happened after the step it discards
    assert all(j[2] is None for j in rollback["judgments"]) and len(rollback["explanations"]) == 2
    unanimous = next(d for d in steps if d["id"] == problems[2].id)
    assert unanimous["rounds"][0]["action"] == "accept_unanimous" and "pair" not in unanimous["rounds"][0]


def test_index_rows_filters_and_oracle_counts(site):
    run, problems, summary = site
    out = Path(summary["out"])
    meta = _data(out, "meta")
    rows = _data(out, "index/0")["rows"]
    cols = {c: k for k, c in enumerate(meta["columns"])}
    assert meta["searches"] == len(rows) == 2 * len(problems) and meta["chunks"] == 1
    assert [s["method"] for s in meta["sources"]] == ["psrlm", "srlm"]
    pairs = read_jsonl(run / "psrlm" / "it2" / "pairs.jsonl", PreferencePair)
    precision = pair_precision(pairs, {p.id: p for p in problems})
    psrlm_rows = [r for r in rows if meta["sources"][r[cols["source"]]]["method"] == "psrlm"]
    assert sum(r[cols["pairs_right"]] for r in psrlm_rows) == precision["correct_wrong"]
    assert sum(r[cols["pairs_inverted"]] for r in psrlm_rows) == precision["wrong_correct"]
    assert sum(r[cols["pairs"]] for r in psrlm_rows) == len(pairs) == meta["sources"][0]["pairs"]
    traces = {t.problem_id: t for t in read_jsonl(run / "psrlm" / "it2" / "traces.jsonl", SearchTrace)}
    by_id = {p.id: p for p in problems}
    for r in psrlm_rows:
        t = traces[r[cols["problem"]]]
        assert r[cols["solved"]] == int(t.final_answer == by_id[t.problem_id].answer)
        assert r[cols["rollbacks"]] == t.rollbacks
    assert [r[cols["oracle_ok"]] for r in psrlm_rows] == [1] * len(problems)  # the judge always found the gold step
    assert next(r for r in psrlm_rows if r[cols["problem"]] == problems[0].id)[cols["mixed"]] >= 1


def test_srlm_solutions_scores_and_pair(site):
    run, problems, summary = site
    srlm = [d for d in _details(Path(summary["out"])) if d["kind"] == "solutions"]
    pairs = {p.meta["problem_id"]: p for p in read_jsonl(run / "srlm" / "it2" / "pairs.jsonl", PreferencePair)}
    assert len(srlm) == len(problems)
    for d in srlm:
        chosen = d["solutions"][d["best"]]
        assert chosen["role"] == "chosen" and chosen["score"] == 4 and chosen["correct"] and chosen["ok"]
        rejected = d["solutions"][d["worst"]]
        assert rejected["score"] == 1 and rejected["ok"] is False
        assert chosen["text"] == pairs[d["id"]].chosen and d["pair_in_file"]


def test_evaluation_samples_with_grader_verdict_and_oracle(site):
    run, _, summary = site
    out = Path(summary["out"])
    (ev,) = _data(out, "meta")["evals"]
    results = read_jsonl(run / "eval" / "psrlm-M1" / "arith_test.jsonl")
    assert (ev["model"], ev["bench"], ev["n"]) == ("psrlm-M1", "arith_test", len(results))
    assert ev["correct"] == sum(r["correct"] for r in results) == 2  # the two even problems
    rows = _data(out, "ev/0/0")["rows"]
    for row, r in zip(rows, results, strict=True):
        assert (row["response"], row["extracted"], row["correct"]) == (r["response"], r["extracted"], r["correct"])
        assert all(s["ok"] for s in row["steps"]) == r["correct"]  # a wrong last step is the only error


def test_half_finished_run_prints_one_line_per_stage(site, capsys, tmp_path):
    run, _, _ = site
    assert main(["view", str(run), "--out", str(tmp_path / "site")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^psrlm it2 +partial +psrlm/it2/traces.jsonl: 6 of 6 questions searched, \d+ pairs; psrlm-M2 "
                     r"not trained yet$", out, re.M)  # fmt: skip
    assert re.search(r"^psrlm it3 +missing +psrlm/it3/traces.jsonl: search by psrlm-M2 not started$", out, re.M)
    assert re.search(r"^srlm-M1 +missing", out, re.M) and re.search(r"^summary +missing", out, re.M)
    assert re.search(r"^eval psrlm-M1 +done", out, re.M) and re.search(r"^eval M0 +missing", out, re.M)
    assert "wrote 12 searches (6 problems) and 4 evaluation samples" in out
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "assets" / "app.js").is_file()


def test_not_a_run_and_foreign_output_are_one_line_errors(tmp_path, capsys, site):
    (tmp_path / "empty").mkdir()
    assert main(["view", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "is not a run folder" in err
    assert main(["view", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["view", str(site[0]), "--out", str(tmp_path / "mine")]) == 2
    assert "was not written by `psrlm view`" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_rebuild_replaces_the_old_site(site, tmp_path):
    run, _, _ = site
    out = tmp_path / "site"
    build_site(run, out)
    stale = out / "data" / "t" / "0" / "999.js"
    stale.write_text("old")
    build_site(run, out)
    assert not stale.exists() and (out / "data" / "t" / "0" / "0.js").is_file()
    assert not list(tmp_path.glob(".site.*"))  # no temporary folder left behind


def test_a_damaged_trace_file_is_one_line_and_the_old_site_stays(site, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(site[0], run, ignore=shutil.ignore_patterns("view"))
    assert main(["view", str(run)]) == 0
    traces = run / "psrlm" / "it2" / "traces.jsonl"
    lines = traces.read_text().splitlines(keepends=True)
    traces.write_text(lines[0] + '{"problem_id": "x", "steps": [' + "\n" + "".join(lines[2:]))
    capsys.readouterr()
    assert main(["view", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{traces}:2" in err
    assert (run / "view" / "data" / "t" / "0" / "0.js").is_file()  # the previous site is untouched
    assert not list(run.glob(".view.*"))


def test_thousands_of_searches_build_in_seconds(site, tmp_path):
    """3,000 searches (the scripted run's traces repeated under new ids): written in chunks, built quickly."""
    run, problems, _ = site
    big = tmp_path / "big"
    traces = read_jsonl(run / "psrlm" / "it2" / "traces.jsonl", SearchTrace)
    pairs = read_jsonl(run / "psrlm" / "it2" / "pairs.jsonl", PreferencePair)
    copies, new_problems, new_traces, new_pairs = 500, [], [], []
    by_id = {p.id: p for p in problems}
    for c in range(copies):
        for t in traces:
            pid = f"{t.problem_id}-{c}"
            p = by_id[t.problem_id]
            new_problems.append(type(p)(pid, p.question, p.answer, p.source, p.meta))
            new_traces.append(SearchTrace(**{**vars(t), "problem_id": pid}))
            new_pairs += [PreferencePair(x.prompt, x.chosen, x.rejected, {**x.meta, "problem_id": pid})
                          for x in pairs if x.meta["problem_id"] == t.problem_id]  # fmt: skip
    write_jsonl(big / "data" / "fresh_questions.jsonl", new_problems)
    write_jsonl(big / "psrlm" / "it2" / "traces.jsonl", new_traces)
    write_jsonl(big / "psrlm" / "it2" / "pairs.jsonl", new_pairs)
    start = time.time()
    summary = build_site(big)
    took = time.time() - start
    assert summary["searches"] == len(new_traces) == 3000
    meta = _data(Path(summary["out"]), "meta")
    assert meta["chunks"] == 3000 // CHUNK and len(_data(Path(summary["out"]), "index/2")["rows"]) == CHUNK
    assert took < 60, f"{took:.1f} s for 3,000 searches"  # about 5 s here; the bound leaves room for a busy CPU


def test_serve_binds_localhost_and_serves_the_site(site, tmp_path):
    run, _, _ = site
    proc = subprocess.Popen([sys.executable, "-m", "psrlm.cli", "view", str(run), "--out", str(tmp_path / "site"),
                             "--serve", "--port", "0"], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = None
        deadline = time.time() + 60
        while time.time() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "no serving line printed"
        with urllib.request.urlopen(url + "index.html", timeout=10) as r:
            assert r.status == 200 and b"assets/app.js" in r.read()
        with urllib.request.urlopen(url + "data/meta.js", timeout=10) as r:
            assert r.read().startswith(b'psrlmView.put("meta",')
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------------ browser

chromium = pytest.mark.skipif(find_chromium() is None, reason="no Chromium installed (apt-get install chromium) "
                              "to open the site in; the builder tests above still run")  # fmt: skip


@chromium
def test_browser_opens_the_site_clicks_into_a_search_and_reads_the_dom(site, tmp_path):
    run, problems, summary = site
    out = Path(summary["out"])
    details = {(d["kind"], d["id"]): d for d in _details(out)}
    d = details[("steps", problems[1].id)]  # the problem whose candidates include HTML
    with Browser.launch(width=1300, height=900) as b:
        b.open((out / "index.html").as_uri())
        b.wait("document.querySelectorAll('#searches tbody tr').length === 12")
        assert "Showing 1–12 of 12 searches" in b.eval("document.querySelector('.count').textContent")

        b.set_value("select[name=method]", "psrlm")  # the method filter
        b.wait("document.querySelectorAll('#searches tbody tr').length === 6")
        b.set_value("input[name=q]", problems[1].id)  # find by id
        b.wait("document.querySelectorAll('#searches tbody tr').length === 1")
        b.click("#searches tbody tr td:nth-child(3)")  # a click on the row's question opens it
        b.wait("!!document.getElementById('problem-title')")
        assert problems[1].id in b.eval("document.getElementById('problem-title').textContent")
        assert b.eval("document.querySelector('blockquote.question').textContent") == problems[1].question
        assert b.eval("document.querySelectorAll('section.round').length") == len(d["rounds"])

        first = d["rounds"][0]
        cands = b.eval("[...document.querySelectorAll('#round-1 table.cands td.text')].map(e => e.textContent)")
        assert cands == [c["text"] for c in first["cands"]] and HOSTILE in cands  # markup shown as text
        assert b.eval("document.querySelectorAll('main img').length") == 0
        assert not b.eval("[...document.querySelectorAll('main b')].some(e => e.textContent === '5')")
        assert b.eval("document.title") != "1"
        kept = b.eval("document.querySelector('#round-1 table.cands tr.best td.text').textContent")
        assert kept == first["cands"][first["best"]]["text"] == problems[1].meta["steps"][0]
        rejected = b.eval("document.querySelector('#round-1 table.cands tr.worst td.text').textContent")
        assert rejected == first["cands"][first["worst"]]["text"]
        n = len(first["cands"])
        assert b.eval("document.querySelectorAll('#round-1 table.matrix td.cell').length") == n * (n - 1)
        marks = b.eval("[...document.querySelectorAll('#round-1 table.matrix tr.best .mark')].map(e => e.textContent)")
        assert marks == ["W"] * 2 * (n - 1)  # the kept (right) step won against each wrong one in both orders

        b.click("#round-1 table.matrix tr.best td.cell")  # its explanations, on demand
        b.wait("!document.querySelector('#round-1 .judgment-detail').hidden")
        shown = b.eval("[...document.querySelectorAll('#round-1 .judgment-detail pre')].map(e => e.textContent)")
        k = next(k for k, j in enumerate(first["judgments"]) if j[0] == first["best"] and j[1] != first["best"])
        assert first["explanations"][k] in shown and len(shown) == 2
        assert "in pairs.jsonl" in b.eval("document.querySelector('#round-1 .outcome').textContent")

        b.eval(f"location.hash = '#/t/{details[('steps', problems[0].id)]['i']}'")  # the one that rolls back
        b.wait(f"(document.getElementById('problem-title') || {{}}).textContent?.includes('{problems[0].id}')")
        outcome = b.eval("[...document.querySelectorAll('section.round.warn .outcome')].map(e => e.textContent)")
        assert any("is discarded with its pair" in t for t in outcome)
        assert "discarded" in b.eval("document.querySelector('#round-1 .outcome').textContent")
        b.screenshot(tmp_path / "search.png")
        assert (tmp_path / "search.png").stat().st_size > 10_000

        b.click("#tabs a[data-tab=eval]")
        b.wait("document.querySelectorAll('#evals tbody tr').length === 1")
        assert b.eval("document.querySelector('#evals tbody td.num').textContent") == "50.0 % (2/4)"
        b.click("#evals tbody td.num a")
        b.wait("document.querySelectorAll('#samples tbody tr').length === 4")
        b.click("#samples tbody tr:nth-child(2) td:nth-child(3)")
        b.wait("!!document.querySelector('.sample .facts')")
        facts = b.eval("document.querySelector('.sample .facts').textContent")
        assert "✗ wrong" in facts and "gold" in facts
        assert b.eval("document.querySelectorAll('.sample ol.steps li.wrong').length") == 1
