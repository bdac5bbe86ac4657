"""Settings that are valid but cost far more than anything measured: warned about at load, with what they imply."""

from __future__ import annotations

from psrlm.configs.recipe import Config
from psrlm.judge import plan_pairs

# A search round judges w(w-1) ordered pairs (the paper: w=6, 30 judge calls); past this many per round a width is
# far outside anything measured, and one typo (width=1000: 999,000 calls) costs more than a whole paper run.
JUDGE_CALLS_PER_ROUND_WARN = 240


def judge_calls_per_round(width: int, mode: str, cyclic_k: int = 2) -> int:
    """Judgments one search round asks of `width` distinct candidates (the pairs judge.plan_pairs makes)."""
    if mode == "one_order":
        return width * (width - 1) // 2
    if mode == "cyclic":
        return len(plan_pairs(width, "cyclic", cyclic_k))
    return width * (width - 1)


def cost_warnings(cfg: Config, sources: dict[str, str] | None = None) -> list[str]:
    """Settings that are valid but cost far more than anything measured: said once, with the number they imply."""
    out = []
    s = cfg.search
    calls = judge_calls_per_round(s.width, s.judge_mode, s.cyclic_k)
    if calls > JUDGE_CALLS_PER_ROUND_WARN:
        where = (sources or {}).get("search.width", "default")
        out.append(f"search.width={s.width} ({where}) with judge_mode {s.judge_mode}: {calls:,} judge calls per search "
                   f"round, per problem and step ({calls // 30:,}x the paper's 30 at width 6); more than "
                   f"{JUDGE_CALLS_PER_ROUND_WARN} per round is far outside anything measured: is the width a typo?")  # fmt: skip
    return out
