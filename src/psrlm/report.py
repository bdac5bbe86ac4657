"""`psrlm report RUN_DIR [RUN_DIR ...]`: paper-style tables and plots from finished runs, and the multi-seed
science check.

One run (read from its manifests and `eval/` folder, so later `psrlm eval` results show up too):
  Table 1  accuracy per benchmark per iteration, PSRLM and SRLM       Table 2  M1 -> Mn change
  Table 3  judge accuracy (generated verdicts + A/B consistency; logit-read soft verdicts)
  Table 4  step number and step length per benchmark                  Table 5  greedy vs test-time search
  Appendix B: pairwise step judging vs solution scoring; PPD pair precision per iteration (oracle, arith)
  plots in <run>/report_plots/: accuracy, judge accuracy, steps and pair precision vs iteration
Several runs of the same recipe with different `iterate.seed`: for each split, the PSRLM and SRLM M1 -> Mn change
per seed, their mean with a 95 % t-interval across seeds, and the PSRLM - SRLM difference, so the question "does
PSRLM Mn beat M1, and beat SRLM's change?" gets a number with its uncertainty.
"""

from __future__ import annotations

import contextlib
import math
import re
import statistics
from pathlib import Path

from psrlm.confidence import mean_ci
from psrlm.records import atomic_write_text, read_json, save_figure, write_json
from psrlm.run_layout import RunLayout
from psrlm.summary_table import fmt, format_table, judge_label


def load_summary(run_dir: Path) -> dict:
    path = RunLayout(run_dir).summary
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `psrlm iterate` for {run_dir} first")
    return read_json(path)


def last_iteration(models: dict, method: str) -> str | None:
    its = sorted(it for m, it in map(_parse_name, models) if m == method and it is not None)
    return f"{method}-M{its[-1]}" if its and its[-1] > 1 else None


def deltas(summary: dict, split: str) -> dict[str, float]:
    """M1 -> last-iteration accuracy change per method on one split."""
    models = summary["models"]
    out = {}
    for method in ("psrlm", "srlm"):
        last = last_iteration(models, method)
        if last and f"{method}-M1" in models:
            first, end = models[f"{method}-M1"][split]["accuracy"], models[last][split]["accuracy"]
            if first is not None and end is not None:  # nothing measured on a side: no change to report
                out[method] = end - first
    return out


def science_check(run_dirs: list[Path]) -> dict:
    summaries = [{"models": collect(d)["models"]} for d in run_dirs]  # current results only, never stale ones
    result: dict = {"runs": [str(d) for d in run_dirs]}
    for split in ("test", "hard"):
        per_seed = [deltas(s, split) for s in summaries]
        entry = {}
        for key in ("psrlm", "srlm"):
            vals = [d[key] for d in per_seed if key in d]
            entry[key] = {"per_seed": vals, "mean": mean_ci(vals)[0], "ci95": mean_ci(vals)[1]}
        diff = [d["psrlm"] - d["srlm"] for d in per_seed if {"psrlm", "srlm"} <= set(d)]
        entry["psrlm_minus_srlm"] = {"per_seed": diff, "mean": mean_ci(diff)[0], "ci95": mean_ci(diff)[1]}
        result[split] = entry
    precision, own = {}, {}
    for s in summaries:
        for name, m in s["models"].items():
            pp = (m.get("manifest") or {}).get("pair_precision") or {}
            if pp.get("precision") is not None:
                precision.setdefault(name, []).append(pp["precision"])
            if pp.get("correct_wrong", 0) + pp.get("wrong_correct", 0):
                own.setdefault(name, []).append(pp["correct_wrong"] / (pp["correct_wrong"] + pp["wrong_correct"]))
    result["pair_precision"] = {
        k: {"per_seed": v, "mean": statistics.mean(v), "own_pair_judge_accuracy": own.get(k)}
        for k, v in precision.items()
    }
    return result


