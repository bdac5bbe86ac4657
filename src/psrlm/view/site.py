"""The site `psrlm view` writes: the run's searches and evaluations as small data files beside a static page.

    out/index.html, out/assets/{app.js,style.css}     the page (package data: psrlm/view/static/)
    out/data/meta.js                                  run name, stages, search sources, evaluations, index layout
    out/data/index/<k>.js                             the compact list of searches, CHUNK rows per file
    out/data/t/<i // 1000>/<i>.js                     one search (one problem of one method and iteration)
    out/data/ev/<k>/index.js, out/data/ev/<k>/<j>.js  one model on one benchmark: its rows, then EVAL_CHUNK samples
                                                      per file

Every data file is a script that hands its object to `psrlmView.put(key, data)` (key = its path under data/
without `.js`). The page loads one by adding a <script> tag, which a browser allows from file:// where it blocks
fetch(): the site opens by double-click, with no server, and still loads only what is looked at.

Everything the page shows is computed here, once: the replay of every search round (its context, which step it
kept, which pair it made and whether a later rollback discarded that pair), the oracle's label of every step where
the domain has one (arith: `tasks.arith.label_step`), and whether each final answer is right (`grading`).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path

from psrlm.judge import unique_candidates
from psrlm.records import PreferencePair, Problem, RecordError, SearchTrace, from_dict, iter_json_rows, iter_jsonl
from psrlm.report_tables import model_order
from psrlm.run_layout import RunLayout
from psrlm.steps import final_answer, split_steps
from psrlm.view.runfolder import Stage, check_run_dir, recorded_config, run_stages, search_dirs

CHUNK = 1000  # searches per index file: the list starts drawing after the first
EVAL_CHUNK = 100  # evaluation samples per detail file
QUESTION_CHARS = 160  # of each question in the list (the full text is in the search's own file)
MARKER = ".psrlm-view"  # an output folder holding this file was written by psrlm view and may be replaced
STATIC = ("index.html", "app.js", "style.css")
INDEX_COLUMNS = ["i", "source", "problem", "question", "solved", "finished", "pairs", "rounds", "rollbacks",
                 "oracle_ok", "mixed", "pairs_right", "pairs_inverted", "stop"]  # fmt: skip
PROBLEM, SOLVED, ORACLE_OK = (INDEX_COLUMNS.index(c) for c in ("problem", "solved", "oracle_ok"))


def _norm(text: str) -> str:
    return " ".join(text.split())


class _Problems:
    """Problem records by id, from the run's data files: the searched questions and the arith splits."""

    def __init__(self, layout: RunLayout):
        self.by_id: dict[str, Problem] = {}
        # the searched questions (fresh pool, the frontier ladder's pools) and the held-out splits; a file in another
        # layout (arith_solutions.jsonl: the pool as a NuminaMath-style problem/solution source) holds no records
        fresh = layout.fresh_questions
        for path in [fresh, *sorted(layout.data.glob("arith_*.jsonl"))]:
            if path.is_file():
                for n, (i, obj) in enumerate(iter_json_rows(path)):
                    if n == 0 and path != fresh and "question" not in obj:
                        break
                    p = from_dict(Problem, obj, f"{path}:{i}")
                    self.by_id.setdefault(p.id, p)

    def get(self, pid: str) -> Problem | None:
        return self.by_id.get(pid)


def _oracle(problem: Problem | None):
    """The step oracle of the problem's domain as `label(prev_steps, step) -> StepLabel`, or None (no domain oracle,
    or the problem is unknown). Labels are remembered: a search asks about the same step in the same context for
    its candidates, its kept steps and its pairs."""
    if problem is None or "equations" not in problem.meta or "givens" not in problem.meta:
        return None
    from psrlm.tasks.arith import label_step

    memo: dict = {}

    def label(prev: list[str], step: str):
        key = (tuple(prev), step)
        if key not in memo:
            memo[key] = label_step(problem, list(prev), step)
        return memo[key]

    return label


def _label(oracle, prev: list[str], step: str) -> dict:
    if oracle is None:
        return {}
    lab = oracle(prev, step)
    return {"ok": lab.correct, "why": lab.reason}


def _labels(oracle, steps: list[str]) -> list[dict]:
    return [{"text": s, **_label(oracle, steps[:k], s)} for k, s in enumerate(steps)]


