"""`psrlm frontier`: can the loop improve a model when it searches at the model's frontier? (science; arith only)

    psrlm frontier -c configs/frontier.yaml                       # make frontier: every arm, seeds 0, 1, 2
    psrlm frontier -c configs/frontier.yaml --arms oracle,rft --seeds 0

For each seed, in `<out>/seed<s>/`: M1 as `psrlm iterate` builds it (`iterate.seed` = s), then one chain of
iterations per arm, each with `iterate.schedule: frontier`: before every iteration the arm's current model solves the
difficulty ladder's probes (arith.levels) and searches the next unused questions of the easiest level it does not
master (pass rate at most the band's top). Arms (each a chain of its own models, `<arm>-M2..`):

  self     PSRLM, the method: the model judges its own steps; step-wise DPO on its pairs
  oracle   the upper bound: the same search with the step oracle as a perfect judge (search.judge=oracle,
           judge_flip 0, oracle_ties accept); step-wise DPO on its pairs
  rft      control: the oracle arm's search, then SFT (rft.*) on its complete solutions whose answer is right
           instead of DPO (rejection-sampling fine-tuning, what Lee et al. 2025 train on)
  outcome  control: SRLM's shape with the oracle as judge (srlm.judge=oracle): whole right vs wrong solutions of
           the same M1, plain DPO
  srlm     the baseline: SRLM from its own M1 (self-scored whole solutions)

Arms on the same level draw the same questions (each chain's offset into a level's pool counts its own earlier
iterations), so a control differs from the method in one thing. Every model is evaluated greedily on the two validation splits
(in-distribution and at the hard split's difficulty), the test and the hard split. `<out>/frontier.json`, `frontier.md` (per arm and iteration: accuracy per split with 95 %
t-intervals over seeds, the change from M1, the level searched and its pass rate, pairs or solutions trained on,
pair precision and the self judge's accuracy on its own one-right pairs by error kind) and `frontier.png` (hard-split
accuracy against iteration, one band per arm). Choices are read on the validation split, never on test or hard.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections import Counter
from pathlib import Path

from psrlm.configs import Config, check_for_frontier
from psrlm.run_layout import RunLayout

SPLITS = ("arith_valid", "arith_valid_hard", "arith_test", "arith_hard")
ARMS = ("self", "oracle", "rft", "outcome", "srlm")
ARM_LABELS = {
    "self": "PSRLM (self judge)",
    "oracle": "PSRLM (ORACLE judge)",
    "rft": "SFT on right solutions (ORACLE)",
    "outcome": "outcome DPO (ORACLE)",
    "srlm": "SRLM (self scorer)",
}


def arm_setup(cfg: Config, arm: str) -> tuple[Config, str, str, str]:
    """(config, method, M1 name, training) of an arm: only the judge and the training differ from the method."""
    if arm == "self":
        return cfg, "psrlm", "psrlm-M1", "dpo"
    if arm in ("oracle", "rft"):
        from psrlm.stages import oracle_config  # the one definition of the oracle arm's search (iterate's too)

        return oracle_config(cfg), "psrlm", "psrlm-M1", "rft" if arm == "rft" else "dpo"
    if arm == "outcome":
        return dataclasses.replace(cfg, srlm=dataclasses.replace(cfg.srlm, judge="oracle")), "srlm", "psrlm-M1", "dpo"
    if arm == "srlm":
        return cfg, "srlm", "srlm-M1", "dpo"
    raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")


def _seed_config(cfg: Config, seed: int, out: Path) -> Config:
    it = dataclasses.replace(cfg.iterate, seed=seed, schedule="frontier", eval_benchmarks=["arith_valid", "arith_valid_hard"],
                             eval_limit=0, eval_benchmark_limit=0, eval_tts=0, eval_appendix_b=0)  # fmt: skip
    return dataclasses.replace(cfg, iterate=it, paths=dataclasses.replace(cfg.paths, run_dir=str(out / f"seed{seed}")))


def _accuracies(metrics: dict) -> dict[str, float]:
    return {s: metrics["benchmarks"][s]["accuracy"] for s in SPLITS}


def error_kind(reason: str) -> str:
    """The step oracle's reason for a wrong step, as a kind of error."""
    for prefix, kind in (("arithmetic", "arithmetic slip"), ("uses a value", "value not established"),
                         ("computes a quantity", "unneeded quantity"), ("repeats", "repeated result"),
                         ("boxes the answer before", "premature answer"), ("boxed", "wrong answer boxed"),
                         ("no computation", "no computation")):  # fmt: skip
        if reason.startswith(prefix):
            return kind
    return "other"


