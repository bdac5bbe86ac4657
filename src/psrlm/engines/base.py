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

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class Completion:
    text: str  # stop text removed
    tokens: int  # generated tokens, counted up to and including the stop / EOS
    finish_reason: str = "stop"  # "stop" | "length" | "error"


@dataclass
class EngineStats:
    calls: int = 0
    prompts: int = 0
    completions: int = 0
    gen_tokens: int = 0
    prompt_tokens: int = 0
    truncated_prompts: int = 0
    errors: int = 0
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
