"""In-process generation with transformers: all prompts of a call batched together, left-padded, KV-cached.

Prompts are expanded `n` times, sorted by length (so a batch pads little) and generated in chunks of
`batch_size`; outputs go back to prompt order. Stop strings end a row early (a candidate is exactly one step)
and are cut from the text. Sampling is seeded per prompt (engines/sampling.py), so a prompt draws the same
samples whatever else shares its batch. Runs on CPU and CUDA.

Nothing is cut to fit the context: a prompt that alone fills the model's context is not generated at all
(finish_reason "context", counted in `stats.skipped_prompts`); one that fits but leaves less room than
`max_new_tokens` is generated up to the context end (`stats.clamped_prompts`, finish_reason "length" if it gets
there). The logit reads in `continuation_logprobs` follow the same rule.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from psrlm.engines.base import Completion, EngineStats, GenParams, cut_at_stop


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


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
        static_cache: bool | str = "auto",
    ):
        from psrlm import hardware
        from psrlm.tiny import load_tokenizer

        self.device = hardware.pick_device(device)
        self.dtype_name = hardware.engine_dtype(dtype, self.device)
        self.dtype = torch_dtype(self.dtype_name)
        if model is None:
            from transformers import AutoModelForCausalLM

            from psrlm.checkpoints import load_pretrained, resolve_model

            model_path = resolve_model(model_path)
            model = load_pretrained(AutoModelForCausalLM, model_path, dtype=self.dtype)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(model_path)
        if self.tokenizer.padding_side != "left":
            raise ValueError("HFEngine needs a left-padding tokenizer (pass padding_side='left' when loading)")
        self.batch_size = batch_size
        self.static_cache = hardware.static_cache(static_cache, self.device)
        self.max_context = getattr(self.model.config, "max_position_embeddings", None) or 4096
        self.stats = EngineStats()

    def encode(self, texts: list[str]) -> list[list[int] | None]:
        """Token ids per text; None for a text too long to fit the context whatever its tokens (longer than the
        longest vocabulary entry times the context): a 5 MB question is refused without tokenizing it."""
        if not hasattr(self, "_max_chars"):
            longest = max((len(t) for t in self.tokenizer.get_vocab()), default=64)
            self._max_chars = max(16, longest) * self.max_context
        return [
            self.tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"]
            if len(t) <= self._max_chars
            else None
            for t in texts
        ]

    @torch.inference_mode()
    def generate(self, prompts: list[str], params: GenParams) -> list[list[Completion]]:
        start = time.perf_counter()
        tok = self.tokenizer
        encoded = self.encode(prompts)
        out: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        room = {}  # prompt index -> new tokens it may generate
        for i, ids in enumerate(encoded):
            space = -1 if ids is None else self.max_context - len(ids)
            if space < 1:
                out[i] = [Completion("", 0, "context") for _ in range(params.n)]
                self.stats.skipped_prompts += 1
                continue
            room[i] = min(params.max_new_tokens, space)
            self.stats.clamped_prompts += room[i] < params.max_new_tokens
        jobs = sorted(((i, k) for i in room for k in range(params.n)), key=lambda job: -len(encoded[job[0]]))
        for chunk in _batches(jobs, self.batch_size, lambda job: room[job[0]]):
            max_new = room[chunk[0][0]]
            batch = tok.pad({"input_ids": [encoded[i] for i, _ in chunk]}, return_tensors="pt").to(self.device)
            kwargs = self._generate_args(params, chunk, batch["input_ids"].shape[1], max_new)
            gen = self.model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :].tolist()
            for (i, k), ids in zip(chunk, gen, strict=True):
                n_tok, hit_eos = _generated_length(ids, tok.eos_token_id, tok.pad_token_id)
                text = tok.decode(ids[:n_tok], skip_special_tokens=True)
                text, stopped = cut_at_stop(text, params.stop)
                reason = "stop" if stopped or hit_eos or n_tok < max_new else "length"
                out[i][k] = Completion(text=text, tokens=n_tok, finish_reason=reason)
            self.stats.prompt_tokens += int(batch["attention_mask"].sum())
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.completions += len(jobs)
        self.stats.gen_tokens += sum(c.tokens for row in out for c in row)
        self.stats.seconds += time.perf_counter() - start
        return out  # type: ignore[return-value]

    def _generate_args(self, params: GenParams, chunk: list[tuple[int, int]], width: int, max_new: int) -> dict:
        """A fully specified generation config, so a checkpoint's own generation_config.json (Qwen's sets
        sampling, top_k and a repetition penalty) never changes what a call asks for."""
        from transformers import GenerationConfig, LogitsProcessorList

        from psrlm.engines.sampling import SeededSampling, sample_seed

        tok = self.tokenizer
        kwargs: dict = {
            "generation_config": GenerationConfig(
                max_new_tokens=max_new,
                do_sample=False,  # sampling is Gumbel-max with per-row seeds (engines/sampling.py)
                num_beams=1,
                # fields left None are filled from the checkpoint's generation_config.json: pin the ones that
                # would add a logits processor of their own
                repetition_penalty=1.0,
                no_repeat_ngram_size=0,
                min_new_tokens=0,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                stop_strings=list(params.stop) or None,
                cache_implementation="static" if self.static_cache else None,
            )
        }
        if not params.greedy:
            rows = []
            for i, k in chunk:
                seed = params.row_seed(i)
                if seed is None:  # unseeded call: a fresh random seed per row, still independent of the batch
                    seed = int(torch.randint(0, 2**31 - 1, ()).item())
                rows.append(sample_seed(seed, k))
            kwargs["logits_processor"] = LogitsProcessorList(
                [SeededSampling(rows, width, params.temperature, params.top_p)]
            )
        if params.stop:
            kwargs["tokenizer"] = tok  # stop strings are matched on decoded text
        return kwargs


def _batches(jobs: list, size: int, room) -> list[list]:
    """Consecutive chunks of at most `size` jobs that share one generation budget (`room`): jobs are sorted
    longest prompt first, so only the few prompts near the context end get budgets of their own."""
    out: list[list] = []
    for job in jobs:
        if out and len(out[-1]) < size and room(out[-1][0]) == room(job):
            out[-1].append(job)
        else:
            out.append([job])
    return out


def _generated_length(ids: list[int], eos_id: int | None, pad_id: int | None) -> tuple[int, bool]:
    """Tokens really generated: up to and including EOS; rows stopped early are filled with pad afterwards."""
    for j, t in enumerate(ids):
        if t == eos_id:
            return j + 1, True
        if t == pad_id:
            return j, False
    return len(ids), False


def continuation_logprobs(engine: HFEngine, prompts: list[str], continuations: list[str]) -> list[float | None]:
    """Sum of log p(continuation | prompt) for each (prompt, continuation): reads a verdict from logits. A pair
    that does not fit the model's context gets None (counted in `stats.skipped_prompts`), never a cut prompt."""
    tok = engine.tokenizer
    rows: list[tuple[list[int], int] | None] = []
    for p_ids, full in zip(engine.encode(prompts), engine.encode([p + c for p, c in zip(prompts, continuations, strict=True)]), strict=True):  # fmt: skip
        if full is None or len(full) > engine.max_context:
            rows.append(None)
            engine.stats.skipped_prompts += 1
            continue
        keep = len(p_ids)
        while keep > 0 and full[:keep] != p_ids[:keep]:  # tokens merged across the boundary
            keep -= 1
        rows.append((full, keep))
    scores: list[float | None] = [None] * len(rows)
    order = sorted((i for i, r in enumerate(rows) if r is not None), key=lambda i: -len(rows[i][0]))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        for b in range(0, len(order), engine.batch_size):
            idx = order[b : b + engine.batch_size]
            width = max(len(rows[i][0]) for i in idx)
            tail = max(len(rows[i][0]) - rows[i][1] for i in idx) + 1  # positions whose logits are needed
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):  # left padding, as in generation
                seq = rows[i][0]
                ids[r, width - len(seq) :] = torch.tensor(seq)
                mask[r, width - len(seq) :] = 1
            # only the last `tail` positions' logits: batch x tail x vocab, not batch x width x vocab
            logits = engine.model(
                input_ids=ids.to(engine.device), attention_mask=mask.to(engine.device), logits_to_keep=tail
            ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            offset = width - tail  # logits index j belongs to sequence position offset + j
            for r, i in enumerate(idx):
                seq, keep = rows[i]
                start = width - len(seq)
                positions = range(start + keep, width)
                scores[i] = float(sum(logp[r, t - 1 - offset, ids[r, t]] for t in positions))
            engine.stats.prompt_tokens += int(mask.sum())
    return scores
