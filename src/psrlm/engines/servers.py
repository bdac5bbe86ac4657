"""Generation servers the driver starts and stops per checkpoint: vLLM, SGLang or `transformers serve`.

    engine:
      kind: vllm                     # vllm | sglang | transformers: a server psrlm starts per checkpoint
      server_cmd: /opt/vllm-venv/bin/vllm serve {model} --port {port} --served-model-name {served_name} ...
      servers: 4                     # replicas (data parallel), each on its own port and GPUs
      tensor_parallel: 2             # GPUs per replica

The model changes once per iteration, so a real run serves M_n, generates through the OpenAI-compatible client,
stops the server and trains (OpenRLHF's iterative DPO, Step-DPO). For each checkpoint that needs generation the
driver (`serving`) starts `servers` replicas from the command template, each in its own process group with its
output in `<run>/servers/<name>-<i>.log`; waits until `/health` answers, `/v1/models` lists this checkpoint's served
name and one sanity completion comes back; hands out an OpenAI engine over the replicas; and on exit stops them
(TERM to the group, a bounded wait, then KILL) and waits for the ports to free. A replica that dies mid-stage is
restarted (at most `server_restarts` times) and the engine call repeated; the stage itself resumes from what it
committed. A port already in use, or a server that never becomes ready, is a clear error with the log's tail.

vLLM pins its own transformers, so it lives in a virtualenv of its own; point `server_cmd` at it (docs/scale-out.md).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from psrlm.configs import LOCAL_HOSTS
from psrlm.engines.base import Completion, EngineStats, GenParams
from psrlm.engines.openai_api import describe_body

log = logging.getLogger(__name__)

MANAGED_KINDS = ("vllm", "sglang", "transformers")
DEFAULT_COMMANDS = {
    "vllm": "vllm serve {model} --host 127.0.0.1 --port {port} --served-model-name {served_name} "
    "--tensor-parallel-size {tensor_parallel} --max-model-len {max_model_len} --dtype {dtype} --enable-prefix-caching",
    "sglang": "{python} -m sglang.launch_server --model-path {model} --host 127.0.0.1 --port {port} "
    "--served-model-name {served_name} --tp {tensor_parallel} --context-length {max_model_len} --dtype {dtype}",
    # transformers serve knows a model by its path and serves one request at a time: a real server for tests on CPU
    "transformers": "{python} -m transformers.cli.transformers serve {model} --host 127.0.0.1 --port {port} "
    "--device {device}",
}


class ServerError(RuntimeError):
    """A server that could not be started, never became ready, or died too often; the message has its log tail."""


def port_free(port: int) -> bool:
    """Could a server listen on `port` now? (SO_REUSEADDR, as servers set it: connections of a stopped server
    lingering in TIME_WAIT do not count, a listening socket does.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def replica_host(ec, i: int) -> str:
    """The host replica i runs on: engine.server_hosts round-robin, else this machine."""
    return ec.server_hosts[i % len(ec.server_hosts)] if ec.server_hosts else "127.0.0.1"


def server_command(ec, model: str, served_name: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The command of one replica, from `engine.server_cmd` (or the kind's default) with its slots filled."""
    template = ec.server_cmd or DEFAULT_COMMANDS[ec.kind]
    slots = {"model": model, "served_name": served_name, "port": port, "host": host, "tensor_parallel": ec.tensor_parallel,
             "max_model_len": ec.max_model_len, "dtype": "bfloat16" if ec.dtype == "auto" else ec.dtype,
             "python": sys.executable, "device": "cpu" if ec.device in ("auto", "cpu") else ec.device}  # fmt: skip
    try:
        return shlex.split(template.format(**slots))
    except KeyError as e:
        raise ServerError(
            f"engine.server_cmd: unknown slot {{{e.args[0]}}}; slots: {', '.join(sorted(slots))}"
        ) from None


@dataclass
class Replica:
    cmd: list[str]
    port: int
    log_path: Path
    env: dict  # what the replica's environment adds to this process's (its GPUs)
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    restarts: int = 0

    @property
    def root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def local(self) -> bool:
        """Ports can only be checked on this machine; a remote replica's launcher (srun) owns its port."""
        return self.host in LOCAL_HOSTS

    def start(self) -> None:
        if self.local and not port_free(self.port):
            raise ServerError(f"port {self.port} is already in use: stop what listens there or set engine.port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as fh:
            fh.write(f"\n$ {shlex.join(self.cmd)}\n".encode())
            fh.flush()
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                         env={**os.environ, **self.env}, start_new_session=True)  # fmt: skip
        log.info("server started: pid %d, port %d, log %s", self.proc.pid, self.port, self.log_path)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, wait_port_s: float = 30.0) -> None:
        """TERM to the process group, up to 20 s, then KILL; then wait for the port to be free again."""
        if self.proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.proc = None
        deadline = time.monotonic() + wait_port_s
        while self.local and not port_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-chars:].decode("utf-8", errors="replace")
        except OSError:
            return "(no log)"


def _get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait_ready(replica: Replica, served_name: str, timeout_s: float, sanity: dict) -> None:
    """Healthy, serving *this* checkpoint, and answering: /health, then /v1/models lists `served_name`, then one
    completion. Polls with a total deadline; a process that exits, or no readiness in time, raises with the log."""
    deadline = time.monotonic() + timeout_s
    stage, last = "health", ""
    while time.monotonic() < deadline:
        if not replica.alive():
            code = replica.proc.returncode if replica.proc else None
            raise ServerError(f"server on port {replica.port} exited (code {code}) before it was ready; log "
                              f"{replica.log_path}:\n{replica.tail()}")  # fmt: skip
        try:
            if stage == "health":
                _get(replica.root + "/health")
                stage = "models"
            if stage == "models":
                raw = _get(replica.root + "/v1/models")
                try:
                    ids = [m.get("id") for m in json.loads(raw).get("data", [])]
                except (ValueError, AttributeError):
                    last = f"/v1/models answered {describe_body(raw)}, not a model list"
                    raise ValueError(last) from None
                if served_name not in ids:
                    raise ServerError(f"server on port {replica.port} serves {ids}, not {served_name!r}")
                stage = "sanity"
            body = json.dumps({"model": served_name, "prompt": "1 + 1 =", "max_tokens": 1, **sanity}).encode()
            req = urllib.request.Request(replica.root + "/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")  # fmt: skip
            with urllib.request.urlopen(req, timeout=60) as r:
                if json.loads(r.read()).get("choices"):
                    return
        except ServerError:
            raise
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.5)
    why = f": {last[:200]}" if last else ""
    raise ServerError(f"server on port {replica.port} not ready after {timeout_s:.0f} s (stuck at {stage}{why}); log "
                      f"{replica.log_path}:\n{replica.tail()}")  # fmt: skip


