"""How long a recipe will take on this machine, said before it starts: a few seconds of calibration, scaled from a
run of the same recipe measured on a reference machine.

Why two speeds and not one: CPUs differ most in training (an AVX2-only EPYC trained the demo's SFT ~10x slower than
an AVX512 Xeon with native bf16) and much less in generation (~1.7x), so one "this machine is k times slower"
mispredicts the demo by a factor of three. The calibration times one training step (forward, backward, AdamW) of
the recipe's M0 at the SFT batch shape, and one batched greedy generation through the engine the stages use; the
reference holds the same two timings and the recipe's stage times, split into training stages and the rest, from
one measured run (`psrlm demo --calibrate-reference`, written beside the recipe as `<recipe>.reference.json`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from psrlm.configs import Config
from psrlm.run_layout import RunLayout

TRAINING_STAGES = ("M0 pretrain", "M1 SFT", "DPO", "RFT", "policy EFT")  # stage keys of timings.json, by substring
TRAIN_LENGTH = 128  # tokens per row of the calibration step: about the demo's SFT mixture's mean
GEN_PROMPT, GEN_NEW = 96, 24  # tokens per prompt and new tokens per row of the calibration generation


@dataclass
class Speeds:
    train_step_s: float  # one optimizer step at sft.batch_size x TRAIN_LENGTH
    generate_s: float  # engine.batch_size prompts, GEN_NEW new tokens each
    cpu: str = ""


def reference_path(recipe: Path) -> Path:
    return recipe.with_suffix(".reference.json")


def calibrate(cfg: Config, model_dir: Path) -> Speeds:
    """Time training steps and a generation on this machine (each after a warm-up): a few seconds on a fast CPU."""
    import torch

    from psrlm.hardware import cpu_model, native_bf16_cpu

    cpu = f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()}, {'' if native_bf16_cpu() else 'no '}native bf16"
    return Speeds(_train_step_s(cfg, model_dir), _generate_s(cfg, model_dir), cpu)


def _train_step_s(cfg: Config, model_dir: Path, steps: int = 2) -> float:
    import torch

    from psrlm.hardware import train_bf16
    from psrlm.tiny import load_model

    model = load_model(model_dir).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.randint(3, model.config.vocab_size, (cfg.sft.batch_size, TRAIN_LENGTH),
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    bf16 = train_bf16(cfg.sft.bf16) and not torch.cuda.is_available()  # as the trainers run (autocast on a CPU)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps  # the first warms up


def _generate_s(cfg: Config, model_dir: Path) -> float:
    from psrlm.engines.base import GenParams
    from psrlm.engines.hf import HFEngine

    engine = HFEngine(model_dir, device=cfg.engine.device, dtype=cfg.engine.dtype, batch_size=cfg.engine.batch_size,
                      static_cache=cfg.engine.static_cache)  # fmt: skip
    words = " ".join(["12 + 7 = 19."] * (GEN_PROMPT // 6))
    prompts = [f"{i} {words}" for i in range(cfg.engine.batch_size)]
    params = GenParams(n=1, temperature=0.0, max_new_tokens=GEN_NEW)
    engine.generate(prompts[:8], params)
    start = time.perf_counter()
    engine.generate(prompts, params)
    return time.perf_counter() - start


def split_times(timings: dict) -> tuple[float, float]:
    """(training seconds, other seconds) of a run's timings.json (stage/model keys; the wall time left out)."""
    from psrlm.runfolder import WALL_KEY

    train = other = 0.0
    for key, seconds in timings.items():
        if key == WALL_KEY:  # the process's wall time, which the stages' times add up to
            continue
        if any(stage in key.split("/")[0] for stage in TRAINING_STAGES):
            train += seconds
        else:
            other += seconds
    return train, other


def write_reference(recipe: Path, cfg: Config, speeds: Speeds, timings: dict, fingerprint: str) -> Path:
    train, other = split_times(timings)
    path = reference_path(recipe)
    path.write_text(json.dumps({"recipe": fingerprint, "speeds": asdict(speeds), "train_s": round(train, 1),
                                "other_s": round(other, 1)}, indent=2) + "\n")  # fmt: skip
    return path