def own_pairs_by_kind(run_dir: Path, label: str, it: int) -> dict[str, dict]:
    """Of the pairs the judge of M_{it-1} made with exactly one right step (oracle-labelled), per kind of the wrong
    step's error: how many, and the share where the judge chose the right one."""
    from psrlm.records import PreferencePair, Problem, read_jsonl, read_problems
    from psrlm.tasks.arith import label_step

    layout = RunLayout(run_dir)
    pairs_path = layout.pairs(label, it)
    if not pairs_path.exists():
        return {}
    problems: dict[str, Problem] = {}
    for f in sorted(layout.data.glob("arith_level*.jsonl")) + [layout.fresh_questions]:
        if not f.name.endswith("_probe.jsonl"):
            problems.update({p.id: p for p in read_problems(f)})
    counts: dict[str, Counter] = {}
    for pair in read_jsonl(pairs_path, PreferencePair):
        prob = problems.get(pair.meta.get("problem_id", ""))
        if prob is None:
            continue
        prev = pair.meta.get("prev_steps", [])
        chosen, rejected = label_step(prob, prev, pair.chosen), label_step(prob, prev, pair.rejected)
        if chosen.correct == rejected.correct:
            continue
        kind = error_kind((rejected if chosen.correct else chosen).reason)
        counts.setdefault(kind, Counter())["right" if chosen.correct else "wrong"] += 1
    return {k: {"n": c["right"] + c["wrong"], "accuracy": c["right"] / (c["right"] + c["wrong"])}
            for k, c in sorted(counts.items(), key=lambda kv: -sum(kv[1].values()))}  # fmt: skip


def run_seed(
    cfg: Config, seed: int, arms: list[str], out: Path, fresh: bool = False, iterations: dict[str, int] | None = None
) -> dict:
    """One seed: data, M0, the M1s the arms start from, each arm's chain of frontier iterations (`iterations[arm]`
    of them, default one per block of iterate.questions); all evaluated. Resumable (every stage is); `fresh`
    rebuilds what was made with other settings (moved to replaced/) instead of stopping."""
    from psrlm.evaluation import evaluate_model
    from psrlm.folders import FolderLock
    from psrlm.m0 import ensure_m0
    from psrlm.questions import iteration_questions, prepare_data
    from psrlm.runfolder import Run
    from psrlm.stages import ensure_m1, ensure_policy_eft, run_iteration

    scfg = _seed_config(cfg, seed, out)
    run = Run(scfg, fresh=fresh)
    blocks = len(scfg.iterate.questions)
    result: dict = {"M1": {}, "arms": {}}
    with FolderLock(run.dir, "frontier"):
        prepare_data(run)
        m0 = ensure_m0(run)
        ensure_policy_eft(run, m0)
        m1s = {}
        for m1_name in dict.fromkeys(arm_setup(scfg, a)[2] for a in arms):
            m1s[m1_name] = ensure_m1(run, m1_name.split("-")[0], m0)
            result["M1"][m1_name] = _accuracies(evaluate_model(run, m1_name, m1s[m1_name], judge=False))
        for arm in arms:
            acfg, method, m1_name, training = arm_setup(scfg, arm)
            arun = Run(acfg, fresh=fresh)
            parent, rows = m1s[m1_name], []
            for it in range(2, (iterations or {}).get(arm, blocks) + 2):
                questions, schedule = iteration_questions(arun, arm, it, parent)
                # RFT's first search is the oracle arm's own (same M1, questions and judge): read, not repeated
                shared = "oracle" if arm == "rft" and it == 2 and "oracle" in arms else None
                parent = run_iteration(arun, method, it, parent, questions, label=arm, schedule=schedule,
                                       training=training, search_label=shared)  # fmt: skip
                man = arun.load_manifest(f"{arm}-M{it}")
                search = man.metrics.get("search") or {}
                rows.append({
                    "iteration": it,
                    "accuracy": _accuracies(evaluate_model(arun, f"{arm}-M{it}", parent, judge=False)),
                    "level": schedule["level"], "pass_rates": schedule["pass_rates"],
                    "pairs": search.get("pairs", 0),
                    "rft_solutions": (man.metrics.get("rft") or {}).get("solutions"),
                    "pair_precision": (man.metrics.get("pair_precision") or {}).get("precision"),
                    "own_pairs": own_pairs_by_kind(run.dir, arm, it) if arm == "self" else {},
                    "mixed_rounds": _mixed_rounds(run.dir, shared or arm, it, questions) if method == "psrlm" else None,
                })  # fmt: skip
            result["arms"][arm] = {"m1": m1_name, "iterations": rows}
    return result


