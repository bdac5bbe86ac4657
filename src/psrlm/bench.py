"""`psrlm bench`: throughput of the step search against its limits, measured in one run on the same problems.

    make bench      # = psrlm bench --config configs/demo.yaml

  (a) raw   the engine's batched generation on the search's own prompt shapes (candidate steps with n=w, and
            judge prompts), no stop strings: the throughput limit
  (b) search the batched search (all active problems' candidates in one call, all judgments in one call)
  (c) naive the same search one problem at a time and one judge prompt per engine call
Targets: (b) generated tok/s >= 60 % of (a); (b) problems/min >= 5x (c). Also: judge calls per step, no-verdict
and rollback rates, the agreement of the cheaper judge modes with the full round robin, evaluation problems/s
on arith, and the grader's throughput on the MATH gold answers. Prints a table,
writes `<run_dir>/bench/bench.json`, and ends with `search_vs_raw=<r> search_vs_naive=<r>`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from psrlm.configs import Config
from psrlm.engines.base import GenParams
from psrlm.records import Problem, read_jsonl, write_json
from psrlm.run_layout import RunLayout


class OnePromptPerCall:
    """Engine adapter for the naive baseline: every prompt is its own engine call."""

    def __init__(self, inner):
        self.inner = inner
        self.stats = inner.stats

    def generate(self, prompts, params):
        return [self.inner.generate([p], params)[0] for p in prompts]

    def __getattr__(self, name):  # model/tokenizer for logit verdicts (those are read in one forward pass anyway)
        return getattr(self.inner, name)


def _search(problems, engine, prompts, cfg):
    from psrlm.search import run_search

    start = time.perf_counter()
    tokens_before = engine.stats.gen_tokens
    result = run_search(problems, engine, prompts, cfg, progress=False)
    wall = time.perf_counter() - start
    return result, wall, engine.stats.gen_tokens - tokens_before


def raw_throughput(engine, prompts, problems, cfg) -> dict:
    from psrlm.judge import plan_pairs

    step_prompts = [prompts.step_prompt(p.question, p.meta["steps"][:1]) for p in problems]
    judge_prompts = []
    for p in problems:
        cands = p.meta["steps"][1:2] * 2 + p.meta["steps"][:1]
        for a, b in plan_pairs(len(cands), cfg.judge_mode, cfg.cyclic_k):
            judge_prompts.append(prompts.judge_prompt(p.question, p.meta["steps"][:1], cands[a], cands[b]))
    start = time.perf_counter()
    before = engine.stats.gen_tokens
    engine.generate(step_prompts, GenParams(n=cfg.width, temperature=cfg.temperature, top_p=cfg.top_p,
                                            max_new_tokens=cfg.max_step_tokens, seed=0))  # fmt: skip
    engine.generate(judge_prompts, GenParams(n=1, max_new_tokens=cfg.judge_max_tokens))
    wall = time.perf_counter() - start
    tokens = engine.stats.gen_tokens - before
    return {"tokens": tokens, "seconds": wall, "tok_per_s": tokens / wall}


def judge_mode_agreement(engine, prompts, problems, cfg) -> dict:
    """Sample one round of candidates per problem, judge it under every mode (with the recipe's verdict reading:
    generated, logits or soft), compare best/worst choices."""
    from psrlm.judge import Judgment, plan_pairs, score_candidates, unique_candidates
    from psrlm.search import judge_all
    from psrlm.steps import STEP_STOP, clean_candidate

    step_prompts = [prompts.step_prompt(p.question, []) for p in problems]
    gen = engine.generate(step_prompts, GenParams(n=cfg.width, temperature=cfg.temperature, top_p=cfg.top_p,
                                                  max_new_tokens=cfg.max_step_tokens, stop=(STEP_STOP,), seed=1))  # fmt: skip
    sets = [unique_candidates([c for c in (clean_candidate(o.text) for o in outs) if c])[0] for outs in gen]
    sets = [(p, s) for p, s in zip(problems, sets, strict=True) if len(s) > 2]
    modes = {"all_ordered": {}, "one_order": {}, "cyclic": {}}
    for mode in modes:
        asks, spans = [], []
        for p, s in sets:
            pairs = plan_pairs(len(s), mode, cfg.cyclic_k)
            spans.append((len(asks), pairs))
            asks += [prompts.judge_prompt(p.question, [], s[a], s[b]) for a, b in pairs]
        outs = judge_all(engine, asks, cfg, seeds=2) if asks else []
        picks = []
        for (offset, pairs), (_, s) in zip(spans, sets, strict=True):
            js = [Judgment(a, b, v.verdict, p_a=v.p_a) for (a, b), v in zip(pairs, outs[offset:], strict=False)]
            sc = score_candidates(len(s), js, cfg.scoring, cfg.tie_margin)
            picks.append(None if sc.tie else (sc.best, sc.worst))
        modes[mode] = {"calls": len(asks), "picks": picks}
    full = modes["all_ordered"]["picks"]
    out = {"rounds": len(sets), "verdict": cfg.verdict}
    for mode, m in modes.items():
        both = [(f, x) for f, x in zip(full, m["picks"], strict=True) if f is not None and x is not None]
        out[mode] = {
            "judge_calls": m["calls"],
            "tie_rate": sum(x is None for x in m["picks"]) / max(1, len(sets)),
            "best_agreement": sum(f[0] == x[0] for f, x in both) / max(1, len(both)),
            "pair_agreement": sum(f == x for f, x in both) / max(1, len(both)),
        }
    return out


def eval_throughput(engine, prompts, problems, max_tokens: int) -> dict:
    """Greedy evaluation of the model on arith problems (generation + grading), problems per second."""
    from psrlm.evaluate import solve_greedy

    start = time.perf_counter()
    results = solve_greedy(problems, engine, prompts, max_tokens)
    wall = time.perf_counter() - start
    return {"problems": len(problems), "seconds": wall, "problems_per_s": len(problems) / wall,
            "accuracy": sum(r.correct for r in results) / max(1, len(results))}  # fmt: skip


def grading_throughput(data_dir: Path, mismatched: int = 300) -> dict:
    """The grader (process pool, timeouts) on the 5000 MATH gold answers: (a) each gold against itself written as a
    model would (`\\boxed{gold}` inside a sentence; mostly settled by the cheap string check), (b) `mismatched`
    golds against the next row's gold, which goes through math-verify's symbolic comparison."""
    from psrlm.answers import extract_answer
    from psrlm.grading import Grader
    from psrlm.tasks.benchmarks import load_benchmark

    golds = [p.answer for p in load_benchmark("math", data_dir)]
    out = {}
    with Grader() as grader:
        grader.grade([("1", "1")])  # workers up before the clock starts
        start = time.perf_counter()
        ok = grader.grade([(g, extract_answer(f"So the answer is $\\boxed{{{g}}}$.")) for g in golds])
        wall = time.perf_counter() - start
        out["round_trip"] = {"items": len(golds), "seconds": wall, "items_per_s": len(golds) / wall,
                             "correct": sum(ok) / len(golds)}  # fmt: skip
        pairs = [(golds[i], golds[i + 1]) for i in range(min(mismatched, len(golds) - 1))]
        start = time.perf_counter()
        grader.grade(pairs)
        wall = time.perf_counter() - start
        out["mismatched"] = {"items": len(pairs), "seconds": wall, "items_per_s": len(pairs) / wall,
                             "timeouts": grader.timeouts}  # fmt: skip
    return out


def precision_comparison(cfg: Config, model_dir: Path, prompts, problems: list[Problem]) -> dict:
    """fp32 vs bf16 (and the static KV cache on/off) on this machine, for what the demo spends its time on: the
    search's candidate sampling, its logit-read judging, and a TRL SFT step. bf16 is measured only where it is
    native (or on CUDA): emulated bf16 on a CPU is known to be ~30x slower and would take minutes to show it."""
    import tempfile

    from psrlm import hardware, train
    from psrlm.configs import TrainConfig
    from psrlm.engines.hf import HFEngine
    from psrlm.records import StepSolution
    from psrlm.search import verdict_log_odds

    device = hardware.pick_device(cfg.engine.device)
    native = device.startswith("cuda") or hardware.native_bf16_cpu()
    sc = cfg.search
    step_prompts = [prompts.step_prompt(p.question, p.meta["steps"][:1]) for p in problems]
    judge_prompts = [prompts.judge_prompt(p.question, p.meta["steps"][:1], p.meta["steps"][1], p.meta["steps"][0])
                     for p in problems for _ in range(sc.width)]  # fmt: skip
    sol = read_jsonl(RunLayout(cfg.paths.run_dir).ift, StepSolution)[: 4 * cfg.sft.batch_size]
    rows = train.ift_rows(sol, prompts)
    out: dict = {"chosen": hardware.describe(cfg.engine, {"sft": cfg.sft}), "runs": []}
    for dtype in ("float32", "bfloat16"):
        if dtype == "bfloat16" and not native:
            out["runs"].append({"dtype": dtype, "skipped": "no native bf16 here: emulated, ~30x slower than fp32"})
            continue
        for static in (False, True):
            eng = HFEngine(
                model_dir, device=device, dtype=dtype, batch_size=cfg.engine.batch_size, static_cache=static
            )
            params = GenParams(n=sc.width, temperature=sc.temperature, top_p=sc.top_p,
                               max_new_tokens=sc.max_step_tokens, seed=0)  # fmt: skip
            eng.generate(step_prompts[:2], params)  # warm-up
            start = time.perf_counter()
            before = eng.stats.gen_tokens
            eng.generate(step_prompts, params)
            gen_s = time.perf_counter() - start
            start = time.perf_counter()
            verdict_log_odds(eng, judge_prompts)
            judge_s = time.perf_counter() - start
            out["runs"].append({"dtype": dtype, "static_cache": static,
                                "sample_tok_per_s": (eng.stats.gen_tokens - before) / gen_s,
                                "judge_prompts_per_s": len(judge_prompts) / judge_s})  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            tc = TrainConfig(epochs=1, lr=cfg.sft.lr, batch_size=cfg.sft.batch_size, bf16=dtype == "bfloat16",
                             logging_steps=1)  # fmt: skip
            info = train.sft(model_dir, rows, tc, Path(tmp) / "m")
            out["runs"].append({"dtype": dtype, "sft_s_per_step": info["wall_s"] / max(1, info["steps"]),
                                "sft_steps": info["steps"]})  # fmt: skip
    return out


def run_bench(cfg: Config, model_dir: Path, n_problems: int, n_naive: int) -> dict:
    from psrlm.engines import make_engine
    from psrlm.prompts import prompts_of

    prompts = prompts_of(cfg)
    problems: list[Problem] = read_jsonl(RunLayout(cfg.paths.run_dir).data_file("arith_test"), Problem)[:n_problems]
    engine = make_engine(cfg.engine, model_dir)
    scfg = dataclasses.replace(cfg.search, max_active=max(cfg.search.max_active, n_problems))
    engine.generate([prompts.solve_prompt("warm up")], GenParams(max_new_tokens=4))  # first-call costs out

    raw = raw_throughput(engine, prompts, problems, scfg)
    result, wall, tokens = _search(problems, engine, prompts, scfg)
    batched = {"problems": len(problems), "seconds": wall, "tokens": tokens, "tok_per_s": tokens / wall,
               "problems_per_min": 60 * len(problems) / wall, **result.summary()}  # fmt: skip
    naive_problems = problems[:n_naive]
    n_result, n_wall, n_tokens = _search(
        naive_problems, OnePromptPerCall(engine), prompts, dataclasses.replace(scfg, max_active=1)
    )
    naive = {"problems": len(naive_problems), "seconds": n_wall, "tokens": n_tokens, "tok_per_s": n_tokens / n_wall,
             "problems_per_min": 60 * len(naive_problems) / n_wall}  # fmt: skip
    agreement = judge_mode_agreement(engine, prompts, problems, scfg)
    evaluation = eval_throughput(engine, prompts, problems, cfg.iterate.eval_max_tokens)
    data_dir = cfg.paths.resolved_data_dir()
    grading = grading_throughput(data_dir) if (data_dir / "benchmarks" / "math").is_dir() else None
    precision = precision_comparison(cfg, model_dir, prompts, problems) if cfg.engine.kind == "hf" else None
    from psrlm.hardware import describe

    report = {
        "machine": describe(cfg.engine, {"sft": cfg.sft, "dpo": cfg.dpo}),
        "device": cfg.engine.device,
        "model": str(model_dir),
        "settings": {
            "width": scfg.width,
            "judge_mode": scfg.judge_mode,
            "dtype": getattr(engine, "dtype_name", cfg.engine.dtype),
            "batch_size": cfg.engine.batch_size,
            "static_cache": getattr(engine, "static_cache", cfg.engine.static_cache),
        },  # fmt: skip
        "precision": precision,
        "raw": raw,
        "search": batched,
        "naive": naive,
        "judge_mode_agreement": agreement,
        "evaluation": evaluation,
        "grading": grading,
        "search_vs_raw": batched["tok_per_s"] / raw["tok_per_s"],
        "search_vs_naive": batched["problems_per_min"] / naive["problems_per_min"],
    }
    write_json(RunLayout(cfg.paths.run_dir).bench / "bench.json", report)
    return report


def print_report(r: dict) -> None:
    from psrlm.hardware import one_line

    print(f"\n{one_line(r['machine'])}\nmodel: {r['model']}   settings: {r['settings']}\n")
    print("| run | problems | seconds | gen tokens | tok/s | problems/min |")
    print("|---|---|---|---|---|---|")
    print(f"| (a) raw batched generation | - | {r['raw']['seconds']:.1f} | {r['raw']['tokens']} "
          f"| {r['raw']['tok_per_s']:.0f} | - |")  # fmt: skip
    for key, label in (("search", "(b) batched search"), ("naive", "(c) naive loop")):
        x = r[key]
        print(f"| {label} | {x['problems']} | {x['seconds']:.1f} | {x['tokens']} | {x['tok_per_s']:.0f} "
              f"| {x['problems_per_min']:.1f} |")  # fmt: skip
    s = r["search"]
    print(f"\njudge calls per step {s['judge_calls_per_step']:.1f} · no-verdict rate {s['no_verdict_rate']:.1%} · "
          f"tie rate {s['tie_rate']:.1%} · rollback rate {s['rollback_rate']:.1%} · pairs {s['pairs']}")  # fmt: skip
    a = r["judge_mode_agreement"]
    print(f"\njudge modes vs all_ordered on {a['rounds']} candidate sets:")
    print("| mode | judge calls | tie rate | same best | same (best, worst) |")
    print("|---|---|---|---|---|")
    for mode in ("all_ordered", "one_order", "cyclic"):
        m = a[mode]
        print(f"| {mode} | {m['judge_calls']} | {m['tie_rate']:.1%} | {m['best_agreement']:.1%} "
              f"| {m['pair_agreement']:.1%} |")  # fmt: skip
    e = r["evaluation"]
    print(f"\nevaluation (greedy + grading, arith test): {e['problems']} problems in {e['seconds']:.1f}s = "
          f"{e['problems_per_s']:.2f} problems/s")  # fmt: skip
    if r["grading"]:
        g = r["grading"]
        print(f"grading MATH gold answers: round trip {g['round_trip']['items_per_s']:.0f}/s "
              f"({g['round_trip']['correct']:.1%} correct); mismatched pairs through math-verify "
              f"{g['mismatched']['items_per_s']:.0f}/s")  # fmt: skip
    if r.get("precision"):
        print("\nprecision on this machine (what `auto` chooses is the first line above):")
        print("| dtype | static KV cache | sampling tok/s | judge prompts/s (logits) | TRL SFT s/step |")
        print("|---|---|---|---|---|")
        for x in r["precision"]["runs"]:
            if "skipped" in x:
                print(f"| {x['dtype']} | - | skipped: {x['skipped']} | - | - |")
            elif "sft_s_per_step" in x:
                print(f"| {x['dtype']} | - | - | - | {x['sft_s_per_step']:.2f} ({x['sft_steps']} steps) |")
            else:
                print(f"| {x['dtype']} | {x['static_cache']} | {x['sample_tok_per_s']:.0f} "
                      f"| {x['judge_prompts_per_s']:.0f} | - |")  # fmt: skip
    print(f"\nsearch_vs_raw={r['search_vs_raw']:.3f} search_vs_naive={r['search_vs_naive']:.3f}")
