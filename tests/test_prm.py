"""Process reward models: PRMTrainer's data format, a tiny PRM trained on oracle labels, both scorer formats."""

from pathlib import Path

import pytest
import torch

from psrlm.configs import TrainConfig
from psrlm.prm import NextTokenPRM, TokenClassificationPRM, arith_prm_rows, prm_token_row, step_accuracy
from psrlm.tasks.arith import Difficulty, generate_split, label_step
from psrlm.tiny import load_tokenizer


def test_token_row_labels_each_step_at_its_separator(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    row = prm_token_row(tok, "Q: 2 + 3?", ["2 + 3 = 5.", "The answer is 5."], [True, False], "\n")
    sep = tok("\n", add_special_tokens=False)["input_ids"]
    labelled = [i for i, y in enumerate(row["labels"]) if y != -100]
    assert [row["labels"][i] for i in labelled] == [1, 0]
    assert all(row["input_ids"][i - len(sep) + 1 : i + 1] == sep for i in labelled)
    assert labelled[-1] == len(row["input_ids"]) - 1
    assert len(row["labels"]) == len(row["input_ids"])


def test_oracle_rows_are_labelled_by_the_oracle():
    problems = {p.id: p for p in generate_split(0, 30, Difficulty(2, 4, 20), "t")}
    rows = arith_prm_rows(list(problems.values()), 0)
    by_q = {p.question: p for p in problems.values()}
    assert {r["labels"][-1] for r in rows} == {True, False}
    for r in rows:
        p = by_q[r["prompt"]]
        assert r["labels"][-1] == label_step(p, r["completions"][:-1], r["completions"][-1]).correct


def test_train_tiny_prm_and_score(tiny_model_dir, tmp_path):
    from transformers import AutoModelForTokenClassification

    from psrlm import train

    problems = generate_split(1, 130, Difficulty(2, 4, 20), "prm")
    rows = arith_prm_rows(problems, 0)
    assert len(rows) >= 280
    before = AutoModelForTokenClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    out = tmp_path / "prm"
    info = train.prm(tiny_model_dir, rows, TrainConfig(epochs=1, lr=2e-3, batch_size=16, logging_steps=5), out)
    assert info["loss_curve"] and info["final_loss"] is not None and info["stage"] == "prm"
    after = AutoModelForTokenClassification.from_pretrained(str(out))
    changed = [n for n, p in after.named_parameters() if not torch.equal(p, dict(before.named_parameters())[n])]
    assert any(n.startswith("model.") for n in changed)  # the backbone trained, not only the new head
    scorer = TokenClassificationPRM(out)
    scores = scorer.score_last([r["prompt"] for r in rows[:40]], [r["completions"] for r in rows[:40]])
    assert len(scores) == 40 and all(0.0 <= s <= 1.0 for s in scores)
    acc = step_accuracy(scores, [bool(r["labels"][-1]) for r in rows[:40]])
    assert acc["n"] == 40 and 0.0 <= acc["accuracy"] <= 1.0
    # batched scoring (right padding) matches scoring one at a time
    single = [scorer.score_last([r["prompt"]], [r["completions"]])[0] for r in rows[:4]]
    assert single == pytest.approx(scores[:4], abs=1e-4)


def test_next_token_prm_reads_the_label_tokens_after_the_last_tag(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    scorer = NextTokenPRM(tiny_model_dir, step_tag=" #")
    qs, steps = ["Mia has 5 pens.", "Leo has 3 cards."], [["5 + 1 = 6."], ["3 * 2 = 6.", "6 - 1 = 5."]]
    scores = scorer.score_last(qs, steps)
    assert all(0.0 <= s <= 1.0 for s in scores)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).eval()
    tok = load_tokenizer(tiny_model_dir)
    ids = tok(scorer.text(qs[1], steps[1]), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1, [scorer.good_id, scorer.bad_id]]
    assert scores[1] == pytest.approx(torch.softmax(logits, -1)[0].item(), abs=1e-4)


def test_step_accuracy_catches_a_constant_prm():
    acc = step_accuracy([0.9, 0.9, 0.9, 0.9], [True, True, True, False])
    assert acc["accuracy"] == 0.75 and acc["recall_wrong"] == 0.0 and acc["recall_correct"] == 1.0


def test_load_prm_rejects_unknown_format(tmp_path: Path):
    from psrlm.prm import load_prm

    with pytest.raises(ValueError, match="unknown initdata.prm_format"):
        load_prm("pairwise", tmp_path)


def test_an_input_longer_than_the_prm_context_is_skipped_never_cut(tiny_model_dir):
    """The tiny PRM reads 512 tokens. A question longer than that used to be cut from the left (the question lost,
    the last step scored anyway); it is now not scored at all (None) and counted."""
    scorer = NextTokenPRM(tiny_model_dir, step_tag=" #")
    long_q = "Mia has 5 pens and 3 cards. " * 200
    scores = scorer.score_last(["Mia has 5 pens.", long_q], [["5 + 1 = 6."], ["5 + 1 = 6."]])
    assert scores[0] is not None and 0.0 <= scores[0] <= 1.0
    assert scores[1] is None and scorer._run.skipped == 1


def _ic(tiny_model_dir, **kw):
    from psrlm.configs import InitDataConfig

    return InitDataConfig(prm_path=str(tiny_model_dir), prm_format="next_token", **kw)


def test_a_prm_too_short_for_the_longest_mcts_path_is_one_line_before_any_search(tiny_model_dir):
    from psrlm.configs import ConfigError
    from psrlm.prm import check_fits

    ic = _ic(tiny_model_dir, max_depth=8, max_step_tokens=100)
    with pytest.raises(ConfigError) as e:
        check_fits(ic, ["Mia has 5 pens.", "Leo has 3 cards and finds 2 more."])
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("initdata.prm_path: the PRM (") and "reads 512 tokens" in msg
    assert "initdata.max_depth 8 x (initdata.max_step_tokens 100 + " in msg and "lower initdata.max_depth" in msg
    # the policy cannot write past its own context: a policy of 400 tokens bounds every path below 512
    assert check_fits(ic, ["Mia has 5 pens."], policy_context=400) == {"context": 512, "longest_path": 400}
    short = check_fits(_ic(tiny_model_dir, max_depth=3, max_step_tokens=20), ["Mia has 5 pens."])
    assert short["context"] == 512 and short["longest_path"] < 100


def test_the_prm_gets_a_gpu_the_policy_servers_do_not_take():
    from psrlm.configs import ConfigError, load_config
    from psrlm.initdata.eft_pipeline import prm_device

    base = ["engine.kind=vllm", "engine.servers=8"]
    with pytest.raises(ConfigError, match=r"^initdata.prm_device=cuda:3 is GPU 3, which the policy's 8 server\(s\) x "
                                          r"engine.tensor_parallel 1 take \(GPUs 0-7\): set initdata.policy_servers=7 "
                                          r"and initdata.prm_device=cuda:7$"):  # fmt: skip
        prm_device(load_config(None, [*base, "initdata.prm_device=cuda:3"]))
    assert (
        prm_device(load_config(None, [*base, "initdata.policy_servers=7", "initdata.prm_device=cuda:7"])) == "cuda:7"
    )
    assert prm_device(load_config(None, ["initdata.prm_device=cpu"])) == "cpu"
    with pytest.raises(ConfigError, match="initdata.prm_device='gpu'"):
        load_config(None, ["initdata.prm_device=gpu"])
