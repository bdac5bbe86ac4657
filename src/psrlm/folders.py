"""One writer per output folder, and the settings that made what is in it.

    with FolderLock(out_dir, "search"):                         # a second writer exits at once, naming the holder
        claim_settings(out_dir, {"search": ..., "model": ...})   # a resume with other settings is refused

Lock: `<folder>/.psrlm-lock`, held with flock(2) for the life of the stage (the kernel drops it when the process
dies, however it dies) and holding the holder's pid, host, start time and command for the message a second writer
gets. A lock file left by a process that is gone is taken over with a warning. The same process may take a lock it
already holds (a stage inside a stage).

Settings: `<folder>/psrlm_settings.json`, the flattened settings that determine the folder's content. A rerun
with the same settings resumes; with others it is refused with the keys that differ, unless the caller asks for a
fresh start (`--fresh`) or the folder is a cache (`on_mismatch="replace"`, e.g. evaluation): then the old content
is moved to `<root>/replaced/<time>/...`, never deleted, and the work is done afresh.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from psrlm.records import RecordError, disk_reason, read_json, write_json

log = logging.getLogger(__name__)

LOCK_NAME = ".psrlm-lock"
SETTINGS_NAME = "psrlm_settings.json"
MIN_FREE_BYTES = 64 << 20  # below this a stage would fail mid-write: refuse before loading a model


class FolderError(ValueError):
    """An output folder that cannot be used now: busy, read-only, full, or made with other settings."""


def _io_error(folder: Path, e: OSError) -> FolderError:
    reason = disk_reason(e)
    return FolderError(f"cannot write to {folder}: {reason}; choose another output folder (paths.run_dir / --out)")


def check_writable(folder: Path) -> None:
    """The folder can be created, written and has room: checked before a model is loaded."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".psrlm-probe-{os.getpid()}"
        with open(probe, "wb") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as e:
        raise _io_error(folder, e) from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise FolderError(
            f"cannot write to {folder}: only {free / 2**20:.1f} MiB free on its disk (psrlm needs at least "
            f"{MIN_FREE_BYTES >> 20} MiB); free space or choose another output folder"
        )


# ------------------------------------------------------------------------------------------------ lock

_held: dict[Path, list] = {}  # resolved folder -> [count, fd]


