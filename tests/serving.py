"""A real OpenAI-compatible server for tests: `transformers serve` on 127.0.0.1 and a scripted flaky proxy.

The `server` fixture (tests/conftest.py) starts one server per test session, pinned to the session's tiny
random-weight model; `FlakyProxy` sits in front of it and answers scripted failures (or scripted texts) first.
No mocked HTTP: every request crosses a real socket.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from psrlm.engines.openai_api import OpenAIEngine

STARTUP_TIMEOUT_S = 120
NO_KEY = "PSRLM_TEST_UNSET_API_KEY"  # so a developer's OPENAI_API_KEY is never sent to the test servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_engine(urls: list[str], model: str, **kw) -> OpenAIEngine:
    kw.setdefault("api_key_env", NO_KEY)
    kw.setdefault("backoff_s", 0.01)
    kw.setdefault("timeout_s", 60.0)
    return OpenAIEngine(urls, model, **kw)


# ------------------------------------------------------------------------------------------- the server


@dataclass
class Server:
    root: str  # http://127.0.0.1:PORT
    model: str  # the "model" field the pinned server accepts: the model directory's path
    log_path: Path
    startup_s: float

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def completion_posts(self) -> int:
        """Completion requests the server has answered, from its (uvicorn) access log."""
        return self.log_path.read_text(errors="replace").count('"POST /v1/completions HTTP/1.1"')

    def wait_for_posts(self, n: int, timeout_s: float = 5.0) -> int:
        deadline = time.monotonic() + timeout_s  # the access line is written just after the answer
        while (got := self.completion_posts()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return got


def _log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """End the server's whole process group: TERM, then KILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


# -------------------------------------------------------------------------------- a real flaky proxy


