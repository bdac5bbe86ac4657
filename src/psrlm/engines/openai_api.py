"""Generation through any OpenAI-compatible `/v1/completions` server: vLLM, SGLang, llama.cpp, a hosted teacher.

    engine:
      kind: openai
      base_urls: [http://127.0.0.1:8000/v1, http://127.0.0.1:8001/v1]   # several servers = data parallelism
      model_name: Qwen/Qwen2.5-Math-7B

Requests run on a bounded thread pool, spread round-robin over the base URLs. 429 and 5xx answers and
connection errors are retried with exponential backoff and jitter. A server that ignores `n` (returns fewer
choices) is asked again until each prompt has its `n` completions. The API key is read only from the
environment variable named by `api_key_env` and never appears in logs or errors. Standard library only.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from psrlm.engines.base import Completion, EngineStats, GenParams, cut_at_stop

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EngineError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status)."""


class OpenAIEngine:
    def __init__(
        self,
        base_urls: list[str],
        model_name: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        extra_body: dict | None = None,
        on_error: str = "raise",
    ):
        if not base_urls:
            raise ValueError("OpenAIEngine needs at least one base URL (engine.base_urls)")
        if on_error not in ("raise", "empty"):
            raise ValueError(f"on_error must be 'raise' or 'empty', got {on_error!r}")
        self.base_urls = [u.rstrip("/") for u in base_urls]
        self.model_name = model_name
        self._api_key = os.environ.get(api_key_env, "")
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.extra_body = dict(extra_body or {})
        self.on_error = on_error
        self.stats = EngineStats()
        self._urls = itertools.cycle(self.base_urls)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ HTTP

    def _redact(self, text: str) -> str:
        """Mask the API key where a server echoes it back (some do, in 401 bodies)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def _post(self, body: dict) -> dict:
        with self._lock:
            url = next(self._urls) + "/completions"
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read().decode())
            except urllib.error.HTTPError as e:
                detail = self._redact(e.read(4096).decode(errors="replace"))[:200]
                last = f"HTTP {e.code} from {url}: {detail}"
                if e.code not in RETRY_STATUS:
                    raise EngineError(last) from None
            except (
                urllib.error.URLError,
                http.client.HTTPException,  # a broken answer: bad status line, connection cut mid-body
                TimeoutError,
                ConnectionError,
                json.JSONDecodeError,
            ) as e:
                last = self._redact(f"{type(e).__name__} from {url}: {getattr(e, 'reason', e)}")
            if attempt < self.max_retries:
                delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                log.warning("request failed (%s); retry %d/%d in %.1fs", last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise EngineError(f"giving up after {self.max_retries + 1} attempts: {last}")

    # ------------------------------------------------------------------------------------ generation

    def _complete(self, prompt: str, params: GenParams, index: int) -> list[Completion]:
        body = {
            "model": self.model_name,
            "prompt": prompt,
            "max_tokens": params.max_new_tokens,
            "temperature": 0.0 if params.greedy else params.temperature,
            "n": params.n,
        }
        if not params.greedy:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed + index
        body.update(self.extra_body)
        got: list[Completion] = []
        while len(got) < params.n:  # servers that ignore `n` answer with one choice: ask again
            body["n"] = params.n - len(got)
            try:
                resp = self._post(body)
                choices = resp.get("choices") or []
                if not choices:
                    raise EngineError(self._redact(f"server answered without choices: {str(resp)[:200]}"))
            except EngineError:
                with self._lock:
                    self.stats.errors += 1
                if self.on_error == "raise":
                    raise
                got += [Completion("", 0, "error") for _ in range(params.n - len(got))]
                break
            usage = (resp.get("usage") or {}).get("completion_tokens")
            per_choice = round(usage / len(choices)) if isinstance(usage, int) else None
            for ch in choices[: params.n - len(got)]:
                text, _ = cut_at_stop(ch.get("text") or "", params.stop)
                tokens = per_choice if per_choice is not None else len(text.split())
                reason = "length" if ch.get("finish_reason") == "length" else "stop"
                got.append(Completion(text, tokens, reason))
            if "seed" in body:
                body["seed"] += 7919  # a fresh sample on the next request, still reproducible
        return got

    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            out = list(pool.map(lambda ip: self._complete(ip[1], params, ip[0]), enumerate(prompts)))
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.completions += sum(len(r) for r in out)
        self.stats.gen_tokens += sum(c.tokens for r in out for c in r)
        self.stats.seconds += time.perf_counter() - start
        return out
