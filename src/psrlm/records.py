"""The records that flow between stages, and their JSONL I/O.

Every long stage appends one record per line with `JsonlAppender` (flush + fsync per batch) and, on rerun, reads
back what is there to resume. A file that ends in a half-written line (the process was killed mid-write) loses
that line only, with a warning; a malformed line anywhere else is an error naming the file and line, because it
means the file was edited or corrupted and silently skipping it would lose data.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import tempfile
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

log = logging.getLogger(__name__)


class RecordError(ValueError):
    """A line that is not a valid record; the message names file, line and the problem."""


class WriteError(RuntimeError):
    """A result file that could not be written (disk full, quota, read-only); the message names the file. What
    was committed before it is intact: a rerun resumes from there."""


def disk_reason(e: OSError) -> str:
    return {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.ENOSPC: "no space left on the device",
            errno.EDQUOT: "disk quota exceeded"}.get(e.errno, e.strerror or str(e))  # fmt: skip


def _write_error(path: Path, e: OSError) -> WriteError:
    full = e.errno in (errno.ENOSPC, errno.EDQUOT)
    fix = "free space (or choose another output folder)" if full else "choose another output folder"
    return WriteError(f"cannot write {path}: {disk_reason(e)}; what was committed before is kept: {fix} and rerun "
                      "the same command to resume")  # fmt: skip


@dataclass
class Problem:
    id: str
    question: str
    answer: str
    source: str
    meta: dict = field(default_factory=dict)  # e.g. arith: gold step chain, difficulty


@dataclass
class StepSolution:
    problem_id: str
    steps: list[str]
    final_answer: str | None
    meta: dict = field(default_factory=dict)


@dataclass
class JudgeExample:
    question: str
    prev_steps: list[str]
    step_a: str
    step_b: str
    explanation: str
    verdict: str  # "A" or "B"
    meta: dict = field(default_factory=dict)  # e.g. problem_id, error kind of the wrong step


@dataclass
class ScoreExample:
    """Solution-scoring judge data for the SRLM baseline: (question, response) -> explanation + "Score: X"."""

    question: str
    response: str
    explanation: str
    score: int  # 0-5, additive scale of Yuan et al. (2024)
    meta: dict = field(default_factory=dict)


@dataclass
class PreferencePair:
    """TRL's prompt/chosen/rejected format plus where the pair came from."""

    prompt: str
    chosen: str
    rejected: str
    meta: dict = field(default_factory=dict)  # problem_id, step index, scores, iteration, final flags


@dataclass
class SearchTrace:
    problem_id: str
    steps: list[str]
    rounds: list[dict] = field(default_factory=list)  # per step: candidates, scores, chosen, rolled back
    rollbacks: int = 0  # ties that discarded the previous step (and its pair)
    ties: int = 0  # all rounds whose scores tied, including ties at step 1 (resampled, nothing to discard)
    judge_calls: int = 0
    no_verdicts: int = 0
    gen_tokens: int = 0  # candidate + judge tokens generated for this problem
    capped: int = 0  # candidates (or SRLM solutions) dropped unjudged: cut at the token cap, or a failed request
    rounds_used: int = 0
    finished: bool = False  # reached a step with a \boxed{} answer
    stop_reason: str = ""  # "answer" | "max_steps" | "round_cap"
    final_answer: str | None = None


@dataclass
class Manifest:
    iteration: int
    method: str
    parent_model: str | None
    model_path: str
    data_files: dict = field(default_factory=dict)  # path -> sha256
    config: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    wall_time_s: float = 0.0
    settings: dict = field(default_factory=dict)  # flattened: what determines this model (reuse_model compares it)


R = TypeVar("R")


