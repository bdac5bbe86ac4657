"""Scale-out on real components at CPU size: generation servers the driver starts, restarts and stops (a real
`transformers serve` on 127.0.0.1), training as `accelerate launch` jobs of 2 processes, resume of a killed job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from psrlm.configs import ConfigError, EngineConfig, load_config
from psrlm.engines.base import GenParams
from psrlm.engines.servers import ServerError, port_free, serving

from .conftest import SMALL

for _mod in ("fastapi", "uvicorn", "openai"):
    pytest.importorskip(_mod, reason="`transformers serve` needs transformers[serving]")


def _ec(**kw) -> EngineConfig:
    kw = {"server_timeout_s": 120, **kw}
    return EngineConfig(kind="transformers", port=8400 + os.getpid() % 500, timeout_s=60, max_retries=1, **kw)


def test_a_server_is_started_used_and_stopped_on_each_checkpoint(tiny_model_dir, stepping_model_dir, tmp_path):
    ec = _ec()
    ports = []
    for model in (tiny_model_dir, stepping_model_dir):  # a new checkpoint gets its own server
        with serving(ec, model, tmp_path / "servers", name=model.name) as engine:
            port = engine.replicas[0].port
            ports.append(port)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as r:
                models = json.loads(r.read())["data"]
            assert [m["id"] for m in models] == [str(model)]  # serving this checkpoint, not another
            [[c]] = engine.generate(["Q: 1 + 1?\nA:\nStep 1:"], GenParams(max_new_tokens=4))
            assert c.finish_reason in ("stop", "length") and c.tokens > 0
            sampled = engine.generate(["Q: 2 + 2?\nA:\nStep 1:"], GenParams(n=2, temperature=1.0, max_new_tokens=4,
                                                                           seed=3))  # fmt: skip
            assert len(sampled[0]) == 2
        assert port_free(port)  # stopped, and the port is free again
    assert (tmp_path / "servers" / f"{tiny_model_dir.name}-0.log").exists()


def test_data_eft_serves_its_policy_on_the_servers_psrlm_starts(stepping_model_dir, tiny_model_dir, tmp_path):
    """`psrlm data eft -c configs/paper-7b.yaml` stopped at once ("engine.kind='vllm' starts its own servers"): the
    MCTS policy is now served as `psrlm iterate` serves a model, here by a real `transformers serve` psrlm starts,
    uses and stops (logs in <run>/servers/), with the PRM on the CPU (`initdata.prm_device`)."""
    import json as _json

    from psrlm.cli import main

    from .serving import NO_KEY, TeacherAPI

    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(_json.dumps({"id": f"q{i}", "question": f"Mia has {i} pens and finds 2 more. How "
                                                  "many now?", "answer": str(i + 2)}) + "\n" for i in range(2)))  # fmt: skip
    run = tmp_path / "run"
    port = 8400 + (os.getpid() + 7) % 500
    with TeacherAPI(reasoning=False) as api:
        sets = [f"paths.run_dir={run}", "prompts.variant=compact", f"initdata.eft_problems={problems}",
                f"initdata.policy_path={stepping_model_dir}", f"initdata.prm_path={tiny_model_dir}",
                "initdata.prm_format=next_token", "initdata.prm_device=cpu", "initdata.iterations=2",
                "initdata.expand_width=2", "initdata.simulation_depth=1", "initdata.max_depth=2",
                "initdata.max_step_tokens=24", "initdata.min_margin=0.0", "initdata.eft_test=1",
                "engine.kind=transformers", f"engine.port={port}", "engine.server_timeout_s=120",
                "initdata.teacher_engine.api=chat", f"initdata.teacher_engine.base_urls=[{api.base_url}]",
                f"initdata.teacher_engine.api_key_env={NO_KEY}", "initdata.teacher_model=teacher"]  # fmt: skip
        assert main(["data", "eft", *sum((["--set", x] for x in sets), [])]) == 0
    counts = _json.loads((run / "initdata" / "eft_counts.json").read_text())
    assert counts["mcts"]["problems"] == 2 and counts["mcts"]["gen_tokens"] > 0 and counts["prm"]["device"] == "cpu"
    assert (run / "servers" / "policy-0.log").exists() and port_free(port)


def test_a_replica_on_another_host_is_started_by_its_command_and_reached_at_that_host(tiny_model_dir, tmp_path):
    """engine.server_hosts: 127.0.0.2 (loopback, but not this machine's name for itself) stands in for another
    node; the command template starts the server there (`srun -w {host}` on a cluster) and the driver talks to
    http://127.0.0.2:port, not to 127.0.0.1."""
    template = "{python} -m transformers.cli.transformers serve {model} --host {host} --port {port} --device cpu"
    ec = _ec(server_hosts=["127.0.0.2"], server_cmd=template)
    with serving(ec, tiny_model_dir, tmp_path / "servers") as engine:
        [r] = engine.replicas
        assert r.root == f"http://127.0.0.2:{r.port}" and "127.0.0.2" in r.cmd and not r.local
        [[c]] = engine.generate(["Q: 1 + 1?\nA:\nStep 1:"], GenParams(max_new_tokens=4))
        assert c.tokens > 0
    assert r.proc is None  # stopped with the stage


def test_a_remote_host_without_a_command_that_reaches_it_is_refused():
    with pytest.raises(ConfigError, match=r"engine.server_hosts=.*node7 is another host.*\{host\}"):
        load_config(None, ["engine.kind=vllm", "engine.server_hosts=[node7]"])
    with pytest.raises(ConfigError, match=r"launch.wrapper=.*must hold the slot \{command\}"):
        load_config(None, ["launch.wrapper=srun bash -c"])


def test_a_server_killed_mid_stage_is_restarted_and_the_stage_finishes(stepping_model_dir, small_cfg, tmp_path):
    from psrlm.configs import SearchConfig
    from psrlm.initdata.build import arith_splits
    from psrlm.prompts import get_prompts
    from psrlm.records import SearchTrace, read_jsonl
    from psrlm.search import run_search

    problems = arith_splits(small_cfg)["test"][:8]
    cfg = SearchConfig(width=2, max_steps=2, max_rounds=3, max_step_tokens=16, judge_max_tokens=4, max_active=1)
    traces = tmp_path / "s" / "traces.jsonl"

    def kill_after_first_problem(pid: int) -> None:  # mid-stage: one problem committed, the rest to go
        deadline = time.time() + 120
        while (not traces.exists() or not traces.read_text()) and time.time() < deadline:
            time.sleep(0.02)
        os.killpg(pid, signal.SIGKILL)

    with serving(_ec(), stepping_model_dir, tmp_path / "servers") as engine:
        replica = engine.replicas[0]
        first_pid = replica.proc.pid
        killer = threading.Thread(target=kill_after_first_problem, args=(first_pid,), daemon=True)
        killer.start()
        result = run_search(problems, engine, get_prompts("compact"), cfg, out_dir=tmp_path / "s", progress=False)
        killer.join(5)
        assert replica.restarts == 1 and replica.proc.pid != first_pid
    done = read_jsonl(traces, SearchTrace)
    assert len(done) + len(result.failed) == 8  # every problem finished, or failed and left for a rerun
    if result.failed:  # a rerun searches exactly those again
        with serving(_ec(), stepping_model_dir, tmp_path / "servers") as engine:
            run_search(problems, engine, get_prompts("compact"), cfg, out_dir=tmp_path / "s", progress=False)
        assert len(read_jsonl(traces, SearchTrace)) == 8


def test_prompt_log_probs_are_asked_again_after_a_dead_replica_restarts(monkeypatch):
    """Soft verdicts over a managed server: the log-prob request raises (it has no "error" answer to give) when its
    replica died; the replica is restarted and the request repeated, as for generation. Glue only: the replica and
    the inner engine are stand-ins, the real restart is test_a_server_killed_mid_stage_..."""
    from psrlm.engines import servers
    from psrlm.engines.openai_api import EngineError

    class Stub:
        port, log_path, restarts, up = 8100, Path("x.log"), 0, False

        def alive(self):
            return self.up

        def stop(self):
            pass

        def start(self):
            self.up = True

    class Inner:
        calls = 0

        def continuation_logprobs(self, prompts, continuations, affinity=None):
            self.calls += 1
            if self.calls == 1:
                raise EngineError("connection refused")
            return [-1.0] * len(prompts)

    monkeypatch.setattr(servers, "wait_ready", lambda *a, **k: None)
    replica, inner = Stub(), Inner()
    engine = servers.ManagedEngine([replica], "m", inner, timeout_s=1, restarts=1)
    assert engine.continuation_logprobs(["p"], [" [[A]]"]) == [-1.0]
    assert inner.calls == 2 and replica.restarts == 1
    replica.up, inner.calls = True, 0  # a failure with every replica alive is the server's answer: raised
    with pytest.raises(EngineError):
        engine.continuation_logprobs(["p"], [" [[A]]"])


def test_a_server_that_never_becomes_ready_is_an_error_with_its_log(tmp_path):
    ec = _ec(server_cmd=f"{sys.executable} -c \"print('loading weights...', flush=True); import time; time.sleep(60)\"",
             server_timeout_s=3)  # fmt: skip
    start = time.time()
    with pytest.raises(ServerError, match=r"(?s)not ready after 3 s.*loading weights"):
        with serving(ec, "m", tmp_path / "servers"):
            pass
    assert time.time() - start < 30


def test_a_server_that_exits_at_once_is_an_error_with_its_log(tmp_path):
    ec = _ec(server_cmd=f"{sys.executable} -c \"import sys; print('CUDA out of memory'); sys.exit(3)\"")
    with pytest.raises(ServerError, match=r"(?s)exited \(code 3\).*CUDA out of memory"):
        with serving(ec, "m", tmp_path / "servers"):
            pass


def test_a_port_in_use_is_a_clear_error(tmp_path):
    from psrlm.engines.servers import Replica

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        replica = Replica(["true"], port, tmp_path / "x.log", {})
        with pytest.raises(ServerError, match=f"port {port} is already in use"):
            replica.start()


def test_an_unknown_slot_in_the_server_command_is_named():
    from psrlm.engines.servers import server_command

    with pytest.raises(ServerError, match=r"unknown slot \{gpu\}"):
        server_command(_ec(server_cmd="vllm serve {model} --gpu {gpu}"), "m", "m", 8000)
    cmd = server_command(EngineConfig(kind="vllm", tensor_parallel=2), "/ckpt/M2", "M2", 8123)
    assert cmd[:3] == ["vllm", "serve", "/ckpt/M2"] and "--enable-prefix-caching" in cmd
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "2" and cmd[cmd.index("--port") + 1] == "8123"


# ------------------------------------------------------------------------------------------ training jobs


def _sets(run: Path, *extra: str) -> list[str]:
    return [*SMALL, f"paths.run_dir={run}", "sft.batch_size=4", "sft.lr=0.001", "dpo.batch_size=2", "dpo.lr=0.001",
            *extra]  # fmt: skip


def test_training_runs_as_an_accelerate_job_of_two_processes(tiny_model_dir, tmp_path):
    """launch.accelerate_config=cpu: `accelerate launch` (torchrun, gloo) of `psrlm train`; one model, one
    manifest, written by the main process; the effective batch counts both processes."""
    from psrlm.launch import launch_training
    from psrlm.records import StepSolution, write_jsonl

    from .test_train import _pairs

    ift = tmp_path / "ift.jsonl"
    write_jsonl(ift, [StepSolution("a", ["2 + 1 = 3.", "\\boxed{3}"], "3", {"question": "Mia has 2 pens."})] * 8)
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(pairs, _pairs())
    cfg = load_config(None, _sets(tmp_path / "run", "launch.accelerate_config=cpu", "sft.epochs=1"))
    m1 = launch_training(cfg, "sft", tiny_model_dir, tmp_path / "M1", {"ift": [ift]}, iteration=1)
    # the DPO job goes through a wrapper, as on Slurm (srun ... bash -c {command}): the machine rank is a variable
    # that the task's own shell expands
    wrapped = load_config(None, _sets(tmp_path / "run", "launch.accelerate_config=cpu",
                                      "launch.wrapper=env PSRLM_NODE=0 bash -c {command}",
                                      "launch.extra_args=[--num_machines, '1', --machine_rank, $PSRLM_NODE]"))  # fmt: skip
    m2 = launch_training(wrapped, "dpo", tmp_path / "M1", tmp_path / "M2", {"pairs": [pairs]}, iteration=2)
    for m, batch in ((m1, 4), (m2, 2)):
        train = m.metrics["train"]
        assert train["processes"] == 2 and train["effective_batch"] == batch * 2 and train["steps"] > 0
    assert (tmp_path / "M2" / "model.safetensors").exists() and not (tmp_path / "M2.tmp").exists()
    log = (tmp_path / "M2.launch.log").read_text()
    assert "bash -c" in log and "accelerate.commands.launch --config_file" in log and "train dpo" in log
    assert '--machine_rank "$PSRLM_NODE"' in log


def test_a_failed_job_stops_with_its_log_tail_and_leaves_no_finished_model(tiny_model_dir, tmp_path):
    from psrlm.launch import JobError, launch_training

    cfg = load_config(None, _sets(tmp_path / "run", "launch.accelerate_config=cpu"))
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "x", "chosen": 1}\n')  # not a PreferencePair
    with pytest.raises(JobError, match=r"(?s)exit [1-9].*PreferencePair"):
        launch_training(cfg, "dpo", tiny_model_dir, tmp_path / "M2", {"pairs": [bad]})
    assert not (tmp_path / "M2").exists()


