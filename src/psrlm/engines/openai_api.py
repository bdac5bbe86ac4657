"""Generation through any OpenAI-compatible server: vLLM, SGLang, llama.cpp, `transformers serve`, a hosted API.

    engine:
      kind: openai
      base_urls: [http://127.0.0.1:8000/v1, http://127.0.0.1:8001/v1]   # several servers = data parallelism
      model_name: Qwen/Qwen2.5-Math-7B
      api: completions      # raw text in, text out (the search needs it); "chat": /v1/chat/completions, the prompt
                            # sent as one user message and the server's chat template applied (a chat model as the
                            # IFT/EFT teacher or the Appendix B judge)

Requests run on a bounded pool of daemon threads, spread round-robin over the base URLs, so Ctrl-C stops a
stage at once even while requests hang (what finished is already committed by the stage). 429 and 5xx answers,
connection errors and answers that are not a JSON object (or not UTF-8) are retried with exponential backoff and
jitter, then count as failed requests naming the URL. A server that ignores `n` (returns fewer choices) is asked
again until each prompt has its `n` completions. A prompt longer than the server's context (its 400 says so) is
answered with finish_reason "context" and counted, never cut; one that fits but leaves less room than
`max_new_tokens` is asked again with `max_tokens` clamped to the room left. The API key is read only from the
environment variable named by `api_key_env` and never appears in logs or errors. Standard library only.

OpenAI's reasoning models (o1, o3, o4-mini, ...; `reasoning=True`, engine.reasoning) reject `max_tokens` ("Use
'max_completion_tokens' instead") and any `temperature` but the default, `top_p`, `stop` and more with a 400 (the
API reference, chat/create: max_tokens "is deprecated in favor of max_completion_tokens, and is not compatible with
o1 series models"): their requests carry `max_completion_tokens` (hidden reasoning tokens included) and none of
those; stop strings are cut here.
"""

from __future__ import annotations

import http.client
import itertools
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request

from psrlm.engines.base import Completion, EngineStats, GenParams, cut_at_stop

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
# vLLM / SGLang / OpenAI wordings of "prompt + max_tokens exceed the context"
_CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)", re.IGNORECASE)
_PROMPT_TOKENS = re.compile(r"(\d+) in the (?:messages|prompt)|request has (\d+) input tokens|(\d+) input tokens",
                            re.IGNORECASE)  # fmt: skip


class EngineError(RuntimeError):
    """A request that failed for good (after retries, or with a non-retryable status)."""


class _ContextOverflow(Exception):
    def __init__(self, limit: int | None, prompt_tokens: int | None):
        super().__init__(f"context {limit}, prompt {prompt_tokens}")
        self.limit, self.prompt_tokens = limit, prompt_tokens


def _context_overflow(status: int, detail: str) -> _ContextOverflow | None:
    """A 400 that says the request does not fit the model's context, with the numbers it gives."""
    if status != 400:
        return None
    limit = _CONTEXT_LIMIT.search(detail)
    if not limit and "context length" not in detail.lower() and "too long" not in detail.lower():
        return None
    prompt = _PROMPT_TOKENS.search(detail)
    n_prompt = next((int(g) for g in prompt.groups() if g), None) if prompt else None
    return _ContextOverflow(int(limit.group(1)) if limit else None, n_prompt)


def is_html(body: bytes, content_type: str = "") -> bool:
    return "html" in content_type.lower() or body.lstrip()[:1] == b"<"


def describe_body(body: bytes, content_type: str = "") -> str:
    """What a server answered instead of JSON, in a few words: an HTML page by its title, else its first bytes."""
    text = body.decode("utf-8", errors="replace")
    if is_html(body, content_type):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        what = f" titled {' '.join(title.group(1).split())[:80]!r}" if title else ""
        return f"an HTML page{what} ({len(body)} bytes)"
    return repr(" ".join(text.split())[:120])


