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
        read_json(config)
    except RecordError as e:
        raise ModelError(str(e)) from None
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
