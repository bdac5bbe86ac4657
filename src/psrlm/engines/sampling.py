"""Sampling whose draws belong to their row: per-row seeds inside one batched `generate`.

transformers samples every row of a batch from one global RNG, so what a prompt draws depends on which other
prompts share its batch, and a resumed search (fewer problems active) would draw different candidates than an
uninterrupted one. Nothing in transformers offers a seed per row, so this is written here.

How: Gumbel-max. argmax_v(l_v + g_v) with g_v ~ Gumbel(0, 1) i.i.d. is an exact sample from softmax(l). The
logits are first scaled by the temperature and top-p filtered (transformers' own warpers), then the noise is
added and generation takes the argmax (do_sample=False). The noise for (row seed, generated position, token id)
comes from a counter-based hash evaluated on whole tensors at once, so it costs a few integer ops per logit and
does not depend on the batch, its padding or its order.
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor

_MASK = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """x * c mod 2**32 for 0 <= x < 2**32, in int64 without overflow (the constant is split in 16-bit halves)."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & _MASK


def hash32(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 (C. Wellons' integer hash): good avalanche, a handful of integer ops."""
    x = x & _MASK
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def gumbel_noise(row_seeds: torch.Tensor, position: int, vocab: int, device) -> torch.Tensor:
    """Gumbel(0, 1) noise of shape (rows, vocab), a pure function of (row seed, position, token id)."""
    base = hash32(hash32(row_seeds.to(device)) ^ hash32(torch.tensor(position * 0x9E3779B1 + 1, device=device)))
    tokens = hash32(torch.arange(vocab, device=device, dtype=torch.int64) + 0x632BE5AB)
    bits = hash32(base[:, None] ^ tokens[None, :])
    u = (bits.double() + 0.5) / 2.0**32  # in (0, 1), never 0 or 1
    return -torch.log(-torch.log(u))


class SeededSampling(LogitsProcessor):
    """A logits processor: temperature, top-p, then per-row Gumbel noise; use with do_sample=False."""

    def __init__(self, row_seeds: list[int], prompt_width: int, temperature: float, top_p: float):
        from transformers import TemperatureLogitsWarper, TopPLogitsWarper

        self.row_seeds = torch.tensor(row_seeds, dtype=torch.int64)
        self.prompt_width = prompt_width
        self.warpers = [TemperatureLogitsWarper(temperature)]
        if top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(top_p))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.float()
        for w in self.warpers:
            scores = w(input_ids, scores)
        position = input_ids.shape[1] - self.prompt_width  # 0 for the first generated token, whatever the padding
        noise = gumbel_noise(self.row_seeds, position, scores.shape[-1], scores.device)
        return scores + noise.to(scores.dtype)


def sample_seed(row_seed: int, k: int) -> int:
    """The seed of sample k of a prompt whose seed is `row_seed`."""
    return (row_seed * 1_000_003 + k * 7_919 + 1) & 0x7FFFFFFF