class FlakyProxy:
    """An HTTP proxy on 127.0.0.1 that answers its scripted `failures` first, then forwards to `upstream`.

    A failure is an HTTP status (answered with a JSON body that, like some real servers, echoes the
    Authorization header it got), "garbage" (a broken status line), "nochoices" (200 with no choices),
    ("slow", seconds) (no answer for that long, then the connection closes: a client timeout) or
    ("text", text, finish_reason) (a well-formed 200 completion with that text: a scripted teacher answer) or
    ("raw", status, body[, content type]) (exactly those bytes: a body that is not UTF-8, not JSON, not an object,
    an HTML page).
    With `require_auth`, any other Authorization header gets a 401 (echoing it too) and nothing is forwarded.
    """

    def __init__(self, upstream: str, failures=(), require_auth: str | None = None):
        self.upstream = upstream
        self.failures = list(failures)
        self.require_auth = require_auth
        self.seen: list[dict] = []  # per request: status answered, authorization, request body
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def statuses(self) -> list[int]:
        return [s["status"] for s in self.seen]

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def _handler_class(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep the test output quiet
                pass

            def _answer(self, status: int, data: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization")
                with proxy._lock:
                    if proxy.require_auth is not None and auth != proxy.require_auth:
                        action = 401
                    else:
                        action = proxy.failures.pop(0) if proxy.failures else None
                    record = {"status": 0, "authorization": auth, "body": json.loads(raw)}
                    proxy.seen.append(record)
                if isinstance(action, tuple) and action[0] == "slow":  # the client gives up first
                    time.sleep(action[1])
                    self.close_connection = True
                    return
                if isinstance(action, tuple) and action[0] == "raw":  # ("raw", status, body bytes[, content type])
                    record["status"] = action[1]
                    self._answer(*action[1:])
                    return
                if isinstance(action, tuple) and action[0] == "text":
                    record["status"] = 200
                    _, text, reason = action
                    body = {"choices": [{"index": 0, "text": text, "finish_reason": reason}],
                            "usage": {"completion_tokens": max(1, len(text.split()))}}  # fmt: skip
                    self._answer(200, json.dumps(body).encode())
                    return
                if action == "garbage":
                    self.wfile.write(b"garbage\r\n\r\n")
                    self.close_connection = True
                elif action == "nochoices":
                    record["status"] = 200
                    self._answer(200, json.dumps({"choices": [], "seen_authorization": auth}).encode())
                elif isinstance(action, int):
                    record["status"] = action
                    self._answer(
                        action, json.dumps({"error": f"scripted {action}", "seen_authorization": auth}).encode()
                    )
                else:
                    req = urllib.request.Request(
                        proxy.upstream + self.path, data=raw, headers={"Content-Type": "application/json"}
                    )
                    try:
                        with urllib.request.urlopen(req, timeout=60) as r:
                            status, data = r.status, r.read()
                    except urllib.error.HTTPError as e:
                        status, data = e.code, e.read()
                    record["status"] = status
                    try:
                        self._answer(status, data)
                    except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                        pass

        return Handler


# ---------------------------------------------------------------------------- a teacher behind an API


class TeacherAPI:
    """An OpenAI-style chat API on 127.0.0.1 that answers as a teacher model would, from rules: a segmentation
    prompt (Fig. 3) gets the solution cut into "Step n:" lines at its sentence ends, content unchanged (one that says
    "(unsplittable)" gets prose, which the segmentation check rejects); a judge
    prompt (Fig. 5) gets a two-paragraph explanation and the verdict for whichever step has the larger sha256 (the
    same step in both A/B orders); anything else (a probe) gets "OK". The stand-in for o1, which no test can call.

    With `reasoning` (o1's rules) a request carrying a parameter OpenAI's reasoning models reject is answered with
    the 400 the API gives (messages as OpenAI words them, e.g. openai/openai-python#2046), so a client that sends
    `max_tokens` or `temperature` fails as it would against o1. Every request body is kept in `bodies`.
    """

    REJECTED = {
        "max_tokens": ("unsupported_parameter", "Unsupported parameter: 'max_tokens' is not supported with this "
                       "model. Use 'max_completion_tokens' instead."),
        "temperature": ("unsupported_value", "Unsupported value: 'temperature' does not support 0.0 with this model. "
                        "Only the default (1) value is supported."),
        "top_p": ("unsupported_parameter", "Unsupported parameter: 'top_p' is not supported with this model."),
        "stop": ("unsupported_parameter", "Unsupported parameter: 'stop' is not supported with this model."),
        "seed": ("unsupported_parameter", "Unsupported parameter: 'seed' is not supported with this model."),
    }  # fmt: skip

    def __init__(self, reasoning: bool = True):
        self.reasoning = reasoning
        self.bodies: list[dict] = []
        self._lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> TeacherAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    @staticmethod
    def answer(prompt: str) -> str:
        import hashlib
        import re

        def between(start: str, end: str) -> str:
            return prompt.split(start, 1)[1].split(end, 1)[0].strip()

        if "[The Start of Solution Provided]" in prompt:
            solution = between("[The Start of Solution Provided]", "[The End of Solution Provided]")
            if "(unsplittable)" in solution:
                return "This solution cannot be divided into steps."
            sentences = [x for x in re.split(r"(?<=[.!?])\s+", solution) if x.strip()]
            return "\n".join(f"Step {i}: {x}" for i, x in enumerate(sentences, start=1))
        if "[The Start of Assistant A's Next Reasoning Step]" in prompt:
            a = between("[The Start of Assistant A's Next Reasoning Step]", "[The End of Assistant A's Next")
            b = between("[The Start of Assistant B's Next Reasoning Step]", "[The End of Assistant B's Next")
            digest = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
            better = "A" if digest(a) >= digest(b) else "B"
            return (f"Assistant {better}'s step follows from the previous steps.\n\nThe other step does not "
                    f"check its arithmetic:  it is less careful. [[{better}]]")  # fmt: skip
        return "OK"

    def _handler_class(self):
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, obj: dict) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with api._lock:
                    api.bodies.append(body)
                if not self.path.endswith("/chat/completions"):
                    self._answer(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                    return
                bad = [k for k in api.REJECTED if k in body] if api.reasoning else []
                if bad:
                    code, message = api.REJECTED[bad[0]]
                    self._answer(400, {"error": {"message": message, "type": "invalid_request_error",
                                                 "param": bad[0], "code": code}})  # fmt: skip
                    return
                text = api.answer(body["messages"][-1]["content"])
                choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                           for i in range(body.get("n", 1))]  # fmt: skip
                self._answer(
                    200, {"choices": choices, "usage": {"prompt_tokens": 10, "completion_tokens": len(text.split())}}
                )

        return Handler


# ------------------------------------------------------------------------------------------- start


def start_server(tiny_model_dir: Path, tmp_path_factory) -> Iterator[Server]:
    """`transformers serve` pinned to the tiny model, on a free port; the model loads before it listens."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    # /v1/chat/completions needs a chat template; the tiny tokenizer has none of its own: a plain one (user text,
    # then a newline where the answer starts), so the engine's chat mode meets a real chat endpoint
    template = Path(tiny_model_dir) / "chat_template.jinja"
    if not template.exists():
        template.write_text(
            "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}\n{% endif %}"
        )
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_model_dir)]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "info"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    start = time.monotonic()
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {proc.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() - start > STARTUP_TIMEOUT_S:
                pytest.fail(f"transformers serve not ready after {STARTUP_TIMEOUT_S} s:\n{_log_tail(log_path)}")
            try:
                with urllib.request.urlopen(root + "/v1/models", timeout=2) as r:
                    models = json.loads(r.read())["data"]
                if any(m["id"] == str(tiny_model_dir) for m in models):
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        yield Server(root, str(tiny_model_dir), log_path, time.monotonic() - start)
    finally:
        _stop(proc)
