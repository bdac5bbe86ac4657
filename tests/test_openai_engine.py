"""OpenAIEngine end to end against a real `transformers serve` on 127.0.0.1: no mocked HTTP anywhere.

The server (tests/serving.py, fixture in conftest.py) is started once per session, pinned to the session's tiny random-weight model (the request's
"model" field must then be that directory's path, anything else is a 400). Failures are made by a real
stdlib HTTP proxy in a thread that answers scripted errors first and then forwards to the server.

Server behaviours these tests rely on (transformers 5.x, see /work/shared/PLATFORM.md):
- `n` is ignored (one choice per answer), so the engine re-asks until it has n;
- `usage.completion_tokens` is present, `finish_reason` is "length" exactly when max_tokens was reached;
- `stop` works but the stop text is kept in the answer (the engine cuts it off);
- `temperature` alone decodes greedily: sampling needs `do_sample` in a `generation_config` JSON string;
- `seed` is honoured (torch.manual_seed per request), but only reproducibly when requests do not overlap,
  because generation runs on one background thread while the seed is set on arrival.
"""

from __future__ import annotations

import json
import logging
import secrets

import pytest

from psrlm.engines.base import Completion, GenParams
from psrlm.engines.openai_api import EngineError

from .serving import FlakyProxy, Server, free_port, make_engine

for _mod in ("fastapi", "uvicorn", "openai"):
    pytest.importorskip(_mod, reason="`transformers serve` needs transformers[serving]")

PROMPTS = ["Question: What is 12 + 7?\nStep 1:", "Problem: 3*4-2 =", "The answer is"]
# Sampling on transformers serve: without do_sample it decodes greedily whatever the temperature.
SAMPLE = {"generation_config": json.dumps({"do_sample": True})}


# ------------------------------------------------------------------------------------------------ tests


def test_greedy_completions_have_text_token_counts_and_repeat(server: Server):
    eng = make_engine([server.base_url], server.model)
    params = GenParams(n=1, max_new_tokens=12)
    first = eng.generate(PROMPTS, params)
    second = eng.generate(PROMPTS, params)
    assert [len(row) for row in first] == [1, 1, 1]
    for [c] in first:
        assert c.text and 0 < c.tokens <= 12 and c.finish_reason in ("stop", "length")
    assert first == second
    assert eng.stats.calls == 2 and eng.stats.completions == 6 and eng.stats.errors == 0
    assert eng.stats.gen_tokens == 2 * sum(c.tokens for [c] in first)


def test_n_samples_by_asking_again_when_the_server_ignores_n(server: Server):
    params = GenParams(n=3, temperature=1.0, max_new_tokens=8, seed=1234)
    with FlakyProxy(server.root) as proxy:
        # concurrency 1: the server seeds on arrival but generates on one thread, so overlap breaks the seeds
        eng = make_engine([proxy.base_url], server.model, extra_body=SAMPLE, concurrency=1)
        out = eng.generate(PROMPTS[:2], params)
        again = eng.generate(PROMPTS[:2], params)
        greedy = eng.generate(PROMPTS[:2], GenParams(max_new_tokens=8))
    assert [len(row) for row in out] == [3, 3]
    for row in out:
        assert all(c.tokens > 0 and c.finish_reason in ("stop", "length") for c in row)
        assert len({c.text for c in row}) > 1  # each re-ask got a fresh seed
    # one choice per answer whatever `n` says: three requests per prompt, asking for what is still missing
    asked = [s["body"]["n"] for s in proxy.seen[:6]]
    assert asked == [3, 2, 1, 3, 2, 1]
    assert len({s["body"]["seed"] for s in proxy.seen[:6]}) == 6  # a fresh seed for every request
    assert again == out  # seeded: reproducible
    assert any(c.text != g.text for row, [g] in zip(out, greedy, strict=True) for c in row)  # it really sampled


