import json

import torch

from psrlm.tiny import count_parameters, load_model, load_tokenizer


def test_tokenizer_round_trip_and_digits(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    text = "Step 2: She has 123 + 45 = 168. The answer is \\boxed{168}."
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    pieces = tok.convert_ids_to_tokens(ids)
    assert "1" in pieces and "123" not in pieces and "Ġ123" not in pieces  # one token per digit


def test_tokenizer_keeps_left_padding_and_special_tokens_after_reload(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    assert tok.padding_side == "left"
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token == "<|pad|>"
    assert tok.pad_token_id != tok.eos_token_id
    batch = tok(["a", "a much longer prompt"], padding=True)
    assert batch["attention_mask"][0][0] == 0  # padded on the left


def test_model_round_trip_gives_identical_logits(tiny_model_dir, tmp_path):
    model = load_model(tiny_model_dir)
    tok = load_tokenizer(tiny_model_dir)
    ids = tok(["Q: Mia has 5 apples."], return_tensors="pt")
    with torch.no_grad():
        a = model(**ids).logits
    model.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(tmp_path / "copy")
    with torch.no_grad():
        b = load_model(tmp_path / "copy")(**ids).logits
    assert torch.equal(a, b)
    info = json.loads((tiny_model_dir / "psrlm_build.json").read_text())
    assert info["parameters"] == count_parameters(model)


def test_batched_generation_matches_single(tiny_model_dir):
    """Left padding must not change what a prompt generates (the transformers-5 padding pitfall)."""
    model = load_model(tiny_model_dir)
    tok = load_tokenizer(tiny_model_dir)
    prompts = ["Q: Mia has 5 apples.\nA:\n", "Q: Leo has 12 pens. He finds 3 more pens. How many?\nA:\n"]
    batch = tok(prompts, return_tensors="pt", padding=True)
    out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    for i, p in enumerate(prompts):
        single = tok([p], return_tensors="pt")
        ref = model.generate(**single, max_new_tokens=8, do_sample=False)
        assert tok.decode(out[i, batch["input_ids"].shape[1] :], skip_special_tokens=True) == tok.decode(
            ref[0, single["input_ids"].shape[1] :], skip_special_tokens=True
        )


def test_init_is_cached(small_cfg):
    from psrlm.initdata.build import init_tiny_model

    first = init_tiny_model(small_cfg)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert init_tiny_model(small_cfg) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