def estimate(reference: dict, here: Speeds) -> dict:
    """Seconds this machine should take: the reference's training time scaled by the training speed ratio, the rest
    by the generation speed ratio."""
    ref = reference["speeds"]
    train_x = here.train_step_s / ref["train_step_s"]
    gen_x = here.generate_s / ref["generate_s"]
    total = reference["train_s"] * train_x + reference["other_s"] * gen_x
    return {"seconds": total, "train_x": train_x, "generate_x": gen_x, "reference_cpu": ref.get("cpu", ""),
            "reference_s": reference["train_s"] + reference["other_s"]}  # fmt: skip


def recipe_fingerprint(cfg: Config) -> str:
    """The settings that decide a demo's work (not where it is written nor how a machine runs it)."""
    from psrlm.configs import config_to_dict
    from psrlm.folders import fingerprint

    d = config_to_dict(cfg)
    d.pop("paths", None)
    d.pop("track", None)
    return fingerprint(d)


def say_estimate(cfg: Config, recipe: Path | None, model_dir: Path) -> dict | None:
    """The line printed before a demo starts, or None (and a line saying why) when there is no reference for it."""
    if recipe is None or not reference_path(recipe).is_file():
        print("estimate: none (no reference run recorded for this recipe)")
        return None
    reference = json.loads(reference_path(recipe).read_text())
    if reference.get("recipe") != recipe_fingerprint(cfg):
        print(f"estimate: none (settings differ from the reference run's, {reference_path(recipe).name})")
        return None
    here = calibrate(cfg, model_dir)
    e = estimate(reference, here)
    print(f"estimate: about {round(e['seconds'] / 60)} min on this machine (a training step {e['train_x']:.1f}x and "
          f"generation {e['generate_x']:.1f}x the time they take on the reference machine, {e['reference_cpu']}, "
          f"where this recipe took {round(e['reference_s'] / 60)} min)", flush=True)  # fmt: skip
    return e


def work(run_dir: Path) -> dict:
    """What a finished run computed, in units no CPU changes (docs/results.md, "The demo's cost"): tokens trained by SFT (each
    epoch counted), DPO pairs, tokens generated and judge calls of the training searches, greedy evaluation tokens
    and judged EFT items (both orders), and test-time search tokens. Read from the manifests and metrics files."""
    from psrlm.records import read_json

    layout = RunLayout(run_dir)
    out = {"sft_tokens": 0, "dpo_pairs": 0, "search_tokens": 0, "judge_calls": 0, "eval_tokens": 0, "eval_judged": 0,
           "tts_tokens": 0}  # fmt: skip
    for path in sorted(layout.manifests.glob("*.json")):
        m = read_json(path)
        train = (m.get("metrics") or {}).get("train") or {}
        search = (m.get("metrics") or {}).get("search") or {}
        if train.get("stage") == "sft":
            out["sft_tokens"] += int(train.get("tokens", 0)) * int((m.get("settings") or {}).get("sft.epochs", 1))
        elif train.get("stage") == "dpo":
            out["dpo_pairs"] += int(train.get("pairs", 0))
        out["search_tokens"] += int(search.get("gen_tokens", 0))
        out["judge_calls"] += int(search.get("judge_calls", 0))
    for path in sorted(layout.evals.glob("*/metrics.json")):
        m = read_json(path)
        if m.get("copy_of"):  # an unchanged copy's evaluation is its parent's: generated once, counted once
            continue
        out["eval_tokens"] += sum(int(b["n"] * b.get("mean_tokens", 0)) for b in (m.get("benchmarks") or {}).values())
        out["eval_judged"] += 2 * int((m.get("judge") or {}).get("n") or 0)
    for path in sorted(layout.evals.glob("*/tts.json")):
        t = read_json(path)["tts"]
        out["tts_tokens"] += int(t.get("tokens_per_problem", 0) * read_json(path)["n"])
    return out


def say_work(w: dict) -> str:
    return (f"work: {w['sft_tokens']:,} tokens trained by SFT, {w['dpo_pairs']:,} DPO pairs; search generated "
            f"{w['search_tokens']:,} tokens with {w['judge_calls']:,} judge calls; evaluation generated "
            f"{w['eval_tokens']:,} tokens and judged {w['eval_judged']:,} EFT prompts; test-time search "
            f"{w['tts_tokens']:,} tokens")  # fmt: skip