def test_stop_text_is_never_returned(server: Server):
    eng = make_engine([server.base_url], server.model, concurrency=1)
    out = eng.generate(PROMPTS, GenParams(max_new_tokens=12, stop=("\nStep ",)))
    assert all("\nStep " not in c.text and c.tokens > 0 for row in out for c in row)

    # Random weights never write "\nStep ", so also take a stop string from a seeded sample and check that
    # the server stops there and the engine cuts the kept stop text off. Its characters avoid the prompt's
    # last one: the server also matches stop strings that begin inside the prompt.
    prompt = "Problem: 3*4-2 ="
    sampler = make_engine([server.base_url], server.model, extra_body=SAMPLE, concurrency=1)
    for seed in range(10):
        [[free]] = sampler.generate([prompt], GenParams(temperature=1.0, max_new_tokens=16, seed=seed))
        text = free.text
        ks = [k for k in range(2, len(text) - 2) if text[: k + 2].isascii() and prompt[-1] not in text[k : k + 2]]
        if ks and free.finish_reason == "length":
            break
    else:
        pytest.fail("no seeded sample with an ASCII stop candidate")
    stop = text[ks[0] : ks[0] + 2]
    params = GenParams(temperature=1.0, max_new_tokens=16, seed=seed, stop=("\nStep ", stop))
    [[cut]] = sampler.generate([prompt], params)
    assert cut.text == text[: text.find(stop)]
    assert stop not in cut.text
    assert cut.finish_reason == "stop" and 0 < cut.tokens < free.tokens


def test_max_new_tokens_cap_holds(server: Server):
    for extra, params in (
        ({}, GenParams(max_new_tokens=5)),
        (SAMPLE, GenParams(n=2, temperature=1.0, max_new_tokens=5)),
    ):
        eng = make_engine([server.base_url], server.model, extra_body=extra)
        out = eng.generate(PROMPTS, params)
        cs = [c for row in out for c in row]
        assert len(cs) == len(PROMPTS) * params.n
        assert all(0 < c.tokens <= 5 for c in cs)
        assert all(c.tokens == 5 for c in cs if c.finish_reason == "length")
        assert any(c.finish_reason == "length" for c in cs)  # random weights hardly ever end in 5 tokens


def test_retries_on_503_and_429_then_succeeds(server: Server, caplog):
    caplog.set_level(logging.WARNING, logger="psrlm.engines.openai_api")
    params = GenParams(max_new_tokens=8)
    with FlakyProxy(server.root, failures=[503, 503, 429]) as proxy:
        eng = make_engine([proxy.base_url], server.model, max_retries=5)
        [[c]] = eng.generate([PROMPTS[0]], params)
    [[direct]] = make_engine([server.base_url], server.model).generate([PROMPTS[0]], params)
    assert proxy.statuses == [503, 503, 429, 200]
    assert c == direct and eng.stats.errors == 0
    retries = [r for r in caplog.records if "retry" in r.getMessage()]
    assert len(retries) == 3 and "HTTP 429" in retries[-1].getMessage()


def test_a_broken_answer_is_retried(server: Server):
    with FlakyProxy(server.root, failures=["garbage"]) as proxy:
        eng = make_engine([proxy.base_url], server.model, max_retries=2)
        [[c]] = eng.generate([PROMPTS[1]], GenParams(max_new_tokens=4))
    assert proxy.statuses == [0, 200] and c.tokens > 0


@pytest.mark.parametrize(
    "model_override, extra_body, status",
    [("no/such-model", {}, 400), (None, {"no_such_field": 1}, 422)],  # the server's own 4xx answers
)
def test_client_errors_raise_without_retries(server: Server, model_override, extra_body, status):
    with FlakyProxy(server.root) as proxy:
        eng = make_engine([proxy.base_url], model_override or server.model, extra_body=extra_body, max_retries=5)
        with pytest.raises(EngineError, match=f"HTTP {status}"):
            eng.generate([PROMPTS[0]], GenParams(max_new_tokens=4))
    assert proxy.statuses == [status]
    assert eng.stats.errors == 1


def test_requests_spread_over_two_base_urls(server: Server):
    prompts = PROMPTS + ["Q: 5+5?\nA:"]
    params = GenParams(max_new_tokens=6)
    expected = make_engine([server.base_url], server.model).generate(prompts, params)
    before = server.wait_for_posts(0)
    with FlakyProxy(server.root) as proxy:
        eng = make_engine([proxy.base_url, server.base_url], server.model, concurrency=2)
        out = eng.generate(prompts, params)
    assert out == expected
    assert proxy.statuses == [200, 200]  # round robin: half through the proxy...
    assert server.wait_for_posts(before + 4) == before + 4  # ...and the server answered all four


