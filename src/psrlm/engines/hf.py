"""In-process generation with transformers: all prompts of a call batched together, left-padded, KV-cached.

Prompts are expanded `n` times, sorted by length (so a batch pads little) and generated in chunks of
`batch_size`; outputs go back to prompt order. Stop strings end a row early (a candidate is exactly one step)
and are cut from the text. Runs on CPU and CUDA.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from psrlm.engines.base import Completion, EngineStats, GenParams, cut_at_stop


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class HFEngine:
    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model=None,
        tokenizer=None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        static_cache: bool = False,
    ):
        from psrlm.tiny import load_tokenizer

        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        if model is None:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=self.dtype)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_path)
        if self.tokenizer.padding_side != "left":
            raise ValueError("HFEngine needs a left-padding tokenizer (pass padding_side='left' when loading)")
        self.batch_size = batch_size
        self.static_cache = static_cache
        self.max_context = getattr(self.model.config, "max_position_embeddings", None) or 4096
        self.stats = EngineStats()

    @torch.inference_mode()
    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        start = time.perf_counter()
        tok = self.tokenizer
        encoded = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        budget = max(1, self.max_context - params.max_new_tokens)
        for i, ids in enumerate(encoded):
            if len(ids) > budget:  # keep the end of the prompt: it holds the step being continued
                encoded[i] = ids[-budget:]
                self.stats.truncated_prompts += 1
        jobs = [(i, k) for i in range(len(prompts)) for k in range(params.n)]
        jobs.sort(key=lambda job: -len(encoded[job[0]]))
        out: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        for b in range(0, len(jobs), self.batch_size):
            chunk = jobs[b : b + self.batch_size]
            batch = tok.pad({"input_ids": [encoded[i] for i, _ in chunk]}, return_tensors="pt").to(self.device)
            if params.seed is not None:
                torch.manual_seed(params.seed + b)
            kwargs = dict(
                max_new_tokens=params.max_new_tokens,
                do_sample=not params.greedy,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            if not params.greedy:
                kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
            if params.stop:
                kwargs.update(stop_strings=list(params.stop), tokenizer=tok)
            if self.static_cache:
                kwargs["cache_implementation"] = "static"
            gen = self.model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :].tolist()
            for (i, k), ids in zip(chunk, gen, strict=True):
                n_tok, hit_eos = _generated_length(ids, tok.eos_token_id, tok.pad_token_id)
                text = tok.decode(ids[:n_tok], skip_special_tokens=True)
                text, stopped = cut_at_stop(text, params.stop)
                reason = "stop" if stopped or hit_eos or n_tok < params.max_new_tokens else "length"
                out[i][k] = Completion(text=text, tokens=n_tok, finish_reason=reason)
            self.stats.prompt_tokens += int(batch["attention_mask"].sum())
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.completions += len(jobs)
        self.stats.gen_tokens += sum(c.tokens for row in out for c in row)
        self.stats.seconds += time.perf_counter() - start
        return out  # type: ignore[return-value]


def _generated_length(ids: list[int], eos_id: int | None, pad_id: int | None) -> tuple[int, bool]:
    """Tokens really generated: up to and including EOS; rows stopped early are filled with pad afterwards."""
    for j, t in enumerate(ids):
        if t == eos_id:
            return j + 1, True
        if t == pad_id:
            return j, False
    return len(ids), False


def continuation_logprobs(engine: HFEngine, prompts: list[str], continuations: list[str]) -> list[float]:
    """Sum of log p(continuation | prompt) for each (prompt, continuation): reads a verdict from logits."""
    tok = engine.tokenizer
    rows = []
    for p, c in zip(prompts, continuations, strict=True):
        p_ids = tok(p, add_special_tokens=False)["input_ids"]
        full = tok(p + c, add_special_tokens=False)["input_ids"]
        keep = len(p_ids)
        while keep > 0 and full[:keep] != p_ids[:keep]:  # tokens merged across the boundary
            keep -= 1
        rows.append((full, keep))
    scores = [0.0] * len(rows)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        for b in range(0, len(order), engine.batch_size):
            idx = order[b : b + engine.batch_size]
            width = max(len(rows[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):  # left padding, as in generation
                seq = rows[i][0]
                ids[r, width - len(seq) :] = torch.tensor(seq)
                mask[r, width - len(seq) :] = 1
            logits = engine.model(input_ids=ids.to(engine.device), attention_mask=mask.to(engine.device)).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            for r, i in enumerate(idx):
                seq, keep = rows[i]
                start = width - len(seq)
                positions = range(start + keep, width)
                scores[i] = float(sum(logp[r, t - 1, ids[r, t]] for t in positions))
    return scores