def test_an_unknown_accelerate_config_lists_the_shipped_ones():
    from psrlm.launch import accelerate_config

    shipped = "cpu, fsdp, zero3, zero3-cpu, zero3-offload"
    with pytest.raises(ConfigError, match=rf"no accelerate config 'zero4'; shipped: {shipped}"):
        accelerate_config("zero4")


def test_the_launch_command_is_built_in_one_place(tiny_model_dir, tmp_path):
    from psrlm.launch import train_command

    cfg = load_config(None, ["launch.accelerate_config=zero3", "launch.num_processes=8"])
    cmd = train_command(cfg, tmp_path / "r.yaml", "dpo", Path("/m/M1"), Path("/m/M2"),
                        {"pairs": [Path("/p.jsonl")]}, ref=Path("/m/M1"), iteration=2, seed_offset=1)  # fmt: skip
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--config_file"] and cmd[4].endswith("zero3.yaml")
    assert cmd[5:7] == ["--num_processes", "8"]
    assert cmd[7:] == ["-m", "psrlm.cli", "train", "dpo", "-c", str(tmp_path / "r.yaml"), "--model", "/m/M1",
                       "--out", "/m/M2", "--iteration", "2", "--seed-offset", "1", "--pairs", "/p.jsonl",
                       "--ref", "/m/M1"]  # fmt: skip
    # a DeepSpeed JSON named beside its accelerate config goes on the command line by its absolute path (accelerate
    # would look for it in the working directory)
    cpu = train_command(load_config(None, ["launch.accelerate_config=zero3-cpu"]), tmp_path / "r.yaml", "sft",
                        Path("/m/M0"), Path("/m/M1"), {"ift": [Path("/i.jsonl")]})  # fmt: skip
    assert cpu[5:7] == ["--deepspeed_config_file", str(cmd[4].removesuffix("zero3.yaml") + "zero3-cpu.json")]
    assert Path(cpu[6]).is_absolute() and Path(cpu[6]).is_file()
    slurm = load_config(None, ["launch.accelerate_config=zero3", "launch.wrapper=srun --nodes=2 bash -c {command}",
                               "launch.extra_args=[--machine_rank, $SLURM_PROCID]"])  # fmt: skip
    wrapped = train_command(slurm, tmp_path / "r.yaml", "dpo", Path("/m/M1"), Path("/m/M2"), {"pairs": [Path("/p")]})
    assert wrapped[:4] == ["srun", "--nodes=2", "bash", "-c"] and len(wrapped) == 5
    assert '--machine_rank "$SLURM_PROCID" -m psrlm.cli train dpo' in wrapped[4]


def test_a_killed_training_job_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path):
    from psrlm.records import StepSolution, write_jsonl

    ift = tmp_path / "ift.jsonl"
    write_jsonl(ift, [StepSolution(f"a{i}", [f"{i} + 1 = {i + 1}.", f"\\boxed{{{i + 1}}}"], str(i + 1),
                                   {"question": f"Mia has {i} pens."}) for i in range(64)])  # fmt: skip
    sets = sum((["--set", s] for s in _sets(tmp_path / "run", "sft.epochs=6", "sft.save_steps=4")), [])
    cmd = [sys.executable, "-m", "psrlm.cli", "train", "sft", *sets, "--model", str(tiny_model_dir), "--ift", str(ift),
           "--out", str(tmp_path / "M1")]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "TQDM_DISABLE": "1"})  # fmt: skip
    trainer = tmp_path / "M1.trainer"
    deadline = time.time() + 120
    while not list(trainer.glob("*/checkpoint-8")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(trainer.glob("*/checkpoint-*")) and not (tmp_path / "M1").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = json.loads((tmp_path / "M1" / "train_log.json").read_text())
    assert log["resumed_from"] and "checkpoint-" in log["resumed_from"] and log["steps"] == 96
