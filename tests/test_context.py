"""Nothing is cut to fit the context and nothing is fed past it: a prompt that cannot fit is skipped and counted
on every path (generation, logit reads, search, evaluation), and a long run goes on past it."""

from psrlm.configs import SearchConfig
from psrlm.engines.base import GenParams
from psrlm.engines.hf import HFEngine, continuation_logprobs
from psrlm.evaluate import evaluate_benchmarks
from psrlm.prompts import get_prompts
from psrlm.records import Problem, SearchTrace, read_jsonl
from psrlm.search import run_search

PROMPTS = get_prompts("compact")
HUGE = "Mia has 3 pens and " * 270_000  # ~5 MB: the question that made the soft judge ask for 3 TB


def _engine(tiny_model_dir) -> HFEngine:
    return HFEngine(tiny_model_dir, device="cpu", dtype="float32", batch_size=8)  # 512-token context


def _tokens(eng, text: str) -> int:
    return len(eng.encode([text])[0])


def test_generation_skips_what_cannot_fit_and_clamps_what_barely_fits(tiny_model_dir):
    eng = _engine(tiny_model_dir)
    assert eng.max_context == 512
    words = "Mia has 3 pens and "
    too_long = words * 200
    near_end = words * (60 // max(1, _tokens(eng, words) // 4))
    while _tokens(eng, near_end) < 500:
        near_end += "x "
    room = 512 - _tokens(eng, near_end)
    assert _tokens(eng, too_long) > 512 and 0 < room < 48
    out = eng.generate(
        [too_long, near_end, "Q: 1 + 1?\nA:\n"], GenParams(n=2, max_new_tokens=48, temperature=0.7, seed=1)
    )
    assert [c.finish_reason for c in out[0]] == ["context", "context"] and out[0][0].text == ""
    assert all(c.tokens <= room for c in out[1])
    assert all(c.tokens <= 48 for c in out[2])
    assert eng.stats.skipped_prompts == 1 and eng.stats.clamped_prompts == 1


def test_logit_reads_skip_what_cannot_fit(tiny_model_dir):
    eng = _engine(tiny_model_dir)
    got = continuation_logprobs(eng, [HUGE, "Judge. Q: x\nBetter:"], [" [[A]]", " [[A]]"])
    assert got[0] is None and isinstance(got[1], float)
    assert eng.stats.skipped_prompts == 1


def test_search_with_soft_verdicts_survives_a_5mb_question_and_resumes(tiny_model_dir, tmp_path):
    eng = _engine(tiny_model_dir)
    problems = [Problem("huge", HUGE, "1", "t"), Problem("ok", "Mia has 2 pens. She finds 3 more.", "5", "t")]
    cfg = SearchConfig(width=2, max_step_tokens=8, max_steps=2, max_rounds=3, verdict="soft", judge_mode="one_order")
    result = run_search(problems, eng, PROMPTS, cfg, out_dir=tmp_path / "s", progress=False)
    by_id = {t.problem_id: t for t in result.traces}
    assert by_id["huge"].stop_reason == "context" and by_id["huge"].steps == []
    assert by_id["ok"].stop_reason != "context"
    assert result.summary()["context_stops"] == 1
    again = run_search(problems, eng, PROMPTS, cfg, out_dir=tmp_path / "s", progress=False)  # the rerun: no crash
    assert len(read_jsonl(tmp_path / "s" / "traces.jsonl", SearchTrace)) == 2 == len(again.traces)


def test_a_judge_prompt_that_outgrows_the_context_stops_its_problem(tiny_model_dir):
    """The step prompt fits, the judge prompt (question + two candidates) does not: the problem stops there."""
    eng = _engine(tiny_model_dir)
    words = "Mia has 3 pens and "
    question = words
    while _tokens(eng, PROMPTS.step_prompt(question, [])) < 490:
        question += words
    from psrlm.engines.base import Completion, EngineStats

    class Steps:  # whole, short candidate steps (a random model would run into the token cap instead)
        stats = EngineStats()

        def generate(self, prompts, params):
            return [[Completion(f" {k} + {k} = {2 * k} more pens and more pens.", 12) for k in range(params.n)]
                    for _ in prompts]  # fmt: skip

    cfg = SearchConfig(width=2, max_step_tokens=16, max_steps=2, max_rounds=2, verdict="soft", judge_mode="one_order")
    [trace] = run_search([Problem("long", question, "1", "t")], Steps(), PROMPTS, cfg, judge_engine=eng,
                         progress=False).traces  # fmt: skip
    assert trace.stop_reason == "context" and trace.judge_calls == 1 and eng.stats.skipped_prompts == 2


def test_evaluation_counts_a_question_longer_than_the_context(tiny_model_dir, tmp_path):
    eng = _engine(tiny_model_dir)
    long_q = "Mia has 3 pens and 4 more. " * 220  # ~1,800 tokens against a 512-token context
    assert _tokens(eng, long_q) > 1500
    problems = [Problem("long", long_q, "7", "t"), Problem("short", "Mia has 2 pens.", "2", "t")]
    summary = evaluate_benchmarks({"b": problems}, eng, PROMPTS, tmp_path / "e", max_tokens=8, progress=False)["b"]
    assert summary["context_skipped"] == 1 and summary["n"] == 2
    rows = {r["problem_id"]: r for r in read_jsonl(tmp_path / "e" / "b.jsonl")}
    assert rows["long"]["finish_reason"] == "context" and rows["long"]["correct"] is False
