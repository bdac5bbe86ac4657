"""`psrlm sweep`: what one step-wise DPO iteration does with a judge of known accuracy (science; arith only).

    psrlm sweep -c configs/demo.yaml                    # make sweep: judge accuracy 0.5..1.0, seeds 0, 1, 2
    psrlm sweep -c configs/demo.yaml --accuracies 1.0   # the upper bound: a perfect judge

For each seed, in `<out>/seed<s>/`: the run's M1 (built as `psrlm iterate` builds it, `iterate.seed` = s) searches
the first block of fresh questions once with its own judge (the method) and once per accuracy a with the oracle
judge (`search.judge=oracle`, `judge_flip` = 1 - a: on pairs with exactly one right step the judge is right with
probability a). Each search's pairs train an M2 by step-wise DPO, unchanged; every M2 and M1 are evaluated on the
validation, test and hard splits. Sampling, selection, rollback and DPO are the method's; only the verdicts differ.

Output `<out>/sweep.json` and `<out>/sweep.md`: the M1 -> M2 accuracy change per judge accuracy and split, mean and
95 % t-interval over seeds; the break-even judge accuracy (where the mean change crosses 0, interpolated); the
self-judge's own-pair accuracy (measured by the oracle on the pairs it made) beside it; `<out>/sweep.png`.
Choices made from a sweep should be read on the validation split, never on the test split.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from psrlm.configs import Config
from psrlm.run_layout import RunLayout

SPLITS = ("arith_valid", "arith_test", "arith_hard")


def _seed_config(cfg: Config, seed: int, out: Path) -> Config:
    # every problem of the three splits (arith.n_test each): a change of a few problems is the effect measured
    it = dataclasses.replace(cfg.iterate, seed=seed, methods=["psrlm"], questions=cfg.iterate.questions[:1],
                             eval_benchmarks=["arith_valid"], eval_limit=0, eval_benchmark_limit=0,
                             eval_tts=0, eval_appendix_b=0)  # fmt: skip
    return dataclasses.replace(cfg, iterate=it, paths=dataclasses.replace(cfg.paths, run_dir=str(out / f"seed{seed}")))


def _accuracies(metrics: dict) -> dict[str, float]:
    return {s: metrics["benchmarks"][s]["accuracy"] for s in SPLITS}


def _eval_rows(run_dir: Path, name: str, split: str) -> dict[str, dict]:
    """The per-problem evaluation rows of model `name` on `split` (what evaluate_benchmarks wrote), by problem id."""
    from psrlm.records import iter_json_rows

    return {row["problem_id"]: row for _, row in iter_json_rows(RunLayout(run_dir).eval_rows(name, split))}


def right_prefix(run_dir: Path, name: str) -> dict[str, float]:
    """Per split, the mean share of a problem's gold steps that the model's greedy solution gets right before its
    first wrong step (step oracle): a step-level reading of the same evaluation, finer than final accuracy."""
    from psrlm.records import Problem, read_jsonl
    from psrlm.steps import split_steps
    from psrlm.tasks.arith import label_step

    out = {}
    for split in SPLITS:
        problems = {p.id: p for p in read_jsonl(RunLayout(run_dir).data_file(split), Problem)}
        shares = []
        for pid, row in _eval_rows(run_dir, name, split).items():
            problem, steps = problems[pid], split_steps(row["response"])
            right = 0
            while right < len(steps) and label_step(problem, steps[:right], steps[right]).correct:
                right += 1
            shares.append(min(1.0, right / max(1, len(problem.meta["equations"]))))
        out[split] = sum(shares) / max(1, len(shares))
    return out


def answer_changes(run_dir: Path, before: str, after: str) -> dict[str, float]:
    """Over the three splits: the share of problems whose greedy solution changed from `before` to `after`, and how
    many problems went from wrong to right (gained) and right to wrong (lost)."""
    changed = gained = lost = n = 0
    for split in SPLITS:
        a, b = _eval_rows(run_dir, before, split), _eval_rows(run_dir, after, split)
        for pid, ra in a.items():
            rb = b[pid]
            n += 1
            changed += ra["response"] != rb["response"]
            gained += rb["correct"] and not ra["correct"]
            lost += ra["correct"] and not rb["correct"]
    return {"changed": changed / max(1, n), "gained": gained, "lost": lost, "problems": n}


def own_pair_accuracy(manifest) -> float | None:
    """Among the pairs a judge made with exactly one right step (oracle-labelled), the share it got right."""
    pp = manifest.metrics.get("pair_precision") or {}
    cw, wc = pp.get("correct_wrong", 0), pp.get("wrong_correct", 0)
    return cw / (cw + wc) if cw + wc else None


def run_seed(
    cfg: Config, seed: int, accuracies: list[float], out: Path, self_arm: bool = True, fresh: bool = False
) -> dict:
    """One seed: M1, its self-judged M2 (unless not `self_arm`), an oracle-judged M2 per accuracy; all evaluated.
    Resumable; `fresh` rebuilds what was made with other settings instead of stopping."""
    from psrlm.evaluation import evaluate_model
    from psrlm.folders import FolderLock
    from psrlm.m0 import ensure_m0
    from psrlm.questions import prepare_data, question_blocks
    from psrlm.runfolder import Run
    from psrlm.stages import ensure_m1, ensure_policy_eft, run_iteration

    scfg = _seed_config(cfg, seed, out)
    run = Run(scfg, fresh=fresh)
    with FolderLock(run.dir, "sweep"):
        prepare_data(run)
        m0 = ensure_m0(run)
        ensure_policy_eft(run, m0)
        m1 = ensure_m1(run, "psrlm", m0)
        block = question_blocks(run)[0]
        result = {"M1": _accuracies(evaluate_model(run, "psrlm-M1", m1, judge=False)),
                  "M1_prefix": right_prefix(run.dir, "psrlm-M1")}  # fmt: skip
        if self_arm:
            m2 = run_iteration(run, "psrlm", 2, m1, block)
            manifest = run.load_manifest("psrlm-M2")
            result["self"] = {"accuracy": _accuracies(evaluate_model(run, "psrlm-M2", m2, judge=False)),
                              "prefix": right_prefix(run.dir, "psrlm-M2"),
                              "changes": answer_changes(run.dir, "psrlm-M1", "psrlm-M2"),
                              "own_pair_accuracy": own_pair_accuracy(manifest),
                              "pairs": manifest.metrics["search"]["pairs"]}  # fmt: skip
        ties = scfg.search.oracle_ties  # its own folders: a run with other tie handling never resumes into these
        for acc in accuracies:
            key = f"oracle{acc:.2f}"
            label = key if ties == "tie" else f"{key}-{ties}"
            search = dataclasses.replace(scfg.search, judge="oracle", judge_flip=round(1.0 - acc, 6))
            arun = Run(dataclasses.replace(scfg, search=search), fresh=fresh)
            path = run_iteration(arun, "psrlm", 2, m1, block, label=label)
            man = arun.load_manifest(f"{label}-M2")
            result[key] = {"judge_accuracy": acc,
                           "accuracy": _accuracies(evaluate_model(arun, f"{label}-M2", path, judge=False)),
                           "prefix": right_prefix(arun.dir, f"{label}-M2"),
                           "changes": answer_changes(arun.dir, "psrlm-M1", f"{label}-M2"),
                           "own_pair_accuracy": own_pair_accuracy(man), "pairs": man.metrics["search"]["pairs"],
                           "pair_precision": (man.metrics.get("pair_precision") or {}).get("precision")}  # fmt: skip
    return result


def summarise(per_seed: dict[int, dict], accuracies: list[float]) -> dict:
    from psrlm.confidence import mean_ci

    rows = {}
    with_self = all("self" in r for r in per_seed.values())  # --oracle-only sweeps have no self arm
    for key in ["self"] * with_self + [f"oracle{a:.2f}" for a in accuracies]:
        row: dict = {}
        for split in SPLITS:
            deltas = [r[key]["accuracy"][split] - r["M1"][split] for r in per_seed.values()]
            mean, ci = mean_ci(deltas)
            row[split] = {"per_seed": deltas, "mean": mean, "ci95": ci}
            steps = [r[key]["prefix"][split] - r["M1_prefix"][split] for r in per_seed.values()]
            mean, ci = mean_ci(steps)
            row[f"{split}_prefix"] = {"per_seed": steps, "mean": mean, "ci95": ci}
        own = [r[key]["own_pair_accuracy"] for r in per_seed.values() if r[key]["own_pair_accuracy"] is not None]
        row["own_pair_accuracy"] = {"per_seed": own, "mean": mean_ci(own)[0] if own else None}
        row["pairs"] = [r[key]["pairs"] for r in per_seed.values()]
        row["changes"] = [r[key]["changes"] for r in per_seed.values()]
        rows[key] = row
    oracle = [rows[f"oracle{a:.2f}"] for a in accuracies]
    measured = [(r["own_pair_accuracy"]["mean"], r) for r in oracle if r["own_pair_accuracy"]["mean"] is not None]
    return {"seeds": sorted(per_seed), "rows": rows,
            # in the units of the sweep (verdict accuracy) and of the pairs trained on (what the self judge is
            # measured in: selection over many verdicts makes pairs more accurate than single verdicts)
            "break_even": {s: break_even(accuracies, [r[s]["mean"] for r in oracle]) for s in SPLITS},
            "break_even_pairs": {s: break_even([x for x, _ in measured], [r[s]["mean"] for _, r in measured])
                                 for s in SPLITS},
            "excludes_zero": {s: [k for k, r in rows.items() if not math.isnan(r[s]["ci95"])
                                  and abs(r[s]["mean"]) > r[s]["ci95"]] for s in SPLITS}}  # fmt: skip


def break_even(accuracies: list[float], means: list[float]) -> float | None:
    """The lowest judge accuracy at which the mean change reaches 0, linearly interpolated between measured points
    (None: it never does in the range measured; the lowest accuracy when it is already >= 0 there)."""
    points = sorted(zip(accuracies, means, strict=True))
    if points and points[0][1] >= 0:
        return points[0][0]
    for (a0, m0), (a1, m1) in zip(points, points[1:], strict=False):
        if m0 < 0 <= m1:
            return a0 + (a1 - a0) * (-m0) / (m1 - m0)
    return None


def _arm(key: str) -> str:
    return "self (the method)" if key == "self" else f"oracle, verdict accuracy {float(key[6:]):.1f}"


def format_table(summary: dict) -> str:
    def cell(e):
        ci = "" if math.isnan(e["ci95"]) else f" ± {e['ci95']:.3f}"
        return f"{e['mean']:+.3f}{ci}"

    lines = ["| judge | accuracy of the pairs trained on (oracle-measured) | pairs per seed | valid Δ | test Δ | "
             "hard Δ |", "|---|---|---|---|---|---|"]  # fmt: skip
    for key, row in summary["rows"].items():
        own = row["own_pair_accuracy"]["mean"]
        name = _arm(key)
        lines.append(f"| {name} | {'-' if own is None else f'{own:.3f}'} | {', '.join(map(str, row['pairs']))} | "
                     + " | ".join(cell(row[s]) for s in SPLITS) + " |")  # fmt: skip

    def fmt(be):
        return ", ".join(f"{s[6:]} {'not reached' if be[s] is None else f'{be[s]:.2f}'}" for s in SPLITS)

    lines += ["", f"Δ = M2 − M1 accuracy, mean ± half-width of the 95 % t-interval over seeds {summary['seeds']}. "
                  "The judge's accuracy is per verdict (1 − judge_flip); the pairs it makes are more accurate than "
                  "its verdicts, because each pair is the best and worst of many verdicts.",
              "", f"Break-even (mean change reaches 0), in verdict accuracy: {fmt(summary['break_even'])}; in the "
                  f"accuracy of the pairs trained on: {fmt(summary['break_even_pairs'])}."]  # fmt: skip
    sig = summary["excludes_zero"]
    lines.append("Intervals that exclude 0: " + ("; ".join(f"{s[6:]}: {', '.join(_arm(k) for k in sig[s])}"
                                                           for s in SPLITS if sig[s]) or "none")
                 + (". Where no oracle arm's interval excludes 0, the break-even points are where noisy means "
                    "cross 0, not a measured threshold." if not any(k != "self" for s in SPLITS for k in sig[s])
                    else "."))  # fmt: skip
    lines += ["", "Step level, the same evaluations read step by step: change in the share of each problem's gold "
                  "steps solved right before the first wrong one (step oracle), M2 − M1:", "",
              "| judge | valid Δ | test Δ | hard Δ |", "|---|---|---|---|"]  # fmt: skip
    for key, row in summary["rows"].items():
        lines.append(f"| {_arm(key)} | " + " | ".join(cell(row[f"{s}_prefix"]) for s in SPLITS) + " |")
    lines += ["", "What changed: greedy solutions of the three splits that differ between M1 and M2, and problems M2 "
                  "solves that M1 did not (gained) or no longer solves (lost), per seed:", "",
              "| judge | solutions changed | gained | lost |", "|---|---|---|---|"]  # fmt: skip
    for key, row in summary["rows"].items():
        name = _arm(key)
        ch = row["changes"]
        changed = ", ".join(f"{c['changed']:.2f}" for c in ch)
        gained = ", ".join(str(c["gained"]) for c in ch)
        lost = ", ".join(str(c["lost"]) for c in ch)
        lines.append(f"| {name} | {changed} | {gained} | {lost} |")
    return "\n".join(lines)


def plot(summary: dict, accuracies: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psrlm.records import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    rows = summary["rows"]
    ci = lambda e: 0 if math.isnan(e["ci95"]) else e["ci95"]  # noqa: E731
    # x: the accuracy of the pairs each judge made (oracle-measured), the one unit the self judge has too
    arms = [k for k in [f"oracle{a:.2f}" for a in accuracies] if rows[k]["own_pair_accuracy"]["mean"] is not None]
    xs = [rows[k]["own_pair_accuracy"]["mean"] for k in arms]
    for i, (split, color) in enumerate(zip(SPLITS, ("tab:green", "tab:blue", "tab:red"), strict=True)):
        dx = (i - 1) * 0.004  # side by side, so the intervals stay readable
        ax.errorbar([x + dx for x in xs], [rows[k][split]["mean"] for k in arms], yerr=[ci(rows[k][split]) for k in arms],
                    marker="o", capsize=3, color=color, label=f"{split[6:]}, oracle judge")  # fmt: skip
        own = rows["self"]["own_pair_accuracy"]["mean"] if "self" in rows else None
        if own is not None:
            ax.errorbar([own + dx], [rows["self"][split]["mean"]], yerr=[ci(rows["self"][split])], marker="*",
                        markersize=11, capsize=3, color=color, ls="none", label=f"{split[6:]}, self judge")  # fmt: skip
    groups: list[tuple[float, list[str]]] = []  # arms whose pairs are about as accurate share one label
    for k, x in sorted(zip(arms, xs, strict=True), key=lambda t: t[1]):
        if groups and x - groups[-1][0] < 0.03:
            groups[-1][1].append(f"{float(k[6:]):.1f}")
        else:
            groups.append((x, [f"{float(k[6:]):.1f}"]))
    for x, labels in groups:
        ax.annotate(f"verdicts {', '.join(labels)}", (x, ax.get_ylim()[0]), fontsize=7, ha="center", va="bottom")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("accuracy of the pairs trained on (pairs with exactly one right step, oracle-measured)")
    ax.set_ylabel("M1 → M2 accuracy change")
    ax.set_title("one step-wise DPO iteration vs judge quality")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run_sweep(
    cfg: Config, accuracies: list[float], seeds: list[int], out: Path, self_arm: bool = True, fresh: bool = False
) -> dict:
    from psrlm.records import atomic_write_text, write_json

    per_seed = {s: run_seed(cfg, s, accuracies, out, self_arm, fresh) for s in seeds}
    summary = {**summarise(per_seed, accuracies), "per_seed": per_seed, "accuracies": accuracies,
               "oracle_ties": cfg.search.oracle_ties, "questions": cfg.iterate.questions[0]}  # fmt: skip
    write_json(out / "sweep.json", summary)
    text = format_table(summary)
    head = (
        f"# Judge-quality sweep (oracle judge; science only)\n\n{summary['questions']} questions per judge and "
        f"seed; oracle ties: {summary['oracle_ties']} (search.oracle_ties)\n\n"
    )
    atomic_write_text(out / "sweep.md", head + text + "\n")
    plot(summary, accuracies, out / "sweep.png")
    return summary
