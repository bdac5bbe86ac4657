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

Nothing is cut to fit: an input longer than the PRM's context (its config's max_position_embeddings) is not scored
(None, counted in `skipped`), never cut from either end; `check_fits` says before any tree search whether the
longest path the search can build fits at all. `device` ("cuda", "cuda:7") puts the PRM on a GPU.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Protocol

import torch

from psrlm.records import Problem

PRM_FORMATS = ("token_classification", "next_token")


class PRMScorer(Protocol):
    def score_last(self, questions: list[str], steps: list[list[str]]) -> list[float | None]:
        """P("+") of the last step of each (question, steps), in [0, 1]; None where the input exceeds the context."""
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
        self.skipped = 0  # inputs longer than the context: not scored, never cut

    @torch.inference_mode()
    def last_logits(self, rows: list[list[int]]) -> list[torch.Tensor | None]:
        """Logits at the last token of each row (num_labels or vocab), None for a row longer than the context."""
        out: list[torch.Tensor | None] = [None] * len(rows)
        fits = [i for i, r in enumerate(rows) if len(r) <= self.max_len]
        self.skipped += len(rows) - len(fits)
        order = sorted(fits, key=lambda i: -len(rows[i]))
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
        return out


def _probabilities(
    logits: list[torch.Tensor | None], column: int, pick: list[int] | None = None
) -> list[float | None]:
    """Softmax probability of `column` (over `pick`'s entries when given) per row; None stays None."""
    out: list[float | None] = []
    for row in logits:
        if row is None:
            out.append(None)
            continue
        row = row[pick] if pick is not None else row
        out.append(torch.softmax(row, dim=-1)[column].item())
    return out


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

    def score_last(self, questions: list[str], steps: list[list[str]]) -> list[float | None]:
        if not questions:
            return []
        tok = self._run.tokenizer
        rows = [
            prm_token_row(tok, q, s, [0] * len(s), self.separator)["input_ids"]
            for q, s in zip(questions, steps, strict=True)
        ]
        return _probabilities(self._run.last_logits(rows), 1)


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

    def score_last(self, questions: list[str], steps: list[list[str]]) -> list[float | None]:
        if not questions:
            return []
        tok = self._run.tokenizer
        rows = [
            tok(self.text(q, s), add_special_tokens=False)["input_ids"] for q, s in zip(questions, steps, strict=True)
        ]
        return _probabilities(self._run.last_logits(rows), 0, [self.good_id, self.bad_id])


def check_fits(ic, questions: list[str], policy_context: int | None = None) -> dict:
    """Before any search: can the longest path MCTS may build reach the PRM whole? The PRM's context (config.json
    max_position_embeddings) against the longest question plus `max_depth` steps of `max_step_tokens` and their
    separators (in the PRM's tokens), bounded by `policy_context`: the policy cannot write past its own context, and
    the PRM reads the same question and steps in a shorter layout (no solve-prompt instructions, one separator per
    step where the policy reads a "Step n:" marker). A ConfigError naming the keys and the numbers
    when it cannot; else {"context", "longest_path"}. Steps are counted at the policy's cap in the PRM's tokenizer:
    an estimate, and an input that still exceeds the context at run time is skipped and counted, never cut."""
    from transformers import AutoConfig

    from psrlm.configs import ConfigError
    from psrlm.tiny import load_tokenizer

    tok = load_tokenizer(ic.prm_path)
    limit = getattr(AutoConfig.from_pretrained(str(ic.prm_path)), "max_position_embeddings", None) or 4096
    sep_text = ic.prm_step_separator if ic.prm_format == "token_classification" else ic.prm_step_tag
    sep = len(tok(sep_text, add_special_tokens=False)["input_ids"]) + (1 if ic.prm_format == "next_token" else 0)
    q = max((len(tok(x, add_special_tokens=False)["input_ids"]) for x in questions), default=0) + 1
    longest = q + ic.max_depth * (ic.max_step_tokens + sep)
    bound = f"longest EFT question {q} + initdata.max_depth {ic.max_depth} x (initdata.max_step_tokens " \
            f"{ic.max_step_tokens} + {sep} separator tokens)"  # fmt: skip
    if policy_context and policy_context < longest:
        longest, bound = policy_context, "the policy's own context"
    if longest > limit:
        raise ConfigError(f"initdata.prm_path: the PRM ({ic.prm_path}) reads {limit} tokens, but an MCTS path can "
                          f"reach {longest} ({bound}): lower initdata.max_depth or initdata.max_step_tokens, or use a "
                          "PRM with a longer context")  # fmt: skip
    return {"context": limit, "longest_path": longest}


def load_prm(fmt: str, path: str | Path, ic=None, device: str = "cpu") -> PRMScorer:
    """A scorer for the PRM at `path` on `device`; `ic` (InitDataConfig) gives separator / tag / label tokens."""
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
