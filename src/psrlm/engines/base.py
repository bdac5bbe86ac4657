"""One interface for text generation: many prompts in, `n` completions each out, with token counts.

Search, judging, SRLM scoring and evaluation see only `Engine.generate`; `engines/hf.py` runs transformers
in-process and `engines/openai_api.py` talks to any OpenAI-compatible completions server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GenParams:
    """Sampling settings for one `generate` call. temperature 0 means greedy."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # One seed per prompt: sample k of prompt i then depends on (seeds[i], k) only, not on which other prompts share
    # the call or the batch, so a resumed search draws exactly what an uninterrupted one would have drawn.
    seeds: tuple[int, ...] | None = None
    # One key per prompt: prompts with the same key go to the same server replica (a problem's step and judge
    # prompts share their prefix, which the replica's prefix cache then serves). Ignored in-process.
    affinity: tuple[int, ...] | None = None

    def row_seed(self, index: int) -> int | None:
        """The seed of the prompt at `index` in the call: its own when given, else call seed + index."""
        if self.seeds is not None:
            return self.seeds[index]
        return None if self.seed is None else self.seed + index

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Completion:
    text: str  # stop text removed
    tokens: int  # generated tokens, counted up to and including the stop / EOS
    # "stop" | "length" (hit max_new_tokens, or the context end) | "error" (request failed) | "context" (the prompt
    # alone does not fit the model's context: not generated at all, never cut to fit)
    finish_reason: str = "stop"


def seed_of(*parts: object) -> int:
    """A 31-bit seed from any labels (problem id, step, attempt): stable across processes and Python versions."""
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little") & 0x7FFFFFFF


@dataclass
class EngineStats:
    calls: int = 0
    prompts: int = 0
    completions: int = 0
    gen_tokens: int = 0
    prompt_tokens: int = 0
    skipped_prompts: int = 0  # did not fit the context at all: answered with finish_reason "context"
    clamped_prompts: int = 0  # fit, but prompt + max_new_tokens did not: generation capped at the context end
    errors: int = 0
    last_error: str = ""  # what the last failed request said (a teacher stage that stops quotes it)
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class Engine(Protocol):
    stats: EngineStats

    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        """For each prompt, `params.n` completions, in prompt order."""
        ...


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    """Text before the earliest stop string (engines keep the stop text; callers never want it)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