def format_science(result: dict) -> str:
    lines = ["| split | PSRLM M1→Mn | SRLM M1→Mn | PSRLM − SRLM |", "|---|---|---|---|"]
    for split in ("test", "hard"):
        cells = []
        for key in ("psrlm", "srlm", "psrlm_minus_srlm"):
            e = result[split][key]
            vals = ", ".join(f"{v:+.3f}" for v in e["per_seed"])
            ci = "" if math.isnan(e["ci95"]) else f" ± {e['ci95']:.3f}"
            cells.append(f"{e['mean']:+.3f}{ci} ({vals})")
        lines.append(f"| {split} | " + " | ".join(cells) + " |")
    if result["pair_precision"]:
        lines += [
            "",
            "| model | PPD pair precision (oracle), per seed | own-pair judge accuracy, per seed |",
            "|---|---|---|",
        ]
        for name, e in result["pair_precision"].items():
            own = e.get("own_pair_judge_accuracy") or []
            own_cell = f"{statistics.mean(own):.3f} ({', '.join(f'{v:.3f}' for v in own)})" if own else "-"
            lines.append(f"| {name} | {e['mean']:.3f} ({', '.join(f'{v:.3f}' for v in e['per_seed'])}) | {own_cell} |")
        lines += ["", "Own-pair judge accuracy: among the pairs with exactly one right step (oracle), the share where "
                  "the model's judge chose the right one; 0.5 is chance."]  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- one run: collect


def _parse_name(name: str) -> tuple[str | None, int | None]:
    """ "psrlm-M3" -> ("psrlm", 3); "M0" -> (None, 0); a name `psrlm eval --name` chose -> (None, None)."""
    if name == "M0":
        return None, 0
    m = re.fullmatch(r"(.+)-M(\d+)", name)
    return (m.group(1), int(m.group(2))) if m else (None, None)


def _iteration(name: str) -> int | None:
    return _parse_name(name)[1]


def _method(name: str) -> str | None:
    return _parse_name(name)[0]


def collect(run_dir: Path) -> dict:
    """Everything the report shows for one run: {models: {name: metrics}, stale: {name: why}, tts, appendix_b,
    timings_s, wall_s}.

    Model metrics come from `eval/<name>.json` (written by `psrlm iterate` / `psrlm eval`), per-benchmark results
    from `eval/<name>/summary.json`, pair precision and search statistics from `manifests/<name>.json`; a run
    with only a `summary.json` (older runs) still renders. Results that no longer belong to the run's current
    models (see `staleness`) are left out of `models` and listed in `stale` with the reason."""
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    summary = read_json(layout.summary) if layout.summary.exists() else {}
    names = set(summary.get("models", {}))
    names |= {p.stem for p in layout.manifests.glob("*.json")}
    names |= {p.stem for p in layout.evals.glob("*.json") if p.stem != "appendix_b"}  # older runs
    names |= {p.parent.name for p in layout.evals.glob("*/summary.json")}  # `psrlm eval` and iterate
    if not names:
        raise FileNotFoundError(f"{run_dir}: no summary.json, manifests/ or eval/ results: run `psrlm iterate` or "
                                "`psrlm eval` for it first")  # fmt: skip
    stale = staleness(run_dir, names, summary.get("models", {}))
    models: dict = {}
    for name in sorted(names, key=lambda n: (_method(n) or "", _iteration(n) is None, _iteration(n) or 0, n)):
        if name in stale:
            continue
        m = dict(summary.get("models", {}).get(name, {}))
        for ev in (layout.legacy_eval(name), layout.eval_metrics(name)):
            if ev.exists():
                m.update(read_json(ev))
        bench = layout.eval_summary(name)
        benchmarks = dict(m.get("benchmarks") or {})
        if bench.exists():
            benchmarks.update(read_json(bench))
        for split in ("test", "hard"):  # runs from before per-benchmark files: the arith splits under test/hard
            if split in m and f"arith_{split}" not in benchmarks:
                benchmarks[f"arith_{split}"] = m[split]
        m["benchmarks"] = benchmarks
        man = layout.manifest(name)
        if man.exists():
            metrics = read_json(man).get("metrics", {})
            m["manifest"] = {"pair_precision": metrics.get("pair_precision"), "search": metrics.get("search"),
                             "judge": metrics.get("judge")}  # fmt: skip
        judge = layout.eval_judge(name)  # written by `psrlm eval`
        if judge.exists():
            m.update(read_json(judge))
        tts = layout.eval_tts(name)
        if tts.exists():
            m["tts"] = read_json(tts)
        models[name] = m
    appendix_b = layout.appendix_b
    ab = read_json(appendix_b) if appendix_b.exists() else None
    if ab and {Path(ab.get("pair_judge", "")).name, Path(ab.get("scorer", "")).name} & set(stale):
        stale["appendix B"] = "made with a model that is stale"
        ab = None
    return {
        "models": models,
        "stale": stale,
        "appendix_b": ab,
        "timings_s": summary.get("timings_s", {}),
        "wall_s": summary.get("wall_s"),
    }