class _Grades:
    """Final answers against gold, through `grading.Grader`: plain answers are decided in-process, anything that
    needs math-verify goes to its time-bounded pool (started only then)."""

    def __init__(self, include_percentage: bool):
        self.include_percentage = include_percentage
        self._grader = None

    def grade(self, pairs: list[tuple[str, str | None]]) -> list[bool]:
        if not pairs:
            return []
        if self._grader is None:
            from psrlm.grading import Grader

            self._grader = Grader(include_percentage=self.include_percentage)
        return self._grader.grade(pairs)

    def close(self) -> None:
        if self._grader is not None:
            self._grader.close()


class _Writer:
    def __init__(self, root: Path):
        self.root = root
        self.files = 0
        self.bytes = 0

    def put(self, key: str, data) -> None:
        """data/<key>.js: a script that hands `data` to the page (U+2028/9 escaped: JSON allows them raw in
        strings, older JavaScript engines did not)."""
        body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        body = body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        text = f"psrlmView.put({json.dumps(key)},{body});\n"
        path = self.root / "data" / f"{key}.js"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        self.files += 1
        self.bytes += len(text)


# ----------------------------------------------------------------------------------------- step searches


def replay_rounds(rounds: list[dict], oracle, pair_keys: set[tuple[int, str]]) -> dict:
    """Walk a step search's rounds as `search._select` made them: the context each round saw (as the numbers of
    the rounds whose kept steps it holds), which step it kept, which (best, worst) pair it made, and which rollback
    later discarded that step and pair. Candidates get the oracle's labels against that context.

    `oracle`: _oracle(problem), or None. `pair_keys`: (step, chosen text) of the problem's pairs in pairs.jsonl; a
    pair that survives the replay but is not there is marked "missing" (a pairs file that lost lines).
    """
    stack: list[tuple[str, int]] = []  # (kept step, round number): the solution as it stands
    out = []
    for n, r in enumerate(rounds, start=1):
        context = [s for s, _ in stack]
        action = r.get("action", "")
        cands = r.get("candidates") or []
        uniques, index = unique_candidates(cands)
        dup = [index.count(u) for u in range(len(uniques))]
        scores = r.get("scores") or []
        rec: dict = {"n": n, "step": r.get("step", len(stack) + 1), "action": action, "ctx": [k for _, k in stack],
                     "drawn": len(cands), "judge_calls": r.get("judge_calls", 0),
                     "no_verdicts": r.get("no_verdicts", 0),
                     "judgments": r.get("judgments"), "explanations": r.get("explanations")}  # fmt: skip
        rec["cands"] = [{"text": u, "dup": dup[k], "score": scores[k] if k < len(scores) else None,
                         **_label(oracle, context, u)} for k, u in enumerate(uniques)]  # fmt: skip
        if action == "accept":
            best, worst = r.get("best"), r.get("worst")
            rec.update(best=best, worst=worst, pair={"state": "made"})
            stack.append((uniques[best], n))
        elif action in ("accept_unanimous", "accept_all_right") and uniques:
            rec["best"] = 0
            stack.append((uniques[0], n))
        elif action == "accept_tie" and uniques:  # test-time search: a tie takes its step, with no pair
            rec["best"] = r.get("best", 0)
            stack.append((uniques[rec["best"]], n))
        elif action == "rollback" and stack:
            _, dropped = stack.pop()
            rec["dropped"] = dropped
            prev = out[dropped - 1]
            prev["discarded_by"] = n  # the step this round kept no longer stands
            if "pair" in prev:
                prev["pair"] = {"state": "discarded", "by": n}
        out.append(rec)
    for _, k in stack:  # the pairs the search kept: they should all be in pairs.jsonl
        rec = out[k - 1]
        if "pair" in rec:
            key = (rec["step"], _norm(rec["cands"][rec["best"]]["text"]))
            rec["pair"] = {"state": "trained" if key in pair_keys else "missing"}
    return {"rounds": out, "kept": [s for s, _ in stack], "kept_rounds": [k for _, k in stack]}


def _pair_rows(pairs: list[PreferencePair], oracle) -> tuple[list[dict], int, int]:
    """The problem's pairs as the page shows them, and how many the oracle calls right / inverted."""
    rows, right, inverted = [], 0, 0
    for p in pairs:
        prev = list(p.meta.get("prev_steps") or [])
        row = {"step": p.meta.get("step"), "chosen": p.chosen.strip(), "rejected": p.rejected.strip(),
               "chosen_score": p.meta.get("chosen_score"), "rejected_score": p.meta.get("rejected_score")}  # fmt: skip
        if oracle is not None:
            if row["step"] is None:  # an SRLM pair: whole solutions
                c = all(lab["ok"] for lab in _labels(oracle, split_steps(row["chosen"])))
                w = all(lab["ok"] for lab in _labels(oracle, split_steps(row["rejected"])))
            else:
                c, w = oracle(prev, row["chosen"]).correct, oracle(prev, row["rejected"]).correct
            row.update(chosen_ok=c, rejected_ok=w)
            right += c and not w
            inverted += w and not c
        rows.append(row)
    return rows, right, inverted