def _check_type(value: Any, tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_check_type(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list)
    if origin is dict:
        return isinstance(value, dict)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@functools.cache
def _type_hints(cls: type) -> dict:
    # resolving the string annotations costs ~1 ms a call: once per record class, not once per line read
    return typing.get_type_hints(cls)


def from_dict(cls: type[R], obj: Any, where: str = "") -> R:
    """Build record `cls` from a parsed JSON object, with a clear error for a missing or mistyped field."""
    prefix = f"{where}: " if where else ""
    if not isinstance(obj, dict):
        raise RecordError(f"{prefix}expected a JSON object for {cls.__name__}, got {type(obj).__name__}")
    hints = _type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{prefix}{cls.__name__} is missing required field '{f.name}'")
            continue
        value = obj[f.name]
        if not _check_type(value, hints[f.name]):
            raise RecordError(f"{prefix}{cls.__name__}.{f.name} should be {hints[f.name]}, got {value!r:.80}")
        kwargs[f.name] = value
    unknown = set(obj) - set(kwargs) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise RecordError(f"{prefix}{cls.__name__} has unknown field(s) {sorted(unknown)}")
    return cls(**kwargs)


def to_dict(record: Any) -> dict:
    return dataclasses.asdict(record) if dataclasses.is_dataclass(record) else dict(record)


def _dumps(record: Any) -> str:
    return json.dumps(to_dict(record), ensure_ascii=False)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _umask_mode()


def _atomic_write(path: Path, write: Callable[[IO], None], mode: str) -> None:
    """Write via a temp file in the same folder + fsync + rename: readers see the old file or the new one, never
    half. `write` fills the open temp file (opened with `mode`, "w" or "wb")."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from e
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _FILE_MODE)  # mkstemp creates 0600; results are ordinary files others may read
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, e) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    _atomic_write(path, lambda fh: fh.write(text), "w")


def save_figure(fig, path: Path, dpi: int = 120) -> None:
    """A matplotlib figure as PNG, atomically, like every other result file."""
    _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"), "wb")


def write_json(path: Path, obj: Any, *, unless_same: bool = False) -> None:
    _write_text(Path(path), json.dumps(obj, indent=2, ensure_ascii=False) + "\n", unless_same)


def write_jsonl(path: Path, records: Iterable[Any], *, unless_same: bool = False) -> int:
    """Atomically replace `path` with one JSON object per record; returns the count. `unless_same`: leave a file
    that already holds exactly this untouched (its time too: data regenerated on every run is not rewritten)."""
    lines = [_dumps(r) for r in records]
    _write_text(Path(path), "".join(line + "\n" for line in lines), unless_same)
    return len(lines)


def _write_text(path: Path, text: str, unless_same: bool) -> None:
    if unless_same and path.is_file() and path.stat().st_size == len(text.encode("utf-8")):
        if path.read_text(encoding="utf-8") == text:
            return
    atomic_write_text(path, text)


def _decode_line(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(
            f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1})"
        ) from None


def iter_jsonl(path: Path, cls: type[R] | None = None) -> Iterator[R | dict]:
    """Yield records; a torn last line (no trailing newline, not parseable) is dropped with a warning."""
    path = Path(path)
    with open(path, "rb") as fh:
        lines = fh.readlines()
    for i, raw in enumerate(lines, start=1):
        is_last = i == len(lines)
        torn = is_last and not raw.endswith(b"\n")
        try:
            line = _decode_line(raw, path, i)
        except RecordError:
            if torn:  # a kill mid-write can cut a multi-byte character too
                log.warning("%s:%d: dropping a half-written last line (%d bytes)", path, i, len(raw))
                return
            raise
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if torn:
                log.warning("%s:%d: dropping a half-written last line (%d bytes)", path, i, len(line))
                return
            raise RecordError(f"{path}:{i}: malformed JSON ({e.msg} at column {e.colno})") from e
        yield from_dict(cls, obj, f"{path}:{i}") if cls is not None else obj


def read_json(path: Path) -> Any:
    """A JSON file the project wrote (manifest, summary, metrics, settings): any damage is an error that names
    the file, never a bare JSON traceback."""
    path = Path(path)
    try:
        return json.loads(_decode_line(path.read_bytes(), path, 1))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: corrupt JSON ({e.msg} at line {e.lineno} column {e.colno}); "
                          "restore or delete the file") from None  # fmt: skip


def read_problems(path: Path) -> list[Problem]:
    """A Problem JSONL file; an id used twice is an error naming both lines (a rerun would train on duplicates)."""
    problems: list[Problem] = []
    first_line: dict[str, int] = {}
    for i, obj in iter_json_rows(path):
        p = from_dict(Problem, obj, f"{path}:{i}")
        for key in ("question", "answer"):
            nonempty(getattr(p, key), f"{path}:{i}", key)
        if p.id in first_line:
            raise RecordError(
                f"{path}:{i}: problem id {p.id!r} is also on line {first_line[p.id]}; ids must be unique"
            )
        first_line[p.id] = i
        problems.append(p)
    return problems


def nonempty(text: Any, where: str, key: str) -> str:
    """A question or answer with something in it: an empty string would be searched or graded as if it were one."""
    if not isinstance(text, str) or not text.strip():
        raise RecordError(f"{where}: empty {key!r}: every problem needs a question and an answer")
    return text


def check_unique_ids(problems: list[Problem], where: str) -> None:
    seen: dict[str, int] = {}
    for i, p in enumerate(problems):
        if p.id in seen:
            raise RecordError(f"{where}: problem id {p.id!r} appears twice (items {seen[p.id] + 1} and {i + 1})")
        seen[p.id] = i


def read_jsonl(path: Path, cls: type[R] | None = None) -> list[R]:
    return list(iter_jsonl(path, cls))


def validate_jsonl(path: Path, cls: type[R]) -> int:
    """Parse every line of `path` as `cls` (raising on the first bad one) and return the count."""
    return sum(1 for _ in iter_jsonl(path, cls))


class JsonlAppender:
    """Append-only JSONL writer for resumable stages.

    Opening repairs a torn tail left by a kill (truncates the half line, warns), so the next append starts on a
    clean line. Each `append` writes whole lines and fsyncs, so a kill loses at most the batch being written.
    """

    def __init__(self, path: Path, cls: type | None = None):
        self.path = Path(path)
        self.cls = cls
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._repair_tail()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
        except OSError as e:
            raise _write_error(self.path, e) from e

    def _repair_tail(self) -> None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as fh:
            data = fh.read()
            if data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n") + 1
            log.warning(
                "%s: dropping a half-written last line (%d bytes) before appending", self.path, len(data) - cut
            )
            fh.truncate(cut)
            fh.flush()
            os.fsync(fh.fileno())

    def existing(self) -> list:
        return read_jsonl(self.path, self.cls) if self.path.exists() else []

    def append(self, *records: Any) -> None:
        """Whole lines, fsynced. A write that fails (a full disk) is cut back to where it started, so no half line
        is left and everything appended before is intact; the error names the file."""
        if records:
            self.append_lines([_dumps(r) for r in records])

    def append_lines(self, lines: list[str]) -> None:
        """`append` of records already serialised (one JSON object per string, no newline)."""
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode("utf-8")
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as e:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass  # a torn last line is dropped by the next open
            raise _write_error(self.path, e) from e

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def sha256_file(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def iter_json_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for a JSONL data file someone else wrote; a bad line names file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file not found: {path}")
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            line = _decode_line(raw, path, i)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{i}: malformed JSON ({e.msg} at column {e.colno})") from e
            if not isinstance(obj, dict):
                raise RecordError(f"{path}:{i}: expected a JSON object, got {type(obj).__name__}")
            yield i, obj


def require(obj: dict, key: str, where: str, kind: type | tuple = str) -> Any:
    """obj[key], or a RecordError naming where the row came from and which field is missing or mistyped."""
    if key not in obj:
        raise RecordError(f"{where}: missing field '{key}' (fields present: {sorted(obj)})")
    if not isinstance(obj[key], kind):
        raise RecordError(f"{where}: field '{key}' should be {kind}, got {obj[key]!r:.80}")
    return obj[key]
