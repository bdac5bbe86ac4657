"""The plots of `psrlm report` for one run: accuracy, judge accuracy, steps and pair precision vs iteration, as
PNG files in <run>/report_plots/."""

from __future__ import annotations

from pathlib import Path

from psrlm.records import save_figure
from psrlm.report_tables import chain_start, common_n, evaluated_benchmarks, iteration_of, method_of


def _series(models: dict, method: str, value) -> tuple[list[int], list[float]]:
    """(iterations, values) of a chain, from where it starts: M0 for a method, the M1 it branches from for an arm
    without its own (the oracle arm: psrlm-M1)."""
    start = chain_start(models, method)
    first = {"M0", start} if start == f"{method}-M1" else {start}
    xs, ys = [], []
    for name, m in models.items():
        if iteration_of(name) is not None and (name in first or method_of(name) == method):
            y = value(m)
            if y is not None:
                xs.append(iteration_of(name))
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
    styles = {"psrlm": dict(color="tab:blue", marker="o", label="PSRLM"),
              "oracle": dict(color="tab:green", marker="^", ls="--", label="PSRLM, ORACLE judge (science arm)"),
              "srlm": dict(color="tab:orange", marker="s", label="SRLM")}  # fmt: skip
    written = []

    def save(fig, name):
        fig.tight_layout()
        save_figure(fig, out_dir / name, dpi=110)
        plt.close(fig)
        written.append(out_dir / name)

    def panel(ax, value, title, ylabel):
        for method, style in styles.items():
            xs, ys = _series(models, method, value)
            own = [n for n, m in models.items() if method_of(n) == method and value(m) is not None]
            if own:  # a point of the chain's own, not only where it starts
                ax.plot(xs, ys, **style)
        ax.set_title(title)
        ax.set_xlabel("iteration (0 = M0)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)

    benches = evaluated_benchmarks(models)
    if not benches:  # nothing evaluated yet: no accuracy, judge or step plots to draw
        return written
    fig, axes = plt.subplots(1, len(benches), figsize=(4.2 * len(benches), 3.4), squeeze=False)
    for ax, b in zip(axes[0], benches, strict=True):
        n = common_n(models, b)
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
        if method_of(name) == "psrlm" and prec is not None:
            xs.append(iteration_of(name))
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
