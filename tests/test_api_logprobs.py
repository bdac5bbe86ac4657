"""Soft and logit verdicts over the API. `transformers serve` ignores `echo` and `logprobs` (PLATFORM.md), so the
request and the parsing are tested against a local server that answers in vLLM's documented `/v1/completions`
shape for `echo: true, logprobs: 0, max_tokens: 1` (one `null` for the first prompt token, character
`text_offset`s into prompt + generated text, one generated token last), with log-probabilities computed by the
real tiny model. The sums must equal the in-process engine's, verdict by verdict."""

from __future__ import annotations

import http.server
import json
import threading

import pytest
import torch

from psrlm.configs import ConfigError, load_config
from psrlm.engines.hf import HFEngine, continuation_logprobs
from psrlm.engines.openai_api import EngineError
from psrlm.search import verdict_log_odds

from .serving import make_engine


class VLLMShapedServer:
    """Answers /v1/completions with echo the way vLLM does, from a real model; `plain=True` answers like
    `transformers serve` (generated text, no log-probs)."""

    def __init__(self, engine: HFEngine, plain: bool = False):
        self.engine, self.plain, self.bodies = engine, plain, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                data = json.dumps(outer.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, body: dict) -> dict:
        text = body["prompt"]
        tok, model = self.engine.tokenizer, self.engine.model
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = enc["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
        new = int(logp[-1].argmax())
        new_text = tok.decode([new])
        choice = {"index": 0, "text": text + new_text if body.get("echo") else new_text,
                  "finish_reason": "length", "stop_reason": None, "prompt_logprobs": None, "logprobs": None}  # fmt: skip
        if body.get("logprobs") is not None and not self.plain:
            values = [None] + [float(logp[j - 1, ids[j]]) for j in range(1, len(ids))] + [float(logp[-1, new])]
            choice["logprobs"] = {
                "text_offset": [start for start, _ in enc["offset_mapping"]] + [len(text)],
                "token_logprobs": values,
                "tokens": [tok.decode([t]) for t in ids] + [new_text],
                "top_logprobs": [None] + [{} for _ in values[1:]],
            }
        n = len(ids)
        return {"id": "cmpl-test", "object": "text_completion", "created": 0, "model": body["model"],
                "choices": [choice], "usage": {"prompt_tokens": n, "completion_tokens": 1, "total_tokens": n + 1}}  # fmt: skip

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    return HFEngine(str(tiny_model_dir), device="cpu", dtype="float32", batch_size=4)


PROMPTS = ["Judge. Question: 3+4\nWhich step is better? Verdict:", "Judge. Q: 12*2=24\nBetter:"]


def test_api_log_odds_equal_the_in_process_ones(hf_engine):
    with VLLMShapedServer(hf_engine) as srv:
        api = make_engine([srv.base_url], "tiny", concurrency=4)
        got = verdict_log_odds(api, PROMPTS, affinity=(0, 1))
    want = verdict_log_odds(hf_engine, PROMPTS)
    assert got == pytest.approx(want, abs=1e-4)
    assert all(w is not None and w != 0 for w in want)  # a real, non-trivial difference was compared
    body = srv.bodies[0]
    assert body["echo"] is True and body["logprobs"] == 0 and body["max_tokens"] == 1  # vLLM refuses max_tokens=0


def test_a_continuation_merged_across_the_boundary_still_counts_its_first_token(hf_engine):
    # the same full text split inside a token ("[[" is one token of the tiny tokenizer if merged): the token that
    # straddles the boundary belongs to the continuation on both engines
    splits = [(PROMPTS[0] + " [", "[A]]"), (PROMPTS[0] + " [[", "A]]"), (PROMPTS[0], " [[A]]")]
    with VLLMShapedServer(hf_engine) as srv:
        api = make_engine([srv.base_url], "tiny")
        got = api.continuation_logprobs([p for p, _ in splits], [c for _, c in splits])
    want = continuation_logprobs(hf_engine, [p for p, _ in splits], [c for _, c in splits])
    assert got == pytest.approx(want, abs=1e-4)
    assert len(set(round(w, 4) for w in want)) > 1  # the splits really differ in what they count


def test_a_server_without_prompt_logprobs_is_named(hf_engine):
    with VLLMShapedServer(hf_engine, plain=True) as srv:
        api = make_engine([srv.base_url], "tiny")
        with pytest.raises(EngineError, match="no prompt log-probabilities.*vLLM or SGLang"):
            api.continuation_logprobs(PROMPTS, [" [[A]]"] * 2)


@pytest.mark.parametrize("kind", ["openai", "vllm", "sglang"])
def test_soft_verdicts_are_allowed_on_servers_that_return_prompt_logprobs(kind):
    extra = ["engine.base_urls=[http://127.0.0.1:1/v1]"] if kind == "openai" else []
    cfg = load_config(None, [f"engine.kind={kind}", "search.verdict=soft", *extra])
    assert cfg.search.verdict == "soft"


def test_soft_verdicts_on_transformers_serve_are_refused_before_any_request():
    with pytest.raises(ConfigError, match=r"search\.verdict.*transformers serve"):
        load_config(None, ["engine.kind=transformers", "search.verdict=soft"])