def _step_search(trace: SearchTrace, oracle, pairs: list[PreferencePair]) -> dict:
    keys = {(p.meta.get("step"), _norm(p.chosen)) for p in pairs}
    replay = replay_rounds(trace.rounds, oracle, keys)
    steps = _labels(oracle, trace.steps)
    for s, k in zip(steps, replay["kept_rounds"], strict=False):
        s["round"] = k
    mixed = sum(1 for r in replay["rounds"] if len({c.get("ok") for c in r["cands"]} & {True, False}) == 2)
    return {"kind": "steps", "steps": steps, "rounds": replay["rounds"],
            "replay_ok": [_norm(s) for s in replay["kept"]] == [_norm(s) for s in trace.steps],
            "mixed": mixed if oracle else None}  # fmt: skip


def _solution_scoring(trace: SearchTrace, problem: Problem | None, oracle, pairs: list[PreferencePair],
                      grades: _Grades) -> dict:  # fmt: skip
    """SRLM: whole solutions and their scores; chosen/rejected as srlm.py picks them (ties go to the first)."""
    r = trace.rounds[0] if trace.rounds else {}
    sols, scores = r.get("candidates") or [], r.get("scores") or []
    answers = [final_answer(split_steps(s)) for s in sols]
    gold = problem.answer if problem else None
    right = grades.grade([(gold, a) for a in answers]) if gold is not None else [None] * len(sols)
    scored = [(m, i) for i, m in enumerate(scores) if m is not None]
    best = worst = None
    if len(scored) >= 2 and max(scored)[0] > min(scored)[0]:
        best = max(scored, key=lambda t: (t[0], -t[1]))[1]
        worst = min(scored, key=lambda t: (t[0], t[1]))[1]
    out = []
    for i, s in enumerate(sols):
        steps = _labels(oracle, split_steps(s))
        out.append({"text": s, "steps": steps, "answer": answers[i], "correct": right[i],
                    "score": scores[i] if i < len(scores) else None,
                    "ok": all(x["ok"] for x in steps) and bool(steps) if oracle else None,
                    "role": "chosen" if i == best else "rejected" if i == worst else None})  # fmt: skip
    kinds = {x["ok"] for x in out if x["ok"] is not None}
    return {"kind": "solutions", "solutions": out, "steps": _labels(oracle, trace.steps), "best": best,
            "worst": worst, "pair_in_file": bool(pairs), "mixed": int(kinds == {True, False}) if oracle else None}  # fmt: skip


def _source_traces(folder: Path) -> tuple[list[SearchTrace], dict[str, list[PreferencePair]]]:
    traces = sorted(iter_jsonl(folder / "traces.jsonl", SearchTrace), key=lambda t: t.problem_id)  # not commit order
    pairs: dict[str, list[PreferencePair]] = defaultdict(list)
    if (folder / "pairs.jsonl").is_file():
        for p in iter_jsonl(folder / "pairs.jsonl", PreferencePair):
            pairs[str(p.meta.get("problem_id"))].append(p)
    return traces, pairs


def _searched_by(layout: RunLayout, label: str, it: int) -> str:
    """The model that searched <label>/it<n>/: the parent its model's manifest names (the oracle arm's oracle-M2 was
    searched by psrlm-M1), else <label>-M(n-1)."""
    manifest = layout.manifest(f"{label}-M{it}")
    parent = json.loads(manifest.read_text()).get("parent_model") if manifest.is_file() else None
    return Path(parent).name if parent else f"{label}-M{it - 1}"


def _sources(run_dir: Path) -> list[dict]:
    """Every folder of traces: <method>/itN/ (searched by <method>-M(N-1)) and eval/<model>/tts/ (test-time)."""
    layout = RunLayout(run_dir)
    out = [{"method": m, "it": it, "by": _searched_by(layout, m, it), "path": str(d.relative_to(run_dir))}
           for m, it, d in search_dirs(run_dir)]  # fmt: skip
    models = sorted((p.name for p in layout.evals.glob("*") if layout.tts_traces(p.name).is_file()), key=model_order)
    for name in models:
        n = name.rsplit("-M", 1)[1] if "-M" in name else ""
        out.append({"method": "tts", "it": int(n) if n.isdigit() else 0, "by": name,
                    "path": str(layout.tts_search(name).relative_to(run_dir))})  # fmt: skip
    return out