def _run_all(fn, items: list, workers: int) -> list:
    """fn over items on daemon threads; the caller's wait can be interrupted (Ctrl-C) without waiting for
    requests in flight: daemon threads do not hold the interpreter at exit, unlike ThreadPoolExecutor's."""
    results: list = [None] * len(items)
    errors: list[BaseException] = []
    todo = iter(range(len(items)))
    lock = threading.Lock()
    done = threading.Event()
    remaining = [len(items)]

    def worker() -> None:
        while not done.is_set():
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i], i)
            except BaseException as e:  # handed to the caller's thread
                with lock:
                    errors.append(e)
                done.set()
                return
            with lock:
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

    if not items:
        return results
    for _ in range(min(workers, len(items))):
        threading.Thread(target=worker, daemon=True).start()
    try:
        while not done.wait(0.2):
            pass
    except BaseException:
        done.set()  # workers take no new item; the ones in flight die with the process
        raise
    if errors:
        raise errors[0]
    return results


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
        api: str = "completions",
        sampling_body: dict | None = None,
        reasoning: bool = False,
    ):
        if not base_urls:
            raise ValueError("OpenAIEngine needs at least one base URL (engine.base_urls)")
        if on_error not in ("raise", "empty"):
            raise ValueError(f"on_error must be 'raise' or 'empty', got {on_error!r}")
        if api not in ("completions", "chat"):
            raise ValueError(f"engine.api must be 'completions' or 'chat', got {api!r}")
        if reasoning and api != "chat":
            raise ValueError("reasoning models answer on the chat API: engine.api must be 'chat' with reasoning")
        self.api = api
        self.reasoning = reasoning
        self.sampling_body = dict(sampling_body or {})  # extra fields for sampled requests only
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

    def _post(self, body: dict, replica: int | None = None) -> dict:
        with self._lock:
            base = self.base_urls[replica % len(self.base_urls)] if replica is not None else next(self._urls)
        url = base + ("/chat/completions" if self.api == "chat" else "/completions")
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    raw, ctype = resp.read(), resp.headers.get("Content-Type", "")
                try:
                    answer = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    last = f"an answer that is not UTF-8 from {url} ({len(raw)} bytes)"
                except json.JSONDecodeError:
                    last = f"an answer that is not JSON from {url}: {self._redact(describe_body(raw, ctype))}"
                    if is_html(raw, ctype):  # a web page, not an API: asking again will not change it
                        raise EngineError(
                            f"{last}; is engine.base_urls an OpenAI-compatible API (ending in /v1)?"
                        ) from None
                else:
                    if isinstance(answer, dict):
                        return answer
                    last = f"an answer that is not a JSON object from {url}: {self._redact(str(answer))[:120]}"
            except urllib.error.HTTPError as e:
                body = e.read(4096)
                detail = self._redact(body.decode(errors="replace"))
                overflow = _context_overflow(e.code, detail)
                if overflow is not None:
                    raise overflow from None
                ctype = e.headers.get("Content-Type", "") if e.headers else ""
                shown = describe_body(body, ctype) if is_html(body, ctype) else detail[:200]
                last = f"HTTP {e.code} from {url}: {self._redact(shown)}"
                if e.code not in RETRY_STATUS:
                    raise EngineError(last) from None
            except (
                urllib.error.URLError,
                http.client.HTTPException,  # a broken answer: bad status line, connection cut mid-body
                TimeoutError,
                ConnectionError,
            ) as e:
                last = self._redact(f"{type(e).__name__} from {url}: {getattr(e, 'reason', e)}")
            if attempt < self.max_retries:
                delay = self.backoff_s * 2**attempt * (0.5 + random.random())
                log.warning("request failed (%s); retry %d/%d in %.1fs", last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise EngineError(f"giving up after {self.max_retries + 1} attempts: {last}")

    # ------------------------------------------------------------------------------------ generation

    def _body(self, prompt: str, params: GenParams, index: int) -> tuple[dict, str]:
        """The request body and the name of its token cap (`max_tokens`, or `max_completion_tokens` for a reasoning
        model, whose requests carry no sampling settings: it samples as it does, at its default temperature)."""
        # chat: the prompt is the user's message and the server applies the model's chat template
        text = {"messages": [{"role": "user", "content": prompt}]} if self.api == "chat" else {"prompt": prompt}
        if self.reasoning:
            body = {"model": self.model_name, **text, "max_completion_tokens": params.max_new_tokens, "n": params.n}
            body.update(self.extra_body)
            return body, "max_completion_tokens"
        body = {
            "model": self.model_name,
            **text,
            "max_tokens": params.max_new_tokens,
            "temperature": 0.0 if params.greedy else params.temperature,
            "n": params.n,
        }
        if not params.greedy:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)
        if params.row_seed(index) is not None:
            body["seed"] = params.row_seed(index)
        body.update(self.extra_body)
        if not params.greedy:
            body.update(self.sampling_body)
        return body, "max_tokens"

    def _complete(self, prompt: str, params: GenParams, index: int) -> list[Completion]:
        body, cap = self._body(prompt, params, index)
        replica = params.affinity[index] if params.affinity is not None else None
        got: list[Completion] = []
        while len(got) < params.n:  # servers that ignore `n` answer with one choice: ask again
            body["n"] = params.n - len(got)
            try:
                resp = self._post(body, replica)
                choices = resp.get("choices") or []
                if not choices:
                    raise EngineError(self._redact(f"server answered without choices: {str(resp)[:200]}"))
            except _ContextOverflow as over:
                room = None if over.limit is None or over.prompt_tokens is None else over.limit - over.prompt_tokens
                if room is not None and 0 < room < body[cap]:  # fits, with less room: ask for the room
                    body[cap] = room
                    with self._lock:
                        self.stats.clamped_prompts += 1
                    continue
                with self._lock:
                    self.stats.skipped_prompts += 1
                return [Completion("", 0, "context") for _ in range(params.n)]
            except EngineError as e:
                with self._lock:
                    self.stats.errors += 1
                    self.stats.last_error = str(e)
                if self.on_error == "raise":
                    raise
                got += [Completion("", 0, "error") for _ in range(params.n - len(got))]
                break
            usage_all = resp.get("usage") or {}
            usage = usage_all.get("completion_tokens")
            per_choice = round(usage / len(choices)) if isinstance(usage, int) else None
            if isinstance(usage_all.get("prompt_tokens"), int):
                with self._lock:
                    self.stats.prompt_tokens += usage_all["prompt_tokens"]
            for ch in choices[: params.n - len(got)]:
                raw = (ch.get("message") or {}).get("content") if self.api == "chat" else ch.get("text")
                text, _ = cut_at_stop(raw or "", params.stop)
                tokens = per_choice if per_choice is not None else len(text.split())
                reason = "length" if ch.get("finish_reason") == "length" else "stop"
                got.append(Completion(text, tokens, reason))
            if "seed" in body:
                body["seed"] += 7919  # a fresh sample on the next request, still reproducible
        return got

    def continuation_logprobs(
        self, prompts: list[str], continuations: list[str], affinity: tuple[int, ...] | None = None
    ) -> list[float | None]:
        """Sum of log p(continuation | prompt) per pair, from the server's prompt log-probabilities: the legacy
        completions API with `echo` + `logprobs` (vLLM, SGLang; what lm-eval's local-completions model sends).
        vLLM refuses max_tokens=0 (vllm-project/vllm#9336), so one token is generated and left out. Counted are the
        tokens that end past the prompt and start before the end of prompt + continuation, by `text_offset`: a token
        merged across the boundary is the continuation's first, as in the in-process engine. None where the pair
        does not fit the server's context (counted in `skipped_prompts`); a server without prompt log-probs
        (`transformers serve` ignores echo and logprobs) is an EngineError naming it."""

        def one(pair: tuple[str, str], i: int) -> float | None:
            prompt, cont = pair
            full = prompt + cont
            body = {"model": self.model_name, "prompt": full, "max_tokens": 1, "echo": True, "logprobs": 0,
                    "temperature": 0.0, **self.extra_body}  # fmt: skip
            try:
                resp = self._post(body, affinity[i] if affinity is not None else None)
            except _ContextOverflow:
                with self._lock:
                    self.stats.skipped_prompts += 1
                return None
            lp = ((resp.get("choices") or [{}])[0]).get("logprobs") or {}
            offsets, values = lp.get("text_offset"), lp.get("token_logprobs")
            if not isinstance(offsets, list) or not isinstance(values, list) or len(offsets) != len(values):
                raise EngineError(f"{self.base_urls[0]}: no prompt log-probabilities in the answer (echo + logprobs "
                                  "unsupported?): verdicts read from logits need vLLM or SGLang")  # fmt: skip
            ends = [*offsets[1:], len(full) + 1]  # the generated token, last, starts at len(full): never counted
            picked = [
                v for off, end, v in zip(offsets, ends, values, strict=True) if end > len(prompt) and off < len(full)
            ]
            if not picked or any(v is None for v in picked):
                raise EngineError(f"{self.base_urls[0]}: the answer has no log-probability for the continuation")
            return float(sum(picked))

        start = time.perf_counter()
        out = _run_all(one, list(zip(prompts, continuations, strict=True)), self.concurrency)
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.seconds += time.perf_counter() - start
        return out

    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        start = time.perf_counter()
        out = _run_all(lambda prompt, i: self._complete(prompt, params, i), prompts, self.concurrency)
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.completions += sum(len(r) for r in out)
        self.stats.gen_tokens += sum(c.tokens for r in out for c in r)
        self.stats.seconds += time.perf_counter() - start
        return out