@dataclass
class ManagedEngine:
    """An OpenAI engine over replicas this process started; a call that fails because a replica died restarts it
    (at most `restarts` times per replica) and is repeated."""

    replicas: list[Replica]
    served_name: str
    inner: object
    timeout_s: float
    restarts: int
    sanity: dict = field(default_factory=dict)

    @property
    def stats(self) -> EngineStats:
        return self.inner.stats

    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        return self._with_restarts(lambda: self.inner.generate(prompts, params),
                                   lambda out: any(c.finish_reason == "error" for row in out for c in row))  # fmt: skip

    def continuation_logprobs(self, *args, **kwargs) -> list[float | None]:
        return self._with_restarts(lambda: self.inner.continuation_logprobs(*args, **kwargs), lambda out: False)

    def _with_restarts(self, call, failed) -> object:
        """Run `call`; if replicas died meanwhile, restart them and, when the call failed (answers marked failed, or
        an EngineError: prompt log-probs raise rather than answer), run it again."""
        from psrlm.engines.openai_api import EngineError

        while True:
            try:
                out, error = call(), None
            except EngineError as e:
                out, error = None, e
            dead = [r for r in self.replicas if not r.alive()]
            if not dead:
                if error is not None:
                    raise error
                return out
            for r in dead:
                if r.restarts >= self.restarts:
                    raise ServerError(f"server on port {r.port} died {r.restarts + 1} times; log {r.log_path}:\n"
                                      f"{r.tail()}")  # fmt: skip
                r.restarts += 1
                log.warning("server on port %d died; restart %d/%d", r.port, r.restarts, self.restarts)
                r.stop()
                r.start()
                wait_ready(r, self.served_name, self.timeout_s, self.sanity)
            if error is None and not failed(out):
                return out

    def __getattr__(self, name):
        return getattr(self.inner, name)


def replica_env(ec, i: int) -> dict[str, str]:
    """What replica i's environment adds: its own GPUs when `assign_gpus` is on (the j-th replica of a host gets
    j*tp .. (j+1)*tp-1 of that host)."""
    if ec.kind in ("vllm", "sglang") and ec.assign_gpus:
        first = (i // max(1, len(ec.server_hosts))) * ec.tensor_parallel
        return {"CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in range(first, first + ec.tensor_parallel))}
    return {}


def served_name(ec, model: str | Path) -> str:
    """The name requests use: `transformers serve` knows a model by its path, vLLM/SGLang by --served-model-name."""
    return str(model) if ec.kind == "transformers" else (ec.model_name or Path(model).name)


def plan_replicas(
    ec, model: str | Path, log_dir: Path, name: str = "model", probe_ports: bool = True
) -> list[Replica]:
    """The replicas `serving` starts (not started): host, port, GPUs and command of each. On this machine each
    replica takes the next free port from engine.port (`probe_ports=False`, for a dry run: the next port);
    replicas on other hosts count from engine.port per host."""
    replicas = []
    next_port: dict[str, int] = {}
    for i in range(ec.servers):
        host = replica_host(ec, i)
        port = next_port.get(host, ec.port)
        while probe_ports and host in LOCAL_HOSTS and not port_free(port):
            port += 1
        next_port[host] = port + 1
        cmd = server_command(ec, str(model), served_name(ec, model), port, host)
        replicas.append(Replica(cmd, port, log_dir / f"{name}-{i}.log", replica_env(ec, i), host))
    return replicas


@contextmanager
def serving(ec, model: str | Path, log_dir: Path, name: str = "model"):
    """Start `ec.servers` replicas of `model`, yield an engine over them, stop them on exit (whatever happens)."""
    from psrlm.engines.openai_api import OpenAIEngine

    served = served_name(ec, model)
    # transformers serve decodes greedily unless a request asks for sampling in a generation_config
    sampling = {"generation_config": json.dumps({"do_sample": True})} if ec.kind == "transformers" else {}
    replicas = plan_replicas(ec, model, log_dir, name)
    try:
        for r in replicas:
            r.start()
        for r in replicas:
            wait_ready(r, served, ec.server_timeout_s, {})
        inner = OpenAIEngine([r.root + "/v1" for r in replicas], served, api_key_env=ec.api_key_env,
                             concurrency=ec.concurrency, timeout_s=ec.timeout_s, max_retries=ec.max_retries,
                             extra_body={**ec.extra_body}, on_error="empty", sampling_body=sampling)  # fmt: skip
        yield ManagedEngine(replicas, served, inner, ec.server_timeout_s, ec.server_restarts)
    finally:
        for r in replicas:
            r.stop()
