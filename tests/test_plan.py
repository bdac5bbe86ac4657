"""`psrlm plan` and `psrlm iterate --dry-run` on the paper recipes: memory under the accelerate config the recipe
launches with, and the commands each stage would run, with nothing run and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from psrlm.configs import load_config
from psrlm.dry_run import dry_run
from psrlm.plan import KNOWN, Arch, TrainingShape, plan, train_memory_gb, training_shape

REPO = Path(__file__).resolve().parents[1]


def _paper(name: str, tmp_path: Path, *sets: str):
    return load_config(REPO / "configs" / f"{name}.yaml", [f"paths.run_dir={tmp_path / 'run'}", *sets])


@pytest.mark.parametrize(
    ("recipe", "sets", "expected"),
    [
        ("paper-7b", [], TrainingShape(3, 8, False, False, "zero3.yaml")),
        ("paper-72b", [], TrainingShape(3, 8, True, True, "zero3-offload.yaml")),
        ("paper-7b", ["launch.accelerate_config=fsdp"], TrainingShape(3, 8, False, False, "fsdp.yaml")),
        ("paper-7b", ["launch.num_processes=4"], TrainingShape(3, 4, False, False, "zero3.yaml")),
        ("demo", ["launch.accelerate_config=zero3-cpu"], TrainingShape(3, 2, False, False, "zero3-cpu.yaml")),
        ("paper-7b", ['launch.accelerate_config=""', "plan.zero_stage=2", "plan.gpus=1"], TrainingShape(2, 1)),
    ],
)
def test_the_training_shape_comes_from_the_accelerate_config_the_recipe_launches_with(
    recipe, sets, expected, tmp_path
):
    assert training_shape(_paper(recipe, tmp_path, *sets)) == expected


def test_zero3_shards_every_state_over_the_processes_and_offload_moves_them_to_host_memory(tmp_path):
    cfg = _paper("paper-7b", tmp_path)
    arch = Arch(**KNOWN["qwen2.5-math-7b"])
    n = arch.params
    assert 7.5e9 < n < 7.7e9  # Qwen2.5-Math-7B: 7.62 B
    m = train_memory_gb(arch, cfg, "dpo", 2048, TrainingShape(3, 8), checkpointing=True)
    assert m["optimizer"] == pytest.approx(12 * n / 8 * 1e-9) and m["weights"] == pytest.approx(2 * n / 8 * 1e-9)
    assert m["reference"] == pytest.approx(m["weights"]) and m["cpu_offload"] == 0
    single = train_memory_gb(arch, cfg, "dpo", 2048, TrainingShape(0, 1), checkpointing=True)
    assert single["optimizer"] == pytest.approx(12 * n * 1e-9) and single["gathered"] == 0
    offload = train_memory_gb(arch, cfg, "dpo", 2048, TrainingShape(3, 8, True, True), checkpointing=True)
    assert offload["optimizer"] == offload["weights"] == 0
    assert offload["cpu_offload"] == pytest.approx(m["optimizer"] + m["gradients"] + m["weights"] + m["reference"])
    assert offload["total"] < m["total"]


@pytest.mark.parametrize("recipe", ["paper-7b", "paper-72b"])
def test_the_paper_recipes_fit_an_80_gb_gpu_only_with_activation_checkpointing(recipe, tmp_path):
    memory = plan(_paper(recipe, tmp_path))["memory_gb_per_gpu"]
    assert memory["dpo"][True]["total"] < 80 < memory["dpo"][False]["total"]
    assert memory["sft"][True]["total"] < 80
    assert not (tmp_path / "run").exists()  # planning writes nothing


def test_the_dry_run_lists_each_replica_on_its_own_gpus_and_each_training_job_and_runs_nothing(tmp_path):
    lines = dry_run(_paper("paper-72b", tmp_path))
    trains = [line for line in lines if line.strip().startswith("train:")]
    assert len(trains) == 4  # M1 (SFT) and M2..M4 (DPO)
    assert all("--config_file" in t and "zero3-offload.yaml" in t and "--num_processes 8" in t for t in trains)
    assert " train sft " in trains[0] and all(" train dpo " in t and "--ref " in t for t in trains[1:])
    serves = [line for line in lines if line.strip().startswith("serve ")]
    # 2 replicas for each of 3 searches, 5 evaluations (M0..M4) and 2 test-time searches (M1, M4)
    assert len(serves) == 2 * (3 + 5 + 2)
    assert "CUDA_VISIBLE_DEVICES=0,1,2,3 vllm serve" in serves[0] and "--tensor-parallel-size 4" in serves[0]
    assert "CUDA_VISIBLE_DEVICES=4,5,6,7 vllm serve" in serves[1] and "--port 8101" in serves[1]
    assert sum("stop the 2 server(s)" in line for line in lines) == 3 + 5 + 2
    assert not (tmp_path / "run").exists()


def test_the_slurm_template_runs_the_driver_with_one_server_per_node_and_training_on_every_node(tmp_path):
    """scripts/slurm/psrlm-iterate.slurm run as Slurm would (its variables set, `scontrol` answering with the
    allocation's two nodes), with --dry-run appended: its --set options are a valid recipe, each checkpoint gets a
    vLLM server per node started there by srun, and each training job is one accelerate launch per node with its
    machine rank left to the node's shell and c10d rendezvous on the first node."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nprintf 'gpu-a\\ngpu-b\\n'\n")  # what `show hostnames` prints
    (bin_dir / "scontrol").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-[a-b]",
           "SLURM_JOB_ID": "4242", "PSRLM_VENV": str(Path(sys.executable).parent.parent), "TP": "2"}  # fmt: skip
    script = REPO / "scripts" / "slurm" / "psrlm-iterate.slurm"
    done = subprocess.run(["bash", str(script), str(REPO / "configs" / "paper-7b.yaml"),
                           "--set", f"paths.run_dir={tmp_path / 'run'}", "--dry-run"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    serves = [line for line in lines if line.strip().startswith("serve psrlm-M1")]
    assert len(serves) == 2 * 3  # one server per node, for the M2 search, M1's evaluation and its test-time search
    assert "srun --nodes=1 --ntasks=1 --overlap -w gpu-a " in serves[0] and "-w gpu-b " in serves[1]
    assert "--host 0.0.0.0 --port 8100" in serves[1] and "--tensor-parallel-size 2 --data-parallel-size 4" in serves[0]
    trains = [line for line in lines if line.strip().startswith("train:")]
    assert len(trains) == 4
    for t in trains:
        assert t.split("train: ")[1].startswith("srun --nodes=2 --ntasks-per-node=1 --overlap bash -c ")
        assert "--num_processes 16" in t and "zero3.yaml" in t
        assert '--machine_rank "$SLURM_PROCID"' in t and "--main_process_ip gpu-a --main_process_port 29742" in t
        assert "--rdzv_backend c10d" in t
    assert not (tmp_path / "run").exists()