def staleness(run_dir: Path, names: set[str], summarised: dict) -> dict[str, str]:
    """{name: why} for every result that no longer belongs to the run's current models, judged only on evidence
    the run holds (a run from before these records shows as it is):
    - a model whose manifest names its folder, and that folder is gone (moved to replaced/ by --fresh);
    - a model whose parent's manifest is gone, or records other settings than the fingerprint its child was made
      from (the parent was rebuilt), and everything downstream of a stale model;
    - an evaluation whose folder records a model (path and hash) that is gone or has other weights now;
    - a number in summary.json whose evaluation folder is gone (in a run whose evaluations record their model)."""
    from psrlm.folders import SETTINGS_NAME, fingerprint, model_identity

    stale: dict[str, str] = {}
    gone: set[str] = set()  # models that are not the run's current ones (their children are not either)
    layout = RunLayout(run_dir)
    manifests = {n: read_json(layout.manifest(n)) for n in names if layout.manifest(n).exists()}
    stamped = any(layout.evals.glob(f"*/{SETTINGS_NAME}"))
    for name in sorted(names, key=lambda n: (_iteration(n) or 0, n)):  # parents before their children
        method, it = _parse_name(name)
        man = manifests.get(name)
        if man is not None and man.get("model_path") and not layout.model(name).is_dir():
            stale[name] = "its model is gone from models/ (moved to replaced/ by --fresh?)"
            gone.add(name)
            continue
        parent_fp = ((man or {}).get("settings") or {}).get("parent")
        if parent_fp and method and it and it > 1:
            parent = f"{method}-M{it - 1}"
            why = ("was replaced" if parent not in manifests
                   else "was rebuilt since, with other settings"
                   if fingerprint(manifests[parent].get("settings") or {}) != parent_fp
                   else "is not current" if parent in gone else None)  # fmt: skip
            if why:
                stale[name] = f"its parent {parent} {why}"
                gone.add(name)
                continue
        stamp = layout.evaluation(name) / SETTINGS_NAME
        if stamp.exists():
            record = read_json(stamp)
            sha = (record.get("settings") or {}).get("model.sha256")
            known = (record.get("extra") or {}).get("model") or {}
            own = layout.model(name)
            model = own if own.is_dir() else Path(known["path"]) if known.get("path") else None
            if sha and model is not None:
                if not model.is_dir():
                    stale[name] = f"its evaluation belongs to {model}, which is gone"
                elif model_identity(model, known) != sha:
                    stale[name] = f"its evaluation was made from other weights than {model} holds now"
        elif stamped and name in summarised:
            stale[name] = "its evaluation was moved aside (replaced/) and not redone yet"
    return stale


def _benchmark_names(models: dict) -> list[str]:
    from psrlm.benchmark_names import ALL_BENCHMARKS

    seen = {b for m in models.values() for b in m.get("benchmarks", {})}
    return [b for b in ALL_BENCHMARKS if b in seen] + sorted(seen - set(ALL_BENCHMARKS))


def _table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(
        ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]
    )


# ---------------------------------------------------------------------------------------- one run: tables


def _common_n(models: dict, b: str) -> int | None:
    """The number of problems every model was evaluated on for benchmark `b`, or None when they differ."""
    ns = {m["benchmarks"][b].get("n") for m in models.values() if b in m["benchmarks"]}
    return ns.pop() if len(ns) == 1 and None not in ns else None


def _bench_header(models: dict, b: str) -> str:
    n = _common_n(models, b)
    return f"{b} (n varies)" if n is None else f"{b} (n={n})"


def table_accuracy(models: dict) -> str:
    """Table 1: greedy accuracy per benchmark, with the mean over benchmarks (only for models evaluated on all)."""
    benches = _benchmark_names(models)
    rows = []
    for name, m in models.items():
        accs = [m["benchmarks"].get(b, {}).get("accuracy") for b in benches]
        avg = statistics.mean(accs) if accs and None not in accs else None
        rows.append([shots_label(name, m, "benchmarks")] + [fmt(a) for a in accs] + [fmt(avg)])
    return _table(["model", *(_bench_header(models, b) for b in benches), "avg"], rows)