def _mixed_rounds(run_dir: Path, label: str, it: int, questions) -> dict:
    """Of a search's judged rounds, how many mixed right and wrong candidates (oracle-labelled): the rounds a
    judge can learn from."""
    from psrlm.judge import unique_candidates
    from psrlm.records import SearchTrace, read_jsonl
    from psrlm.tasks.arith import label_step

    by_id = {q.id: q for q in questions}
    rounds = mixed = 0
    for t in read_jsonl(RunLayout(run_dir).traces(label, it), SearchTrace):
        prob, prev = by_id.get(t.problem_id), []
        if prob is None:
            continue
        for r in t.rounds:
            uniques = unique_candidates(r.get("candidates") or [])[0]
            if len(uniques) > 1:
                labels = {label_step(prob, prev, c).correct for c in uniques}
                rounds += 1
                mixed += labels == {True, False}
            action = r.get("action")
            if action in ("accept", "accept_unanimous", "accept_all_right"):
                if action == "accept":
                    prev = [*prev, uniques[r["best"]]]
                else:
                    prev = [*prev, uniques[0]]
            elif action == "rollback":
                prev = prev[:-1]
    return {"judged_rounds": rounds, "mixed": mixed, "share": mixed / rounds if rounds else None}


def summarise(per_seed: dict[int, dict], arms: list[str]) -> dict:
    from psrlm.confidence import mean_ci

    out: dict = {"seeds": sorted(per_seed), "arms": {}}
    for arm in arms:
        m1 = per_seed[next(iter(per_seed))]["arms"][arm]["m1"]
        series: dict[str, list] = {s: [] for s in SPLITS}
        for s in SPLITS:
            values = [r["M1"][m1][s] for r in per_seed.values()]
            series[s].append({"iteration": 1, "per_seed": values, **_mean_ci(values)})
        n_it = len(per_seed[next(iter(per_seed))]["arms"][arm]["iterations"])
        rows = []
        for i in range(n_it):
            cells = [r["arms"][arm]["iterations"][i] for r in per_seed.values()]
            for s in SPLITS:
                values = [c["accuracy"][s] for c in cells]
                deltas = [c["accuracy"][s] - r["M1"][m1][s] for c, r in zip(cells, per_seed.values(), strict=True)]
                dm, dci = mean_ci(deltas)
                series[s].append({"iteration": cells[0]["iteration"], "per_seed": values,
                                  **_mean_ci(values),
                                  "delta": {"per_seed": deltas, "mean": dm, "ci95": dci}})  # fmt: skip
            rows.append({"iteration": cells[0]["iteration"], "levels": [c["level"] for c in cells],
                         "pass_rates": [c["pass_rates"][str(c["level"])] for c in cells],
                         "pairs": [c["pairs"] for c in cells], "rft_solutions": [c["rft_solutions"] for c in cells],
                         "pair_precision": [c["pair_precision"] for c in cells],
                         "mixed_share": [(c["mixed_rounds"] or {}).get("share") for c in cells],
                         "own_pairs": _pool_kinds([c["own_pairs"] for c in cells])})  # fmt: skip
        out["arms"][arm] = {"m1": m1, "series": series, "iterations": rows}
    return out


