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
    eng = HFEngine(tiny_model_dir, device="cpu", batch_size=4)
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
    eng = HFEngine(tiny_model_dir, device="cpu", batch_size=8)
    prompts = ["Judge. Q: x\nBetter:", "Judge. Q: a much longer question text\nBetter:"]
    got = continuation_logprobs(eng, prompts * 2, [" [[A]]", " [[A]]", " [[B]]", " [[B]]"])
    tok = eng.tokenizer
    for p, c, value in zip(prompts * 2, [" [[A]]"] * 2 + [" [[B]]"] * 2, got, strict=True):
        p_ids, full = tok(p)["input_ids"], tok(p + c)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(eng.model(torch.tensor([full])).logits[0].float(), -1)
        manual = sum(float(logp[t - 1, full[t]]) for t in range(len(p_ids), len(full)))
        assert abs(manual - value) < 1e-3


def test_search_end_to_end_with_logit_verdicts(tiny_model_dir, small_cfg):
    problems = arith_splits(small_cfg)["test"][:3]
    eng = HFEngine(tiny_model_dir, device="cpu", batch_size=64)
    # a random model is position-biased: under all_ordered every candidate ties; one_order with w=4 does not
    cfg = SearchConfig(
        width=4, max_step_tokens=12, max_steps=2, max_rounds=4, verdict="logits", judge_mode="one_order"
    )
    res = run_search(problems, eng, PROMPTS, cfg, progress=False)
    assert len(res.traces) == 3
    assert res.pairs and all(p.chosen != p.rejected for p in res.pairs)  # a random model still yields verdicts
    assert all(t.no_verdicts == 0 for t in res.traces)