def table_deltas(models: dict) -> str:
    """Table 2: the M1 -> Mn change per benchmark and method."""
    benches = _benchmark_names(models)
    rows = []
    for method in ("psrlm", "srlm"):
        last = last_iteration(models, method)
        first = models.get(f"{method}-M1")
        if not last or not first:
            continue
        cells = []
        for b in benches:
            a, z = (
                first["benchmarks"].get(b, {}).get("accuracy"),
                models[last]["benchmarks"].get(b, {}).get("accuracy"),
            )
            cells.append("-" if a is None or z is None else f"{z - a:+.3f}")
        rows.append([f"{method}-M1 → {last}", *cells])
    return _table(["change", *benches], rows)


def shots_label(name: str, m: dict, what: str) -> str:
    """`name`, marked "(3-shot)" where its `what` ("benchmarks" or "judge") numbers were asked 3-shot
    (iterate.m0_three_shot; results from before the setting: both as `few_shot` says)."""
    few = m.get("few_shot") if what == "benchmarks" else m.get("judge_few_shot", m.get("few_shot"))
    return f"{name} (3-shot)" if few else name


def table_judge(models: dict) -> str:
    """Table 3: judge accuracy on the EFT test split (M0 3-shot as iterate.m0_three_shot says, later models
    zero-shot); `context` counts the judgments whose prompt did not fit the model's context (counted wrong)."""
    rows = []
    for name, m in models.items():
        j, soft = m.get("judge") or {}, m.get("judge_soft") or {}
        rows.append([shots_label(name, m, "judge"), fmt(j.get("judge_accuracy")), fmt(j.get("consistency")),
                     fmt(j.get("no_verdict_rate")), str(j.get("context_skipped", "-")), fmt(soft.get("accuracy")),
                     fmt(soft.get("single_order_accuracy")), fmt(soft.get("position_bias"))])  # fmt: skip
    head = ["model", "judge acc (generated)", "A/B consistency", "no verdict", "skipped (context)",
            "soft acc (both orders)", "soft acc (one order)", "P(first) bias"]  # fmt: skip
    return _table(head, rows)


def table_judge_kinds(models: dict) -> str | None:
    """Table 3 by EFT error kind: the soft judge (both orders) where it was measured, else generated verdicts."""
    kinds = sorted({k for m in models.values() for key in ("judge_soft", "judge")
                    for k in ((m.get(key) or {}).get("by_kind") or {})})  # fmt: skip
    if not kinds:
        return None
    rows = []
    for name, m in models.items():
        soft = (m.get("judge_soft") or {}).get("by_kind")
        by_kind, how = (soft, "soft") if soft else ((m.get("judge") or {}).get("by_kind"), "generated")
        if by_kind:
            rows.append([name, how, *(fmt((by_kind.get(k) or {}).get("accuracy")) for k in kinds)])
    n = {k: max(((m.get(key) or {}).get("by_kind") or {}).get(k, {}).get("n", 0)
                for m in models.values() for key in ("judge_soft", "judge")) for k in kinds}  # fmt: skip
    return _table(["model", "verdict", *(f"{k} (n={n[k]})" for k in kinds)], rows)


def table_steps(models: dict) -> str:
    """Table 4: steps per solution and tokens per step, per benchmark."""
    benches = _benchmark_names(models)
    rows = []
    for name, m in models.items():
        cells = []
        for b in benches:
            s = m["benchmarks"].get(b)
            tok = s.get("mean_step_tokens") if s else None
            if not s or s.get("mean_steps") is None:
                cells.append("-")
            else:
                cells.append(
                    f"{s['mean_steps']:.2f} / " + (f"{tok:.1f}" if tok else fmt(s.get("mean_step_chars"), ".0f") + "c")
                )
        rows.append([name, *cells])
    return _table(["model", *(f"{b} steps / len" for b in benches)], rows)


