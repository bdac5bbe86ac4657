"""The search and the engine with a real (random-weight) tiny transformers model."""

import torch

from psrlm.configs import SearchConfig
from psrlm.engines.base import GenParams
from psrlm.engines.hf import HFEngine, continuation_logprobs
from psrlm.initdata.build import arith_splits
from psrlm.prompts import get_prompts
from psrlm.search import run_search
from psrlm.steps import STEP_STOP

PROMPTS = get_prompts("compact")


def test_engine_n_stop_and_token_counts(tiny_model_dir):
    eng = HFEngine(tiny_model_dir, device="cpu", dtype="float32", batch_size=4)
    out = eng.generate(["Q: a\nA:\nStep 1:", "Q: longer prompt here\nA:\nStep 1:"],
                       GenParams(n=3, temperature=0.7, top_p=0.9, max_new_tokens=10, stop=(STEP_STOP,), seed=0))  # fmt: skip
    assert [len(r) for r in out] == [3, 3]
    for row in out:
        for c in row:
            assert STEP_STOP not in c.text and 1 <= c.tokens <= 10
    again = eng.generate(["Q: a\nA:\nStep 1:"], GenParams(n=1, max_new_tokens=6))
    assert again == eng.generate(["Q: a\nA:\nStep 1:"], GenParams(n=1, max_new_tokens=6))  # greedy is repeatable
    assert eng.stats.gen_tokens > 0 and eng.stats.calls == 3


def test_continuation_logprobs_match_a_manual_forward_pass(tiny_model_dir):
    eng = HFEngine(tiny_model_dir, device="cpu", dtype="float32", batch_size=8)
    prompts = ["Judge. Q: x\nBetter:", "Judge. Q: a much longer question text\nBetter:"]
    got = continuation_logprobs(eng, prompts * 2, [" [[A]]", " [[A]]", " [[B]]", " [[B]]"])
    tok = eng.tokenizer
    for p, c, value in zip(prompts * 2, [" [[A]]"] * 2 + [" [[B]]"] * 2, got, strict=True):
        p_ids, full = tok(p)["input_ids"], tok(p + c)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(eng.model(torch.tensor([full])).logits[0].float(), -1)
        manual = sum(float(logp[t - 1, full[t]]) for t in range(len(p_ids), len(full)))
        assert abs(manual - value) < 1e-3


def test_search_end_to_end_with_logit_verdicts(stepping_model_dir, small_cfg):
    problems = arith_splits(small_cfg)["test"][:3]
    eng = HFEngine(stepping_model_dir, device="cpu", dtype="float32", batch_size=64)
    # a barely trained model is position-biased: under all_ordered every candidate ties; one_order with w=4 does not
    cfg = SearchConfig(
        width=4, max_step_tokens=24, max_steps=2, max_rounds=4, verdict="logits", judge_mode="one_order"
    )
    res = run_search(problems, eng, PROMPTS, cfg, progress=False)
    assert len(res.traces) == 3
    assert res.pairs and all(p.chosen != p.rejected for p in res.pairs)  # a random model still yields verdicts
    assert all(t.no_verdicts == 0 for t in res.traces)


class _KilledAfter:
    """The real engine, interrupted (as Ctrl-C or a kill would) at its `calls`-th generate call."""

    def __init__(self, inner, calls: int):
        self.inner, self.left, self.stats = inner, calls, inner.stats

    def generate(self, prompts, params):
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt("simulated kill")
        return self.inner.generate(prompts, params)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_resumed_search_draws_exactly_what_an_uninterrupted_one_draws(stepping_model_dir, small_cfg, tmp_path):
    """Seeds belong to (problem, step, attempt), not to the round counter or the batch: after a kill, the rerun
    (with fewer problems active) reproduces every trace and pair of the run that was never interrupted."""
    import pytest

    from psrlm.records import PreferencePair, SearchTrace, read_jsonl

    problems = arith_splits(small_cfg)["test"][:8]
    eng = HFEngine(stepping_model_dir, device="cpu", dtype="float32", batch_size=16)
    cfg = SearchConfig(width=3, temperature=0.9, max_step_tokens=24, max_steps=3, max_rounds=4, verdict="logits",
                       judge_mode="one_order", max_active=3)  # fmt: skip
    run_search(problems, eng, PROMPTS, cfg, out_dir=tmp_path / "whole", progress=False)
    with pytest.raises(KeyboardInterrupt):
        run_search(problems, _KilledAfter(eng, 9), PROMPTS, cfg, out_dir=tmp_path / "resumed", progress=False)
    done = len(read_jsonl(tmp_path / "resumed" / "traces.jsonl", SearchTrace))
    assert 0 < done < 8
    # the problems in flight at the kill were saved round by round, and continue from there (the journal's entries
    # of problems that committed since are dropped when it is next compacted or opened)
    journaled = {e["problem_id"] for e in read_jsonl(tmp_path / "resumed" / "inflight.jsonl")}
    assert journaled - {t.problem_id for t in read_jsonl(tmp_path / "resumed" / "traces.jsonl", SearchTrace)}
    run_search(problems, eng, PROMPTS, cfg, out_dir=tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "inflight.jsonl").exists()

    def by_problem(folder, cls):
        rows = read_jsonl(tmp_path / folder / ("traces.jsonl" if cls is SearchTrace else "pairs.jsonl"), cls)
        key = (lambda r: r.problem_id) if cls is SearchTrace else (lambda r: (r.meta["problem_id"], r.meta["step"]))
        return sorted(((key(r), r.steps if cls is SearchTrace else r) for r in rows), key=lambda kv: str(kv[0]))

    whole_traces = {t.problem_id: t for t in read_jsonl(tmp_path / "whole" / "traces.jsonl", SearchTrace)}
    resumed_traces = {t.problem_id: t for t in read_jsonl(tmp_path / "resumed" / "traces.jsonl", SearchTrace)}
    assert whole_traces.keys() == resumed_traces.keys()
    for pid, t in whole_traces.items():
        assert resumed_traces[pid].rounds == t.rounds and resumed_traces[pid].steps == t.steps, pid
    assert by_problem("whole", PreferencePair) == by_problem("resumed", PreferencePair)
    assert len(read_jsonl(tmp_path / "whole" / "pairs.jsonl", PreferencePair)) >= 4  # real judging happened