def test_api_key_is_sent_but_never_logged_nor_raised(server: Server, monkeypatch, caplog):
    secret = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv("PSRLM_TEST_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    bearer = f"Bearer {secret}"
    params = GenParams(max_new_tokens=4)

    # the error bodies echo the header back, as some servers do: the warnings must still not show the key
    with FlakyProxy(server.root, failures=[503, 429], require_auth=bearer) as proxy:
        eng = make_engine([proxy.base_url], server.model, api_key_env="PSRLM_TEST_API_KEY", max_retries=3)
        [[c]] = eng.generate([PROMPTS[0]], params)
    assert c.tokens > 0 and proxy.statuses == [503, 429, 200]
    assert [s["authorization"] for s in proxy.seen] == [bearer] * 3

    with FlakyProxy(server.root, failures=[503] * 3, require_auth=bearer) as proxy:
        eng = make_engine([proxy.base_url], server.model, api_key_env="PSRLM_TEST_API_KEY", max_retries=2)
        with pytest.raises(EngineError, match="HTTP 503") as gave_up:
            eng.generate([PROMPTS[0]], params)
    assert proxy.statuses == [503] * 3

    wrong = "sk-wrong-" + secrets.token_hex(16)  # refused with a 401 that echoes it: masked as well
    monkeypatch.setenv("PSRLM_TEST_WRONG_KEY", wrong)
    with FlakyProxy(server.root, require_auth=bearer) as proxy:
        eng = make_engine([proxy.base_url], server.model, api_key_env="PSRLM_TEST_WRONG_KEY", max_retries=2)
        with pytest.raises(EngineError, match="HTTP 401") as refused:
            eng.generate([PROMPTS[0]], params)
    assert proxy.statuses == [401]

    assert len([r for r in caplog.records if "retry" in r.getMessage()]) == 2 + 2
    assert "seen_authorization" in caplog.text  # the echoed bodies did reach the logs, masked
    for text in (caplog.text, str(gave_up.value), str(refused.value)):
        assert secret not in text and wrong not in text
    assert "Bearer ***" in str(refused.value)


def test_on_error_empty_when_the_server_is_down():
    url = f"http://127.0.0.1:{free_port()}/v1"  # bound and closed again: nothing listens there
    eng = make_engine([url], "m", on_error="empty", max_retries=1, timeout_s=5.0)
    out = eng.generate(["a", "b"], GenParams(n=2, max_new_tokens=4))
    assert out == [[Completion("", 0, "error")] * 2] * 2
    assert out[0][0] is not out[0][1]
    assert eng.stats.errors == 2 and eng.stats.completions == 4

    raising = make_engine([url], "m", max_retries=1)
    with pytest.raises(EngineError, match="giving up after 2 attempts"):
        raising.generate(["a"], GenParams(max_new_tokens=4))
    assert raising.stats.errors == 1


def test_an_answer_without_choices_is_an_error(server: Server):
    with FlakyProxy(server.root, failures=["nochoices"]) as proxy:
        eng = make_engine([proxy.base_url], server.model, on_error="empty")
        [[c]] = eng.generate([PROMPTS[0]], GenParams(max_new_tokens=4))
    assert c == Completion("", 0, "error") and eng.stats.errors == 1 and proxy.statuses == [200]


@pytest.mark.parametrize("body,what", [(b'{"choices": [\xff\xfe]}', "not UTF-8"), (b"[1, 2, 3]", "not a JSON object"),
                                       (b'"just a string"', "not a JSON object")])  # fmt: skip
def test_a_body_that_is_not_a_utf8_json_object_is_a_failed_request_naming_the_url(server: Server, body, what):
    with FlakyProxy(server.root, failures=[("raw", 200, body)] * 2) as proxy:
        eng = make_engine([proxy.base_url], server.model, max_retries=1, on_error="empty")
        [[c]] = eng.generate([PROMPTS[0]], GenParams(max_new_tokens=4))
        assert c.finish_reason == "error" and eng.stats.errors == 1
        raising = make_engine([proxy.base_url], server.model, max_retries=0)
        proxy.failures.append(("raw", 200, body))
        with pytest.raises(EngineError, match=rf"{what} from {proxy.base_url}/completions"):
            raising.generate([PROMPTS[0]], GenParams(max_new_tokens=4))


NGINX = b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head><body><h1>Welcome</h1></body></html>\n"


@pytest.mark.parametrize("status", [200, 404])
def test_an_html_page_is_named_as_one_not_as_a_json_decode_error(status):
    """A base URL that points at a web server (no /v1, a proxy's page): the error says an HTML page answered and
    names its title, and a 200 page is not asked again (it will not change)."""
    with FlakyProxy("http://127.0.0.1:9", failures=[("raw", status, NGINX, "text/html")]) as proxy:
        eng = make_engine([proxy.base_url], "m", max_retries=3)
        with pytest.raises(EngineError) as failed:
            eng.generate(["a"], GenParams(max_new_tokens=4))
    message = str(failed.value)
    assert "an HTML page titled 'Welcome to nginx!'" in message and f"{proxy.base_url}/completions" in message
    assert "JSONDecode" not in message and "<h1>" not in message
    assert proxy.statuses == [status]


VLLM_TOO_LONG = ("This model's maximum context length is 512 tokens. However, you requested 530 tokens (500 in the "
                 "messages, 30 in the completion). Please reduce the length of the messages or completion.")  # fmt: skip


def test_context_overflow_answers_clamp_or_skip_and_are_counted(server: Server):
    """vLLM's 400 for prompt + max_tokens > context: with room left the request is asked again with max_tokens
    clamped to the room; with none the prompt is skipped (finish_reason "context"), never cut."""
    clamp = ("raw", 400, json.dumps({"object": "error", "message": VLLM_TOO_LONG}).encode())
    no_room = ("raw", 400, json.dumps({"message": VLLM_TOO_LONG.replace("(500 in", "(600 in")}).encode())
    with FlakyProxy(server.root, failures=[clamp]) as proxy:
        eng = make_engine([proxy.base_url], server.model, concurrency=1)
        [[a]] = eng.generate([PROMPTS[0]], GenParams(max_new_tokens=30))
        assert proxy.seen[1]["body"]["max_tokens"] == 12  # 512 - 500, asked again
        proxy.failures.append(no_room)
        [[b]] = eng.generate([PROMPTS[1]], GenParams(max_new_tokens=30))
        assert a.finish_reason in ("stop", "length") and a.tokens <= 12
        assert b == Completion("", 0, "context")
        assert eng.stats.clamped_prompts == 1 and eng.stats.skipped_prompts == 1 and eng.stats.errors == 0


def test_ctrl_c_during_hung_requests_stops_at_once_with_one_line(server: Server, tiny_model_dir, tmp_path):
    """The reported case: Ctrl-C waited out every retry of requests that hang (27 s at timeout 10 s x 2 retries).
    Now the stage stops at once, keeps what it committed, and prints one line."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import SMALL

    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps({"id": f"p{i}", "question": f"{i} + 1?", "answer": str(i + 1),
                                            "source": "t"}) + "\n" for i in range(4)))  # fmt: skip
    with FlakyProxy(server.root, failures=[("slow", 30)] * 50) as proxy:
        sets = [*SMALL, f"paths.run_dir={tmp_path / 'run'}", "engine.kind=openai", f"engine.base_urls=[{proxy.base_url}]",
                f"engine.model_name={server.model}", "engine.timeout_s=10", "engine.max_retries=2",
                "search.verdict=generate"]  # fmt: skip
        cmd = [sys.executable, "-m", "psrlm.cli", "search", *sum((["--set", s] for s in sets), []),
               "--problems", str(problems), "--out", str(tmp_path / "out")]  # fmt: skip
        # a suite started in the background of a non-interactive shell (`make test &`) inherits SIGINT ignored, and
        # Python then installs no KeyboardInterrupt handler: give the child the disposition a terminal would
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "TQDM_DISABLE": "1"},
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        deadline = time.time() + 60
        while not proxy.seen and time.time() < deadline:
            time.sleep(0.05)
        assert proxy.seen, "no request reached the server"
        time.sleep(0.5)
        sent = time.time()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        took = time.time() - sent
    assert took < 3, f"took {took:.1f}s to stop"
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "out" / ".psrlm-lock").exists()  # released on the way out


def test_chat_api_sends_messages_to_the_real_chat_endpoint(server: Server):
    """engine.api=chat (a chat model as teacher or Appendix B judge): /v1/chat/completions with the prompt as one
    user message; the server applies the chat template; the answer is read from choices[].message.content."""
    with FlakyProxy(server.root) as proxy:
        eng = make_engine([proxy.base_url], server.model, api="chat")
        [[c]] = eng.generate(["Split this solution into steps: 1 + 1 = 2."], GenParams(max_new_tokens=6))
        body = proxy.seen[0]["body"]
    assert proxy.statuses == [200]
    assert body["messages"] == [{"role": "user", "content": "Split this solution into steps: 1 + 1 = 2."}]
    assert "prompt" not in body
    assert isinstance(c.text, str) and 0 < c.tokens <= 6 and c.finish_reason in ("stop", "length")
