"""Process reward models: P("+") for the last step of (question, steps), from the two common Hugging Face formats.

    scorer = load_prm("token_classification", "runs/initdata-arith/models/prm")
    scorer.score_last(["Mia has 5 pens. ..."], [["Mia buys 2 packs of 3, which is 2 * 3 = 6."]])  # -> [0.97]

token_classification   an `AutoModelForTokenClassification` with two labels, as TRL's PRMTrainer trained it (TRL
                       <= 1.13; see train.prm): input = prompt tokens (+ BOS when the tokenizer has one), then each
                       step's tokens followed by the step separator's; label 1 = "+" is read at the last token of
                       each step's separator.
next_token             a causal LM that writes a "+"/"-" token after a step tag (Math-Shepherd / OpenR style, the
                       paper's PRM): input = question, then each step followed by the tag; P("+") = the softmax
                       over the "+" and "-" tokens' logits at the last tag.

On the embedded domain a tiny token-classification PRM is trained on oracle step labels (`arith_prm_rows`) and
its step accuracy against the oracle is reported; the oracle itself never scores anything in the pipeline.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Protocol

import torch

from psrlm.records import Problem

PRM_FORMATS = ("token_classification", "next_token")


class PRMScorer(Protocol):
    def score_last(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        """P("+") of the last step of each (question, steps), in [0, 1]."""
        ...


def prm_token_row(tokenizer, prompt: str, completions: list[str], labels: list[bool | int], separator: str) -> dict:
    """`input_ids` and per-token `labels` (-100 except at each step's last separator token): PRMTrainer's format."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id] + prompt_ids
    sep = tokenizer(separator, add_special_tokens=False)["input_ids"]
    ids, out_labels = list(prompt_ids), [-100] * len(prompt_ids)
    for text, label in zip(completions, labels, strict=True):
        step = tokenizer(text, add_special_tokens=False)["input_ids"] + sep
        ids += step
        out_labels += [-100] * (len(step) - 1) + [int(label)]
    return {"input_ids": ids, "labels": out_labels}


class _Batched:
    """Right-padded batched forward passes; the causal backbone makes right padding exact for every real token."""

    def __init__(self, model, tokenizer, device: str, batch_size: int):
        self.model, self.tokenizer, self.device, self.batch_size = model.eval(), tokenizer, device, batch_size
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.max_len = getattr(model.config, "max_position_embeddings", None) or 4096

    @torch.inference_mode()
    def last_logits(self, rows: list[list[int]]) -> torch.Tensor:
        """Logits at the last token of each row: (len(rows), num_labels or vocab)."""
        out: list[torch.Tensor | None] = [None] * len(rows)
        rows = [r[-self.max_len :] for r in rows]  # keep the end: it holds the step being scored
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            width = max(len(rows[i]) for i in idx)
            ids = torch.full((len(idx), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, : len(rows[i])] = torch.tensor(rows[i])
                mask[r, : len(rows[i])] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits.float()
            for r, i in enumerate(idx):
                out[i] = logits[r, len(rows[i]) - 1].cpu()
        return torch.stack(out)  # type: ignore[arg-type]


class TokenClassificationPRM:
    def __init__(self, path: str | Path | None = None, *, model=None, tokenizer=None, separator: str = "\n",
                 device: str = "cpu", batch_size: int = 32):  # fmt: skip
        if model is None:
            from transformers import AutoModelForTokenClassification

            from psrlm.checkpoints import load_pretrained

            model = load_pretrained(AutoModelForTokenClassification, path)
        if tokenizer is None:
            from psrlm.tiny import load_tokenizer

            tokenizer = load_tokenizer(path)
        self.separator = separator
        self._run = _Batched(model.to(device), tokenizer, device, batch_size)

    def score_last(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        if not questions:
            return []
        tok = self._run.tokenizer
        rows = [
            prm_token_row(tok, q, s, [0] * len(s), self.separator)["input_ids"]
            for q, s in zip(questions, steps, strict=True)
        ]
        return torch.softmax(self._run.last_logits(rows), dim=-1)[:, 1].tolist()


class NextTokenPRM:
    def __init__(self, path: str | Path | None = None, *, model=None, tokenizer=None, step_tag: str = " ки",
                 good: str = "+", bad: str = "-", device: str = "cpu", batch_size: int = 32):  # fmt: skip
        if model is None:
            from transformers import AutoModelForCausalLM

            from psrlm.checkpoints import load_pretrained

            model = load_pretrained(AutoModelForCausalLM, path)
        if tokenizer is None:
            from psrlm.tiny import load_tokenizer

            tokenizer = load_tokenizer(path)
        self.step_tag = step_tag
        self.good_id = tokenizer(good, add_special_tokens=False)["input_ids"][-1]
        self.bad_id = tokenizer(bad, add_special_tokens=False)["input_ids"][-1]
        if self.good_id == self.bad_id:
            raise ValueError(f"PRM label tokens {good!r} and {bad!r} tokenize to the same id")
        self._run = _Batched(model.to(device), tokenizer, device, batch_size)

    def text(self, question: str, steps: list[str]) -> str:
        """The scored text: must match how the PRM was trained (question, then every step followed by the tag)."""
        return question + "\n" + "\n".join(s + self.step_tag for s in steps)

    def score_last(self, questions: list[str], steps: list[list[str]]) -> list[float]:
        if not questions:
            return []
        tok = self._run.tokenizer
        rows = [
            tok(self.text(q, s), add_special_tokens=False)["input_ids"] for q, s in zip(questions, steps, strict=True)
        ]
        logits = self._run.last_logits(rows)[:, [self.good_id, self.bad_id]]
        return torch.softmax(logits, dim=-1)[:, 0].tolist()


def load_prm(fmt: str, path: str | Path, ic=None, device: str = "cpu") -> PRMScorer:
    """A scorer for the PRM at `path`; `ic` (InitDataConfig) gives separator / tag / label tokens."""
    if fmt == "token_classification":
        return TokenClassificationPRM(path, separator=ic.prm_step_separator if ic else "\n", device=device)
    if fmt == "next_token":
        kw = {"step_tag": ic.prm_step_tag, "good": ic.prm_good, "bad": ic.prm_bad} if ic else {}
        return NextTokenPRM(path, device=device, **kw)
    raise ValueError(f"unknown initdata.prm_format {fmt!r}; choose one of {PRM_FORMATS}")


# ------------------------------------------------------------------------------------- arith training data


def arith_prm_rows(
    problems: list[Problem], seed: int, samples: dict[str, list[tuple[int, str]]] | None = None
) -> list[dict]:
    """PRM rows {prompt, completions, labels} labelled by the oracle: per problem a gold prefix whose last step is
    the gold step or a realistic corruption (every error kind), plus the policy's own sampled steps when given
    (`samples[problem_id]` = [(prefix length, step text)]), so the PRM sees the steps it will score."""
    from psrlm.tasks.arith import ERROR_KINDS, corrupt_step, label_step

    rng = random.Random(f"prm:{seed}")
    rows = []
    for p in problems:
        gold = p.meta["steps"]
        i = rng.randrange(len(gold))
        rows.append({"prompt": p.question, "completions": gold[: i + 1], "labels": [True] * (i + 1)})
        for _ in range(2):
            j = rng.randrange(len(gold))
            wrong = corrupt_step(p, j, rng.choice(ERROR_KINDS), rng)
            if wrong is not None:
                rows.append({"prompt": p.question, "completions": gold[:j] + [wrong], "labels": [True] * j + [False]})
        for k, step in (samples or {}).get(p.id, []):
            ok = label_step(p, gold[:k], step).correct
            rows.append({"prompt": p.question, "completions": gold[:k] + [step], "labels": [True] * k + [ok]})
    rng.shuffle(rows)
    return rows


def step_accuracy(scores: list[float], labels: list[bool]) -> dict:
    """Agreement of P("+") > 0.5 with oracle labels, overall and per class (a PRM that says "+" always is caught)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    right = sum((s > 0.5) == y for s, y in zip(scores, labels, strict=True))
    return {
        "n": len(labels),
        "accuracy": right / max(1, len(labels)),
        "positive_rate": len(pos) / max(1, len(labels)),
        "recall_correct": sum(s > 0.5 for s in pos) / max(1, len(pos)),
        "recall_wrong": sum(s <= 0.5 for s in neg) / max(1, len(neg)),
    }
