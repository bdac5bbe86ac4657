"""The tiny from-scratch model: a BPE tokenizer trained on the domain and a Llama-class causal LM from a config.

    psrlm model init --config configs/demo.yaml       # tokenizer + randomly initialised model, cached by config

No weights can be downloaded where this project is built, so the embedded default trains its own. Everything
downstream loads models with `load_model` / `load_tokenizer`, which take any Hugging Face checkpoint directory:
nothing else knows the model is tiny.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from psrlm.configs import ModelConfig

EOS = "<|endoftext|>"
PAD = "<|pad|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int):
    """Byte-level BPE with every digit its own token (arithmetic is learnable digit by digit, and no number is
    merged into a word). Left padding is passed to the constructor: set afterwards it is not saved (transformers 5)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, padding_side="left", model_max_length=max_length
    )


def build_model(cfg: ModelConfig, tokenizer):
    """A Llama-class causal LM with tied embeddings, randomly initialised from `cfg.seed`."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(cfg.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.max_position,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    return model


def config_key(*parts: object) -> str:
    """Short hash of the settings an artifact was built from: the cache key of its folder."""
    blob = json.dumps([p if isinstance(p, (dict, list, str, int, float)) else repr(p) for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def save_model(model, tokenizer, out_dir: Path, build_info: dict, state_dict: dict | None = None, dtype=None) -> None:
    """Save into a temp folder and rename, so a half-saved model is never mistaken for a finished one. `state_dict`:
    the weights to write (gathered from ZeRO-3 shards), instead of the model's own; `dtype`: what to write them as."""
    import shutil

    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if state_dict is not None:
        if dtype is not None:
            state_dict = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
            model.config.dtype = dtype
        model.save_pretrained(tmp, state_dict=state_dict)
    else:
        model = model.to(dtype) if dtype is not None else model
        model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "psrlm_build.json").write_text(json.dumps(build_info, indent=2) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def load_tokenizer(path: str | Path):
    """Any HF tokenizer, left-padded for batched generation, with a pad token (falls back to EOS)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), padding_side="left")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def saved_dtype(path: str | Path):
    """The dtype a checkpoint was saved in (config.json `dtype`, older `torch_dtype`); fp32 when not recorded."""
    import torch

    cfg_file = Path(path) / "config.json"
    name = None
    if cfg_file.exists():
        from psrlm.records import read_json

        cfg = read_json(cfg_file)
        name = cfg.get("dtype") or cfg.get("torch_dtype")
    return {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(str(name), torch.float32)


def load_model(path: str | Path, device: str = "cpu", dtype: str = "float32"):
    import torch
    from transformers import AutoModelForCausalLM

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    from psrlm.checkpoints import load_pretrained

    model = load_pretrained(AutoModelForCausalLM, path, dtype=torch_dtype)
    return model.to(device).eval()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