def _trace_record(i: int, src_no: int, trace: SearchTrace, problem: Problem | None,
                  pairs: list[PreferencePair], solved: bool | None, grades: _Grades) -> tuple[dict, list]:  # fmt: skip
    oracle = _oracle(problem)
    step_shaped = any("step" in r or "action" in r for r in trace.rounds) or not trace.rounds
    body = (_step_search(trace, oracle, pairs) if step_shaped
            else _solution_scoring(trace, problem, oracle, pairs, grades))  # fmt: skip
    pair_rows, right, inverted = _pair_rows(pairs, oracle)
    stats = {k: getattr(trace, k) for k in ("rounds_used", "rollbacks", "ties", "judge_calls", "no_verdicts",
                                            "gen_tokens", "capped")}  # fmt: skip
    detail = {"i": i, "source": src_no, "id": trace.problem_id,
              "question": problem.question if problem else None, "answer": problem.answer if problem else None,
              "oracle": oracle is not None, "final": trace.final_answer, "solved": solved,
              "finished": trace.finished, "stop": trace.stop_reason, "stats": stats, "pairs": pair_rows, **body}  # fmt: skip
    oks = [s["ok"] for s in body["steps"] if "ok" in s]
    oracle_ok = int(bool(oks) and all(oks)) if detail["oracle"] else None
    question = problem.question if problem else ""
    question = question if len(question) <= QUESTION_CHARS else question[: QUESTION_CHARS - 1].rstrip() + "…"
    row = [i, src_no, trace.problem_id, question, None if solved is None else int(solved), int(trace.finished),
           len(pairs), trace.rounds_used, trace.rollbacks, oracle_ok, body["mixed"],
           right if detail["oracle"] else None, inverted if detail["oracle"] else None, trace.stop_reason]  # fmt: skip
    return detail, row


# ------------------------------------------------------------------------------------------- evaluation


def _eval_files(run_dir: Path) -> list[tuple[str, str, Path]]:
    layout = RunLayout(run_dir)
    out = []
    for model in sorted((p.name for p in layout.evals.glob("*") if p.is_dir()), key=model_order):
        for path in sorted(layout.evaluation(model).glob("*.jsonl")):
            out.append((model, path.stem, path))
    return out


def _eval_rows(path: Path) -> list[dict] | None:
    """A benchmark result file's rows (evaluate.SolveResult as dicts); None for a file of another kind, whose first
    row lacks the fields; a later row without them means a damaged file: an error naming the line."""
    rows = []
    for line, obj in iter_json_rows(path):
        missing = [f for f in ("problem_id", "response", "correct") if f not in obj]
        if missing and not rows:
            return None
        if missing:
            raise RecordError(f"{path}:{line}: an evaluation row without {missing} (the file is damaged)")
        rows.append(obj)
    return rows


def _write_eval(writer: _Writer, k: int, model: str, bench: str, path: Path, rows: list[dict],
                problems: _Problems) -> dict:  # fmt: skip
    index = []
    for j in range(0, max(1, len(rows)), EVAL_CHUNK):
        chunk = []
        for n, r in enumerate(rows[j : j + EVAL_CHUNK], start=j):
            problem = problems.get(str(r["problem_id"]))
            oracle = _oracle(problem)
            steps = _labels(oracle, split_steps(r["response"]))
            ok = int(bool(steps) and all(s["ok"] for s in steps)) if oracle else None
            index.append([n, r["problem_id"], int(bool(r["correct"])), r.get("extracted"), r.get("gold"),
                          r.get("finish_reason", ""), r.get("tokens", 0), len(steps), ok])  # fmt: skip
            chunk.append({"n": n, "id": r["problem_id"], "question": problem.question if problem else None,
                          "prompt": r.get("prompt", ""), "response": r["response"], "steps": steps,
                          "extracted": r.get("extracted"), "gold": r.get("gold"), "correct": bool(r["correct"]),
                          "finish": r.get("finish_reason", ""), "tokens": r.get("tokens", 0)})  # fmt: skip
        if rows:
            writer.put(f"ev/{k}/{j // EVAL_CHUNK}", {"rows": chunk})
    writer.put(f"ev/{k}/index", {"rows": index, "chunk": EVAL_CHUNK})
    correct = sum(r[2] for r in index)
    return {"k": k, "model": model, "bench": bench, "path": f"eval/{model}/{path.name}", "n": len(index), "correct": correct,
            "oracle": any(r[8] is not None for r in index)}  # fmt: skip


