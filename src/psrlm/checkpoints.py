"""Find and check a model folder before anything loads it, so a bad path costs a one-line error, not a traceback.

    resolve_model("runs/demo/models/psrlm-M1")    # a local folder
    resolve_model("Qwen/Qwen2.5-Math-7B")         # a Hugging Face id, only if already in the local HF cache

psrlm never downloads a model at run time: a path that is not a folder here is an error at once (transformers
would otherwise read it as a hub id and spend tens of seconds retrying the network). A folder must hold
config.json, weights whose files are whole, and tokenizer files.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from psrlm.records import RecordError, read_json

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


class ModelError(ValueError):
    """A model folder that cannot be used; the message names the folder or file and what to do."""


def resolve_model(spec: str | Path, key: str = "--model") -> Path:
    """The checked local folder for `spec`: a folder path, or a hub id already in the local HF cache."""
    text = str(spec).strip()
    if not text:
        raise ModelError(f"{key}: no model given")
    path = Path(text).expanduser()
    if path.is_dir():
        check_model_dir(path)
        return path
    if path.exists():
        raise ModelError(f"{key}: {path} is a file; expected a model folder (config.json, weights, tokenizer)")
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        cached = _hub_cache(text)
        if cached is not None:
            check_model_dir(cached)
            return cached
        raise ModelError(
            f"{key}: {text} is not a folder here and not in the local Hugging Face cache; psrlm never downloads at "
            f"run time: fetch it first (`hf download {text}`) or give the folder"
        )
    raise ModelError(f"{key}: model folder not found: {path}")


def _hub_cache(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or a malformed id: both mean "not here"
        return None


def check_model_dir(path: Path, tokenizer: bool = True) -> None:
    path = Path(path)
    config = path / "config.json"
    if not config.exists():
        raise ModelError(f"{path}: no config.json: not a model folder")
    try:
        described = read_json(config)
    except RecordError as e:
        raise ModelError(str(e)) from None
    check_model_type(config, described)
    weights = _weight_files(path)
    if not weights:
        raise ModelError(f"{path}: no weights (*.safetensors or pytorch_model*.bin)")
    for w in weights:
        if not w.exists():
            raise ModelError(f"{w}: listed in the weight index but missing")
        if w.suffix == ".safetensors":
            check_safetensors(w)
    if tokenizer and not any((path / f).exists() for f in TOKENIZER_FILES):
        raise ModelError(
            f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); copy them from the model this one was "
            "trained from"
        )


def check_model_type(config: Path, described) -> None:
    """config.json names an architecture this transformers knows: an unknown `model_type` is named here, where
    transformers would answer with advice to `pip install --upgrade` it."""
    if not isinstance(described, dict):
        raise ModelError(f"{config}: not a model config (a JSON object with model_type)")
    kind = described.get("model_type")
    if not kind:
        raise ModelError(f"{config}: no model_type: not a transformers model config")
    import transformers
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    if kind not in CONFIG_MAPPING_NAMES:
        remote = (
            " (its auto_map asks for the checkpoint's own code, which psrlm never runs)"
            if "auto_map" in described
            else ""
        )
        raise ModelError(f"{config}: model_type {kind!r} is not an architecture transformers {transformers.__version__} "
                         f"knows{remote}; check the file (a typo, or another library's config?)")  # fmt: skip


def load_pretrained(auto_cls, path: str | Path, **kwargs):
    """`auto_cls.from_pretrained(path, **kwargs)` for a checkpoint loaded as what it was saved as, refused in one
    line when its config.json does not describe its weights: transformers prints a load report and then raises
    (shapes that differ) or, worse, initialises at random what the weights lack and goes on."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report: said below, in one line
    try:
        model, info = auto_cls.from_pretrained(str(path), output_loading_info=True, ignore_mismatched_sizes=True,
                                               **kwargs)  # fmt: skip
    finally:
        hf_logging.set_verbosity(verbosity)
    config = Path(path) / "config.json"
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda m: m[0])
    missing, unexpected = sorted(info.get("missing_keys") or []), sorted(info.get("unexpected_keys") or [])
    if mismatched:
        key, saved, wanted = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise ModelError(f"{config} does not describe the weights beside it: {key} is {list(saved)} in the weights but "
                         f"{list(wanted)} by the config{more}; was config.json edited, or copied from another "
                         "model?")  # fmt: skip
    if missing or unexpected:
        keys, what = (missing, "the config has weights the checkpoint lacks (they would start at random)") if missing \
            else (unexpected, "the checkpoint has weights the config has no place for")  # fmt: skip
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        raise ModelError(f"{config} does not describe the weights beside it: {what}: {keys[0]}{more}; was "
                         "config.json edited, or copied from another model?")  # fmt: skip
    return model


def _weight_files(path: Path) -> list[Path]:
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).exists():
            try:
                shards = sorted(set(read_json(path / index).get("weight_map", {}).values()))
            except (RecordError, AttributeError) as e:
                raise ModelError(f"{path / index}: unreadable weight index ({e})") from None
            return [path / s for s in shards]
    return sorted(path.glob("*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))


def check_safetensors(file: Path) -> None:
    """The header parses and the file is exactly as long as the tensors it declares: a copy cut short (a full
    disk, an interrupted download) is named here instead of failing deep inside the loader."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise ModelError(f"{file}: truncated safetensors file ({size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ModelError(f"{file}: truncated or corrupt safetensors file (header of {n} bytes, file {size})")
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelError(f"{file}: corrupt safetensors header") from None
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise ModelError(f"{file}: truncated or corrupt safetensors file ({size} bytes, its header says {expected})")