class FolderLock:
    """Exclusive writer lock on `folder` (re-entrant within one process)."""

    def __init__(self, folder: Path, stage: str = ""):
        self.folder = Path(folder)
        self.stage = stage
        self._key: Path | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        check_writable(self.folder)
        key = self.folder.resolve()
        if key in _held:
            _held[key][0] += 1
            self._key = key
            return
        path = self.folder / LOCK_NAME
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise _io_error(self.folder, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise FolderError(f"{self.folder} is being written by {_describe(holder)}; wait for it to finish or "
                                  "stop it (one writer per folder)") from None  # fmt: skip
            try:  # the holder may have removed the file between our open and our lock: lock the file now there
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_holder(fd)
        if previous and previous.get("pid") != os.getpid():
            log.warning("%s: taking over the lock left by %s, which no longer holds it", self.folder,
                        _describe(previous))  # fmt: skip
        me = {"pid": os.getpid(), "host": socket.gethostname(), "stage": self.stage,
              "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:300]}  # fmt: skip
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(me).encode(), 0)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise _io_error(self.folder, e) from None
        _held[key] = [1, fd]
        self._key = key

    def release(self) -> None:
        if self._key is None:
            return
        entry = _held[self._key]
        entry[0] -= 1
        if entry[0] == 0:
            del _held[self._key]
            try:
                (self.folder / LOCK_NAME).unlink()
            except OSError:
                pass
            os.close(entry[1])  # drops the flock
        self._key = None


def _read_holder(fd: int) -> dict:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    what = f"`{holder['stage']}` " if holder.get("stage") else ""
    return (f"{what}pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
            f"({holder.get('command', '')})")  # fmt: skip


# -------------------------------------------------------------------------------------------- settings


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{"search": {"width": 6}} -> {"search.width": 6}; lists and scalars are leaves."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def fingerprint(settings: dict) -> str:
    blob = json.dumps(flatten(settings), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def settings_diff(old: dict, new: dict, limit: int = 8) -> str:
    old, new = flatten(old), flatten(new)
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k, "<unset>") != new.get(k, "<unset>"))
    parts = [f"{k}: {_short(old.get(k, '<unset>'))} -> {_short(new.get(k, '<unset>'))}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return ", ".join(parts)


def _short(v: Any) -> str:
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def _has_content(folder: Path) -> bool:
    return folder.is_dir() and any(p.name not in (LOCK_NAME, SETTINGS_NAME) for p in folder.iterdir())


def _has_results(folder: Path) -> bool:
    """Anything a stage wrote besides locks and stamps: a non-empty file at any depth. A stage that crashed at
    start (a model that would not load) leaves its stamp and perhaps empty result files: no results."""
    if not folder.is_dir():
        return False
    for p in folder.iterdir():
        if p.name in (LOCK_NAME, SETTINGS_NAME):
            continue
        if p.is_dir() and not p.is_symlink():
            if _has_results(p):
                return True
        elif not p.is_file() or p.stat().st_size > 0:
            return True
    return False


def move_aside(path: Path, root: Path) -> Path | None:
    """Move `path` (a file, or a folder's content but its lock) to `<root>/replaced/<time>/<path relative to
    root>`; returns where it went, None when there was nothing. Across file systems (`path` a mount point) each
    entry is copied and then removed; a move that fails leaves the original in place and no empty folder behind."""
    path, root = Path(path), Path(root)
    if not path.exists() or (path.is_dir() and not _has_content(path) and not (path / SETTINGS_NAME).exists()):
        return None
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = root / "replaced" / stamp / rel
    n = 1
    while dest.exists():  # a second replacement within the same second: never overwrite the first
        n += 1
        dest = root / "replaced" / f"{stamp}-{n}" / rel
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
            for entry in path.iterdir():
                if entry.name != LOCK_NAME:
                    _move(entry, dest / entry.name)
        else:
            _move(path, dest)
    except OSError as e:
        _prune_empty(dest, root / "replaced")
        where = f"what was moved is in {dest}, the rest still in {path}" if dest.exists() else f"{path} is as it was"
        raise FolderError(f"cannot move {path} aside to {dest}: {disk_reason(e)}; nothing was lost ({where}): free "
                          "space there, or move the old results away yourself") from None  # fmt: skip
    return dest


def _move(src: Path, dst: Path) -> None:
    """rename(2), or on another file system a copy that is removed from the source only once it is whole."""
    try:
        src.rename(dst)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    try:
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst, follow_symlinks=False)
    except (OSError, shutil.Error):
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst, ignore_errors=True)
        else:
            dst.unlink(missing_ok=True)
        raise
    if src.is_dir() and not src.is_symlink():
        shutil.rmtree(src)
    else:
        src.unlink()


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove `folder` and its parents up to and including `stop` while they are empty."""
    folder, stop = Path(folder), Path(stop)
    chain = [folder, *folder.parents]
    for d in chain[: chain.index(stop) + 1] if stop in chain else [folder]:
        try:
            d.rmdir()
        except OSError:
            return


def _read_stamp(folder: Path) -> dict | None:
    stamp = Path(folder) / SETTINGS_NAME
    if not stamp.exists():
        return None
    data = read_json(stamp)
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict):
        raise RecordError(f"{stamp}: not a settings record; restore or delete the file")
    return data


def recorded_settings(folder: Path) -> dict | None:
    data = _read_stamp(folder)
    return None if data is None else data["settings"]


def recorded_extra(folder: Path) -> dict:
    """What a stamp records besides the compared settings (e.g. the file stats behind a model hash)."""
    data = _read_stamp(folder)
    return (data or {}).get("extra") or {}


def claim_settings(
    folder: Path,
    settings: dict,
    *,
    fresh: bool = False,
    replace: bool = False,
    root: Path | None = None,
    extra: dict | None = None,
) -> None:
    """Record `settings` as what made `folder`, or check they match what is recorded.

    Matching: nothing to do (resume). Differing, or results with no record: refused with the differing keys,
    unless `fresh` (the user asked to start over) or `replace` (a cache): then the old content is moved aside.
    `extra` is recorded beside the settings but never compared."""
    folder = Path(folder)
    flat = flatten(settings)
    stamp = _read_stamp(folder)
    old = None if stamp is None else stamp["settings"]
    record = {"fingerprint": fingerprint(flat), "settings": flat, **({"extra": extra} if extra else {})}
    if old == flat:
        if extra and stamp.get("extra") != extra:
            write_json(folder / SETTINGS_NAME, record)
        return
    if not _has_results(folder):  # nothing to protect: a first start, or one that crashed before any result
        write_json(folder / SETTINGS_NAME, record)
        return
    why = (f"was made with other settings ({settings_diff(old, flat)})" if old is not None
           else "holds results with no record of the settings that made them (an older psrlm?)")  # fmt: skip
    if not (fresh or replace):
        raise FolderError(f"{folder} {why}: rerun with the same settings to resume it, or pass --fresh to start "
                          "it over (the old results are moved to a replaced/ folder, not deleted)")  # fmt: skip
    moved = move_aside(folder, root or folder.parent)
    log.warning("%s %s: starting afresh; old results moved to %s", folder, why, moved)
    write_json(folder / SETTINGS_NAME, record)


# ------------------------------------------------------------------------------------------- model identity

_IDENTITY_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                   "special_tokens_map.json", "vocab.json", "merges.txt", "chat_template.jinja")  # fmt: skip


def model_files(model_dir: Path) -> dict[str, list[int]]:
    """name -> [size, mtime_ns] of every file that decides what the model computes (weights, config, tokenizer);
    training logs and build notes are left out, so a copy of a model is the same model."""
    d = Path(model_dir)
    files = [d / n for n in _IDENTITY_FILES if (d / n).exists()]
    files += sorted(d.glob("*.safetensors")) + sorted(d.glob("*.bin")) + sorted(d.glob("*.index.json"))
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def model_identity(model_dir: Path, known: dict | None = None) -> str:
    """sha256 over a model's files (see model_files). `known` = {"files": ..., "sha256": ...} recorded earlier:
    when sizes and times are unchanged its hash is reused, so a 15 GB checkpoint is read once, not per call."""
    stats = model_files(model_dir)
    if known and known.get("files") == stats and known.get("sha256"):
        return known["sha256"]
    h = hashlib.sha256()
    for name in sorted(stats):
        h.update(name.encode() + b"\0")
        with open(Path(model_dir) / name, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()