# ------------------------------------------------------------------------------------------------- site


def _include_percentage(run_dir: Path) -> bool:
    cfg = recorded_config(run_dir) or {}
    return bool((cfg.get("grading") or {}).get("include_percentage", True))


def _fresh_folder(out: Path) -> Path:
    """A new empty folder beside `out` to build in; `out` itself is replaced only when the build finished."""
    if out.exists() and not (out / MARKER).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} exists and was not written by `psrlm view`: give another --out")
    tmp = out.with_name(f".{out.name}.building-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def build_site(run_dir: Path, out: Path | None = None, stages: list[Stage] | None = None) -> dict:
    """Write the viewer of `run_dir` to `out` (default <run_dir>/view/); returns what it wrote and which stages
    of the run are missing (`stages`: run_stages(run_dir), when the caller has them already)."""
    start = time.time()
    run_dir = Path(run_dir).resolve()
    check_run_dir(run_dir)
    out = Path(out).resolve() if out else run_dir / "view"
    stages = stages if stages is not None else run_stages(run_dir)
    problems = _Problems(RunLayout(run_dir))
    tmp = _fresh_folder(out)
    try:
        summary = _write_site(tmp, run_dir, stages, problems)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the old site, if any, stays as it was
        raise
    _swap_in(tmp, out)
    summary.update(out=str(out), index=str(out / "index.html"), seconds=round(time.time() - start, 2))
    return summary


def _write_site(tmp: Path, run_dir: Path, stages: list[Stage], problems: _Problems) -> dict:
    writer = _Writer(tmp)
    grades = _Grades(_include_percentage(run_dir))
    try:
        sources, rows = _write_searches(writer, run_dir, problems, grades)
        evals, skipped = [], []
        for model, bench, path in _eval_files(run_dir):
            results = _eval_rows(path)
            if results is None:
                skipped.append(str(path.relative_to(run_dir)))
                continue
            evals.append(_write_eval(writer, len(evals), model, bench, path, results, problems))
    finally:
        grades.close()
    for c in range(0, len(rows), CHUNK):
        writer.put(f"index/{c // CHUNK}", {"rows": rows[c : c + CHUNK]})
    meta = {"run": run_dir.name, "run_dir": str(run_dir), "built": time.strftime("%Y-%m-%d %H:%M:%S"),
            "stages": [vars(s) for s in stages], "sources": sources, "columns": INDEX_COLUMNS,
            "searches": len(rows), "chunks": -(-len(rows) // CHUNK), "evals": evals,
            "oracle": any(r[ORACLE_OK] is not None for r in rows) or any(e["oracle"] for e in evals)}  # fmt: skip
    writer.put("meta", meta)
    static = resources.files("psrlm.view") / "static"
    (tmp / "assets").mkdir()
    for name in STATIC:
        target = tmp / ("index.html" if name == "index.html" else f"assets/{name}")
        target.write_bytes((static / name).read_bytes())
    (tmp / MARKER).write_text(f"written by psrlm view from {run_dir}\n", encoding="utf-8")
    return {"searches": len(rows), "problems": len({r[PROBLEM] for r in rows}), "sources": len(sources),
            "eval_samples": sum(e["n"] for e in evals), "files": writer.files, "mb": round(writer.bytes / 1e6, 2),
            "missing": [s.line() for s in stages if s.state != "done"], "skipped": skipped}  # fmt: skip


def _write_searches(writer: _Writer, run_dir: Path, problems: _Problems, grades: _Grades) -> tuple[list, list]:
    sources, rows = [], []
    for src_no, src in enumerate(_sources(run_dir)):
        traces, pairs = _source_traces(run_dir / src["path"])
        golds = [problems.get(t.problem_id) for t in traces]
        graded = grades.grade([(p.answer, t.final_answer) for p, t in zip(golds, traces, strict=True) if p])
        it_graded = iter(graded)
        n_pairs = 0
        for t, problem in zip(traces, golds, strict=True):
            solved = next(it_graded) if problem else None
            i = len(rows)
            detail, row = _trace_record(i, src_no, t, problem, pairs.get(t.problem_id, []), solved, grades)
            writer.put(f"t/{i // 1000}/{i}", detail)
            rows.append(row)
            n_pairs += len(pairs.get(t.problem_id, []))
        sources.append({**src, "traces": len(traces), "pairs": n_pairs,
                        "solved": sum(1 for r in rows[-len(traces):] if r[SOLVED]) if traces else 0})  # fmt: skip
    return sources, rows