def _mean_ci(values: list[float]) -> dict:
    from psrlm.confidence import mean_ci

    mean, ci = mean_ci(values)
    return {"mean": mean, "ci95": ci}


def _pool_kinds(per_seed: list[dict]) -> dict:
    pooled: dict[str, list[float]] = {}
    for kinds in per_seed:
        for k, v in kinds.items():
            acc = pooled.setdefault(k, [0.0, 0.0])
            acc[0] += v["accuracy"] * v["n"]
            acc[1] += v["n"]
    return {k: {"n": int(n), "accuracy": right / n} for k, (right, n) in pooled.items() if n}


def _cell(e: dict) -> str:
    ci = "" if math.isnan(e["ci95"]) else f" ± {e['ci95']:.3f}"
    return f"{e['mean']:.3f}{ci}"


def _delta(e: dict) -> str:
    ci = "" if math.isnan(e["ci95"]) else f" ± {e['ci95']:.3f}"
    excl = " *" if not math.isnan(e["ci95"]) and abs(e["mean"]) > e["ci95"] else ""
    return f"{e['mean']:+.3f}{ci}{excl}"


def format_table(summary: dict) -> str:
    lines = ["| arm | model | valid | valid (hard) | test | hard | hard Δ from M1 | level searched (pass rate) | "
             "trained on | pair precision | mixed rounds |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arm, a in summary["arms"].items():
        s = a["series"]
        lines.append(f"| {ARM_LABELS[arm]} | {a['m1']} | " + " | ".join(_cell(s[x][0]) for x in SPLITS)
                     + " | - | - | - | - | - |")  # fmt: skip
        for i, row in enumerate(a["iterations"], start=1):
            levels = ", ".join(f"{lv} ({pr:.2f})" for lv, pr in zip(row["levels"], row["pass_rates"], strict=True))
            if arm == "rft":
                trained = "solutions " + ", ".join(str(x) for x in row["rft_solutions"])
            else:
                trained = "pairs " + ", ".join(str(x) for x in row["pairs"])
            prec = [p for p in row["pair_precision"] if p is not None]
            mixed = [m for m in row["mixed_share"] if m is not None]
            lines.append(f"| | {arm}-M{row['iteration']} | " + " | ".join(_cell(s[x][i]) for x in SPLITS)
                         + f" | {_delta(s['arith_hard'][i]['delta'])} | {levels} | {trained} | "
                         + (", ".join(f"{p:.2f}" for p in prec) or "-") + " | "
                         + (", ".join(f"{m:.2f}" for m in mixed) or "-") + " |")  # fmt: skip
    lines += [
        "",
        f"Accuracy (greedy; mean ± half-width of the 95 % t-interval over seeds {summary['seeds']}); Δ from "
        "the arm's M1 with * where the interval excludes 0. Level: the difficulty ladder's level the "
        "iteration searched (0 = in-distribution), with the parent's probe pass rate, per seed. Mixed "
        "rounds: the share of judged rounds whose candidates mixed right and wrong steps (oracle-labelled).",
    ]
    self_arm = summary["arms"].get("self")
    if self_arm:
        lines += ["", "The self judge on its own pairs with exactly one right step (oracle-labelled), by the wrong "
                      "step's error, pooled over seeds (accuracy = share where it chose the right step; 0.5 = chance):",
                  "", "| model | error kind | pairs | judge accuracy |", "|---|---|---|---|"]  # fmt: skip
        for row in self_arm["iterations"]:
            for kind, v in row["own_pairs"].items():
                lines.append(f"| self-M{row['iteration']} | {kind} | {v['n']} | {v['accuracy']:.3f} |")
    return "\n".join(lines)


def plot(summary: dict, path: Path, split: str = "arith_hard") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from psrlm.records import save_figure

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = {"self": "tab:blue", "oracle": "tab:green", "rft": "tab:orange", "outcome": "tab:purple",
              "srlm": "tab:gray"}  # fmt: skip
    for arm, a in summary["arms"].items():
        pts = a["series"][split]
        xs = [p["iteration"] for p in pts]
        ys = [p["mean"] for p in pts]
        ci = [0.0 if math.isnan(p["ci95"]) else p["ci95"] for p in pts]
        ax.plot(xs, ys, marker="o", color=colors.get(arm), label=ARM_LABELS[arm])
        ax.fill_between(xs, [y - c for y, c in zip(ys, ci, strict=True)], [y + c for y, c in zip(ys, ci, strict=True)],
                        color=colors.get(arm), alpha=0.15)  # fmt: skip
    ax.set_xticks(sorted({p["iteration"] for a in summary["arms"].values() for p in a["series"][split]}))
    ax.set_xlabel("model (M1 = after SFT; M2.. = after each iteration at the frontier)")
    ax.set_ylabel(f"{split[6:]}-split accuracy (greedy)")
    ax.set_title(f"self-improvement at the frontier ({len(summary['seeds'])} seeds, 95 % bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def run_frontier(
    cfg: Config,
    arms: list[str],
    seeds: list[int],
    out: Path,
    fresh: bool = False,
    iterations: dict[str, int] | None = None,
) -> dict:
    from psrlm.records import atomic_write_text, write_json

    for arm in arms:
        arm_setup(cfg, arm)  # an unknown arm fails before any work
    per_seed = {s: run_seed(cfg, s, arms, out, fresh, iterations) for s in seeds}
    summary = {**summarise(per_seed, arms), "per_seed": per_seed, "questions": cfg.iterate.questions,
               "band": cfg.iterate.frontier_band, "levels": cfg.arith.levels}  # fmt: skip
    write_json(out / "frontier.json", summary)
    head = (f"# Self-improvement at the frontier (science; ORACLE arms are controls, not the method)\n\n"
            f"questions per iteration {summary['questions']}; frontier band {summary['band']}; ladder above the "
            f"in-distribution level {summary['levels']}\n\n")  # fmt: skip
    atomic_write_text(out / "frontier.md", head + format_table(summary) + "\n")
    plot(summary, out / "frontier.png")
    return summary


def add_frontier_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms (default: all: {', '.join(ARMS)})")
    p.add_argument("--seeds", default="0,1,2", help="iterate.seed values (default 0,1,2)")
    p.add_argument("--out", default="runs/frontier", help="output folder (one run folder per seed inside)")
    p.add_argument("--iterations", default="", metavar="ARM=N,...",
                   help="stop these arms after N iterations, e.g. self=1,rft=1 (default: every arm runs one "
                        "iteration per block of iterate.questions); arms cost differently, the self judge's search most")  # fmt: skip
    p.add_argument("--fresh", action="store_true",
                   help="rebuild what was made with other settings (the old outputs are moved to "
                        "<out>/seed<s>/replaced/<time>/) instead of stopping with the keys that differ")  # fmt: skip


def parse_iterations(text: str, arms: list[str], blocks: int) -> dict[str, int]:
    """`--iterations self=1,rft=2` -> {"self": 1, "rft": 2}; every arm named must be run, 1 <= N <= blocks."""
    out: dict[str, int] = {}
    for item in (x.strip() for x in text.split(",") if x.strip()):
        arm, sep, n = item.partition("=")
        if not sep or not n.strip().isdigit():
            raise ValueError(f"--iterations {item!r}: write ARM=N, e.g. self=1")
        if arm.strip() not in arms:
            raise ValueError(f"--iterations {item!r}: {arm.strip()!r} is not among the arms run ({', '.join(arms)})")
        if not 1 <= int(n) <= blocks:
            raise ValueError(f"--iterations {item!r}: N must be 1..{blocks} (iterate.questions has {blocks} blocks)")
        out[arm.strip()] = int(n)
    return out


def cmd_frontier(cfg: Config, args: argparse.Namespace) -> dict:
    check_for_frontier(cfg)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    iterations = parse_iterations(args.iterations, arms, len(cfg.iterate.questions))
    summary = run_frontier(cfg, arms, seeds, Path(args.out), fresh=args.fresh, iterations=iterations)
    print(format_table(summary))
    print(f"\nfrontier: {Path(args.out) / 'frontier.md'}, frontier.json, frontier.png")
    return {"arms": arms, "seeds": seeds, "iterations": iterations}