def table_tts(models: dict) -> str | None:
    """Tables 5/9: greedy vs test-time search with the model's own step judging, per benchmark and over all, the
    compute each spent, and the rules the search followed (inference: a tie takes its step; training: rollback)."""
    rows = []
    for name, m in models.items():
        t = m.get("tts")
        if not t:
            continue
        rules = t.get("rules") or {}
        how = "training" if rules.get("ties", "rollback") == "rollback" else "inference"
        parts = {**(t.get("benchmarks") or {}), "all": t} if t.get("benchmarks") else {t.get("benchmark", "-"): t}
        for bench, b in parts.items():
            g, s = b["greedy"], b["tts"]
            rows.append([name, bench, how, str(b["n"]), fmt(g["accuracy"]), fmt(s["accuracy"]),
                         f"{g['tokens_per_problem']:.0f}", f"{s['tokens_per_problem']:.0f}",
                         f"{s['judge_calls_per_problem']:.1f}", f"{b['time_ratio']:.1f}×"])  # fmt: skip
    if not rows:
        return None
    head = ["model", "benchmark", "search rules", "problems", "greedy acc", "TTS acc", "greedy tokens/problem",
            "TTS tokens/problem", "judge calls/problem", "TTS time / greedy time"]  # fmt: skip
    return _table(head, rows)


def table_appendix_b(ab: dict | None) -> str | None:
    if not ab:
        return None
    names = {"pairwise": "pairwise, generated verdict", "pairwise_soft": "pairwise, verdict from logits",
             "scoring": "solution scoring"}  # fmt: skip
    rows = [[names[kind], fmt(ab[kind]["agreement"]), fmt(ab[kind]["consistency"]), fmt(ab[kind]["no_preference_rate"])]
            for kind in names if ab.get(kind)]  # fmt: skip
    both = (ab.get("pairwise_soft") or {}).get("both_orders_agreement")
    summed = (
        ""
        if both is None
        else f" Logit verdicts summed over both orders (how the soft search reads them): {both:.3f}."
    )
    return (
        f"{ab['n']} EFT test items; pairwise judge {Path(ab['pair_judge']).name}, scorer {Path(ab['scorer']).name}. "
        f"Consistency: pairwise under the A/B swap, scoring under resampling.{summed}\n\n"
        + _table(["judging", "agreement with ground truth", "consistency", "no preference"], rows)
    )


def table_pairs(models: dict) -> str | None:
    """Preference pairs each iteration trained on. Oracle columns (arith): precision = chosen right and rejected
    wrong; both wrong = neither step right; own-pair judge accuracy = among pairs with exactly one right step, the
    share where the judge chose it (0.5 = chance: the judge cannot tell its own steps apart)."""
    rows = []
    for name, m in models.items():
        man = m.get("manifest") or {}
        search, prec = man.get("search") or {}, man.get("pair_precision") or {}
        if not search:
            continue
        cw, wc, labelled = prec.get("correct_wrong"), prec.get("wrong_correct"), prec.get("labelled")
        own = cw / (cw + wc) if cw is not None and wc is not None and cw + wc else None
        both_wrong = prec["both_wrong"] / labelled if labelled and "both_wrong" in prec else None
        rows.append([judge_label(name, man), str(search.get("problems", "-")), str(search.get("pairs", "-")), fmt(prec.get("precision")),
                     fmt(both_wrong), fmt(own), fmt(search.get("tie_rate")), fmt(search.get("rollback_rate")),
                     fmt(search.get("no_verdict_rate"))])  # fmt: skip
    if not rows:
        return None
    head = ["trained model (pairs from its parent)", "questions", "pairs", "pair precision (oracle)", "both wrong",
            "own-pair judge accuracy", "tie rate", "rollback rate", "no-verdict rate"]  # fmt: skip
    return _table(head, rows) + "\n\n" + " ".join(table_pairs.__doc__.split())


# ----------------------------------------------------------------------------------------- one run: plots


def _series(models: dict, method: str, value) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for name, m in models.items():
        if _iteration(name) is not None and (name == "M0" or _method(name) == method):
            y = value(m)
            if y is not None:
                xs.append(_iteration(name))
                ys.append(y)
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    return [xs[i] for i in order], [ys[i] for i in order]


