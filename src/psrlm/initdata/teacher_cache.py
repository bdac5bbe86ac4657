"""A teacher model behind a disk cache: a rerun or a resumed run never pays for the same answer twice.

    teacher = CachedTeacher(make_engine(cfg.initdata.teacher_engine, "Qwen/Qwen2.5-72B-Instruct"), cache_dir)
    outs = teacher.ask(prompts, GenParams(max_new_tokens=512), desc="segment")

The key of an answer is sha256(model, prompt, sampling settings), so a retry at another temperature or seed is a
different key. Answers are appended to `<cache_dir>/answers.jsonl`, one line each, flushed and fsynced per batch:
a kill loses at most the batch in flight. Failed requests (`finish_reason == "error"`: timeouts, 5xx after the
engine's retries, connection errors) are never cached, so the next run asks again; anything the teacher really
said (garbage included) is cached, because asking a greedy teacher again would only repeat it.

A teacher that fails most of what it is asked (a model name it does not serve, parameters it rejects, an API key
it refuses) stops the stage with one line quoting its last error, once more than half of the requests sent so far
have failed (from the 8th request on): a stage of 30,000 requests is not sent to a teacher that answers each with a 400. `probe` asks one
request with the stage's own settings before a stage whose teacher comes last (EFT: after hours of tree search).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from psrlm.engines.base import Completion, Engine, GenParams
from psrlm.engines.openai_api import EngineError
from psrlm.records import JsonlAppender
from psrlm.run_layout import RunLayout

PROBE_PROMPT = "Reply with the single word OK."
FAILURE_SAMPLE = 8  # requests sent before "most of them failed" stops a stage


class TeacherFailure(EngineError):
    """Most teacher requests failed, or the probe did: the stage stops before sending more."""


def cache_key(model: str, prompt: str, params: GenParams) -> str:
    blob = json.dumps(
        {
            "model": model,
            "prompt": prompt,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_new_tokens": params.max_new_tokens,
            "stop": list(params.stop),
            "seed": params.seed,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class TeacherStats:
    asked: int = 0
    cache_hits: int = 0
    requests: int = 0
    errors: int = 0  # request failures after the engine's retries (not cached)
    extra: dict = field(default_factory=dict)


class CachedTeacher:
    """`ask(prompts, params)` -> one Completion per prompt, from the cache when there, else from `engine`."""

    def __init__(self, engine: Engine, cache_dir: Path, model: str, chunk_size: int = 64, progress: bool = True):
        self.engine = engine
        self.model = model
        self.chunk_size = max(1, chunk_size)
        self.progress = progress
        self.path = Path(cache_dir) / "answers.jsonl"
        self._out = JsonlAppender(self.path)
        self._answers: dict[str, Completion] = {}
        for row in self._out.existing():
            self._answers[row["key"]] = Completion(row["text"], row["tokens"], row["finish_reason"])
        self.stats = TeacherStats()

    def __len__(self) -> int:
        return len(self._answers)

    def ask(self, prompts: list[str], params: GenParams, desc: str = "teacher") -> list[Completion]:
        if params.n != 1:
            raise ValueError("CachedTeacher asks for one answer per prompt (params.n=1)")
        keys = [cache_key(self.model, p, params) for p in prompts]
        out: list[Completion | None] = [self._answers.get(k) for k in keys]
        todo = [i for i, c in enumerate(out) if c is None]
        self.stats.asked += len(prompts)
        self.stats.cache_hits += len(prompts) - len(todo)
        from psrlm.progress import bar as progress_bar

        with progress_bar(len(todo), desc, "req", enabled=self.progress and bool(todo)) as bar:
            for b in range(0, len(todo), self.chunk_size):
                idx = todo[b : b + self.chunk_size]
                got = self.engine.generate([prompts[i] for i in idx], params)
                self.stats.requests += len(idx)
                fresh = []
                for i, row in zip(idx, got, strict=True):
                    c = row[0] if row else Completion("", 0, "error")
                    out[i] = c
                    if c.finish_reason == "error":
                        self.stats.errors += 1
                        continue
                    self._answers[keys[i]] = c
                    fresh.append(
                        {"key": keys[i], "text": c.text, "tokens": c.tokens, "finish_reason": c.finish_reason}
                    )
                self._out.append(*fresh)
                bar.update(len(idx))
                if self.stats.requests >= FAILURE_SAMPLE and 2 * self.stats.errors > self.stats.requests:
                    raise TeacherFailure(self._failure(f"{self.stats.errors} of {self.stats.requests} requests"))
        return out  # type: ignore[return-value]

    def probe(self, params: GenParams) -> None:
        """One request with the stage's settings (never cached); a failure is a TeacherFailure in one line."""
        got = self.engine.generate([PROBE_PROMPT], params)
        if not got or not got[0] or got[0][0].finish_reason == "error":
            raise TeacherFailure(self._failure("the first request (a probe sent before the stage)"))

    def _failure(self, what: str) -> str:
        last = " ".join(getattr(getattr(self.engine, "stats", None), "last_error", "").split())[:300]
        hint = ""
        if any(k in last for k in ("max_tokens", "max_completion_tokens", "temperature", "unsupported_parameter")):
            hint = (" A reasoning model (o1, o3, ...)? set initdata.teacher_engine.reasoning=true; another model: "
                    "set it false.")  # fmt: skip
        return (f"initdata.teacher_engine: {what} to the teacher {self.model} failed (last: {last or 'no answer'})."
                f"{hint} Stopped before sending more; answers so far are cached: fix it and rerun")  # fmt: skip

    def close(self) -> None:
        self._out.close()

    def __enter__(self) -> CachedTeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_teacher(cfg, run_dir: Path, progress: bool = True) -> CachedTeacher:
    """The configured engine teacher (`initdata.teacher_engine` + `initdata.teacher_model`) behind its cache.

    An OpenAI-compatible teacher answers a failed request with an empty "error" completion instead of raising,
    so one bad request is counted and skipped and the run goes on."""
    ic = cfg.initdata
    ec = ic.teacher_engine
    if not ic.teacher_model and not ec.model_name:
        raise ValueError("initdata.teacher=engine needs initdata.teacher_model (server model name or HF model dir)")
    from psrlm.engines import make_engine

    engine = make_engine(ec, ic.teacher_model, on_error="empty")
    cache = Path(ic.cache_dir) if ic.cache_dir else RunLayout(run_dir).initdata / "cache"
    name = ec.model_name or ic.teacher_model
    if ec.kind == "openai" and ec.api == "chat":  # another prompt format: its answers are cached apart
        name += " [chat]"
    return CachedTeacher(engine, cache, name, ic.chunk_size, progress)