def plot_run(collected: dict, out_dir: Path) -> list[Path]:
    """PNG plots vs iteration (M0 = iteration 0, shared by both methods); returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = collected["models"]
    out_dir.mkdir(parents=True, exist_ok=True)
    styles = {"psrlm": dict(color="tab:blue", marker="o", label="PSRLM"), "srlm": dict(color="tab:orange", marker="s", label="SRLM")}  # fmt: skip
    written = []

    def save(fig, name):
        fig.tight_layout()
        save_figure(fig, out_dir / name, dpi=110)
        plt.close(fig)
        written.append(out_dir / name)

    def panel(ax, value, title, ylabel):
        for method, style in styles.items():
            xs, ys = _series(models, method, value)
            if len(xs) > (1 if xs and xs[0] == 0 else 0):
                ax.plot(xs, ys, **style)
        ax.set_title(title)
        ax.set_xlabel("iteration (0 = M0)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)

    benches = _benchmark_names(models)
    if not benches:  # nothing evaluated yet: no accuracy, judge or step plots to draw
        return written
    fig, axes = plt.subplots(1, len(benches), figsize=(4.2 * len(benches), 3.4), squeeze=False)
    for ax, b in zip(axes[0], benches, strict=True):
        n = _common_n(models, b)
        n_label = "" if n is None else f" (n={n})"
        panel(
            ax, lambda m, b=b: m["benchmarks"].get(b, {}).get("accuracy"), f"greedy accuracy: {b}{n_label}", "accuracy"
        )
        ax.set_ylim(bottom=0)
    axes[0][0].legend()
    save(fig, "accuracy_vs_iteration.png")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))

    def generated(m):  # a model that never writes a verdict (M0, SRLM's scorer) has no pairwise accuracy to plot
        j = m.get("judge") or {}
        return None if j.get("no_verdict_rate", 0) >= 0.999 else j.get("judge_accuracy")

    panel(axes[0], generated, "judge accuracy (generated verdicts)", "accuracy")
    panel(
        axes[1],
        lambda m: (m.get("judge_soft") or {}).get("accuracy"),
        "judge accuracy (soft, both orders)",
        "accuracy",
    )
    for ax in axes:
        ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="chance")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    save(fig, "judge_vs_iteration.png")

    b0 = benches[0] if benches else None
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    panel(axes[0], lambda m: m["benchmarks"].get(b0, {}).get("mean_steps"), f"steps per solution: {b0}", "steps")
    panel(axes[1], lambda m: m["benchmarks"].get(b0, {}).get("mean_step_tokens") or m["benchmarks"].get(b0, {}).get("mean_step_chars"),
          f"step length: {b0}", "tokens per step (chars for older runs)")  # fmt: skip
    for ax in axes:
        ax.set_ylim(bottom=0)
    axes[0].legend()
    save(fig, "steps_vs_iteration.png")

    xs, ys, ns = [], [], []
    for name, m in models.items():
        prec = ((m.get("manifest") or {}).get("pair_precision") or {}).get("precision")
        if _method(name) == "psrlm" and prec is not None:
            xs.append(_iteration(name))
            ys.append(prec)
            ns.append(((m.get("manifest") or {}).get("search") or {}).get("pairs", 0))
    if xs:
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        ax.plot(xs, ys, **styles["psrlm"])
        for x, y, n in zip(xs, ys, ns, strict=True):
            ax.annotate(f"{n} pairs", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
        ax.set_title("PPD pair precision (oracle)")
        ax.set_xlabel("model trained on the pairs")
        ax.set_xticks(xs, [f"M{x}" for x in xs])
        ax.set_ylabel("chosen right and rejected wrong")
        ax.set_ylim(0, max(0.2, max(ys) * 1.3))
        ax.margins(x=0.15)
        ax.grid(alpha=0.3)
        save(fig, "pair_precision_vs_iteration.png")
    return written


def report_run(run_dir: Path, plots_dir: Path | None = None) -> str:
    """The markdown report of one run; with `plots_dir`, PNG plots go there (linked relative to its parent,
    where the markdown file is written)."""
    c = collect(run_dir)
    models = c["models"]
    oracle = [judge_label(n, m.get("manifest")) for n, m in models.items() if judge_label(n, m.get("manifest")) != n]
    warning = (f"**Science run: {len(oracle)} model(s) trained on pairs judged by the arith oracle, not by the model "
               f"itself: {', '.join(oracle)}. That is not the self-rewarding method.**\n") if oracle else ""  # fmt: skip
    evaluated = any(m.get("benchmarks") for m in models.values())
    nothing = "" if evaluated else ("No model of this run has been evaluated yet: `psrlm iterate` evaluates each "
                                    "model once it is trained, `psrlm eval` evaluates one now.\n")  # fmt: skip
    parts = [f"# Report: {run_dir}\n", warning, nothing, "## Table 1: greedy accuracy per benchmark\n", table_accuracy(models),
             "\n## Table 2: M1 → Mn change\n", table_deltas(models),
             "\n## Table 3: judge accuracy on the EFT test split\n", table_judge(models)]  # fmt: skip
    if kinds := table_judge_kinds(models):
        parts += ["\n## Table 3b: judge accuracy by EFT error kind\n", kinds]
    parts += ["\n## Table 4: steps per solution / tokens per step\n", table_steps(models)]
    for title, text in (("Tables 5/9: greedy vs test-time search", table_tts(models)),
                        ("Appendix B: step-wise pairwise judging vs solution scoring", table_appendix_b(c["appendix_b"])),
                        ("PPD pairs per iteration", table_pairs(models))):  # fmt: skip
        if text:
            parts += [f"\n## {title}\n", text]
    if c["stale"]:
        parts += ["\n## Stale results (not in the tables above)\n",
                  _table(["result", "why it is stale"], [[n, why] for n, why in c["stale"].items()]),
                  "\nRerun `psrlm iterate` with the run's recipe to rebuild and evaluate them."]  # fmt: skip
    if c["timings_s"]:
        timings = ", ".join(f"{k} {v:.0f}s" for k, v in c["timings_s"].items())
        parts.append(f"\nwall {c['wall_s'] or 0:.0f}s — {timings}")
    if plots_dir is not None:
        files = plot_run(c, Path(plots_dir))
        parts += ["\n## Plots\n"] + [f"![{p.stem}]({Path(plots_dir).name}/{p.name})" for p in files]
        if (Path(plots_dir) / "figure2_data.png").exists():  # `psrlm figure2` / `psrlm report --figure2`
            parts += ["\n## Figure 2: training-data distribution (t-SNE)\n",
                      f"![figure2_data]({Path(plots_dir).name}/figure2_data.png)"]  # fmt: skip
    return "\n".join(parts) + "\n"


def report(run_dirs: list[Path], out: Path | None = None, plots: bool = True) -> str:
    """One run: its full report (written to <run>/report.md unless `out`). Several: each run's summary table
    and the science check across them (written to `out` only)."""
    run_dirs = [Path(d) for d in run_dirs]
    if len(run_dirs) == 1:
        out = Path(out) if out else RunLayout(run_dirs[0]).report
        with _writing_into(run_dirs[0], out):
            text = report_run(run_dirs[0], plots_dir=out.parent / f"{out.stem}_plots" if plots else None)
            atomic_write_text(out, text)
        return text
    parts = []
    for d in run_dirs:
        load_summary(d)  # a folder that holds no run is named at once
        parts.append(f"## {d}\n\n{format_table(collect(d)['models'])}\n")
    sc = science_check(run_dirs)
    parts.append("## Science check: M1 → Mn accuracy change, mean ± 95 % CI over seeds\n\n" + format_science(sc))
    text = "\n".join(parts) + "\n"
    if out:
        with contextlib.ExitStack() as held:
            for d in run_dirs:
                held.enter_context(_writing_into(d, Path(out)))
            write_json(Path(out).with_suffix(".json"), sc)
            atomic_write_text(Path(out), text)
    return text


@contextlib.contextmanager
def _writing_into(run_dir: Path, out: Path):
    """The run's writer lock while a report is written inside it (report.md, report_plots/): a run another
    process is writing (`psrlm iterate`) is not written into; one line names the holder. Outside it: no lock."""
    from psrlm.folders import FolderError, FolderLock

    try:
        Path(out).resolve().relative_to(Path(run_dir).resolve())
    except ValueError:
        yield
        return
    lock = FolderLock(run_dir, "report")
    try:
        lock.acquire()
    except FolderError as e:
        raise FolderError(f"{e}; or write the report elsewhere: psrlm report {run_dir} --out FILE") from None
    try:
        yield
    finally:
        lock.release()
