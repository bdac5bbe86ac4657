"""Resumable per-problem output of a long stage (search, SRLM, MCTS): one writer per folder, each problem's
records committed whole, problems in flight journaled so a rerun continues them.

Its own module because it joins the two below it: the JSONL records (records) and the folder's writer lock
(folders), neither of which needs the other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from psrlm.folders import FolderLock
from psrlm.records import (
    JsonlAppender,
    RecordError,
    _dumps,
    atomic_write_text,
    iter_json_rows,
    read_jsonl,
    write_jsonl,
)

# its warnings keep the logger name they were always printed under (`psrlm.records: dropping ...`)
log = logging.getLogger("psrlm.records")


JOURNAL_NAME = "inflight.jsonl"


class ProblemLog:
    """Resumable per-problem output of a long stage: `<dir>/traces.jsonl` (one record per finished problem) and
    `<dir>/<items>.jsonl` (that problem's items, e.g. preference pairs).

    `commit` appends the items first, then the trace: a problem counts as done only once its trace is on disk.
    On reopen, items whose problem has no trace (a kill between the two appends) are dropped, so a rerun never
    duplicates or loses a record.

    Problems still in flight can be saved as they go (`journal`, e.g. one entry per search round): entries are
    appended to `<dir>/inflight.jsonl` and read back on reopen as `inflight` ({problem id: its entries, in order},
    problems already committed left out), so a rerun continues each problem where it stopped. A problem's entries
    are dropped once it commits: the journal is compacted when it holds more of the committed than the live,
    rewritten on reopen, and removed when nothing is in flight.
    """

    def __init__(self, out_dir: Path, trace_cls: type, item_cls: type | None = None, items: str = "pairs"):
        self.dir = Path(out_dir)
        self._lock = FolderLock(self.dir, "write results")  # one writer per folder (re-entrant for its caller)
        self._lock.acquire()
        try:
            self._open(trace_cls, item_cls, items)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, trace_cls: type, item_cls: type | None, items: str) -> None:
        self.traces_path = self.dir / "traces.jsonl"
        self.items_path = self.dir / f"{items}.jsonl"
        self._traces = JsonlAppender(self.traces_path, trace_cls)
        self.traces = self._traces.existing()
        self.done = {t.problem_id for t in self.traces}
        self.item_cls = item_cls
        if self.items_path.exists():
            JsonlAppender(self.items_path).close()  # repair a torn tail first
            items_now = read_jsonl(self.items_path, item_cls)
            keep = [r for r in items_now if _problem_of(r) in self.done]
            if len(keep) != len(items_now):
                log.warning(
                    "%s: dropping %d records of unfinished problems", self.items_path, len(items_now) - len(keep)
                )
                write_jsonl(self.items_path, keep)
        self._items = JsonlAppender(self.items_path, item_cls)
        self.journal_path = self.dir / JOURNAL_NAME
        self._journal: JsonlAppender | None = None
        self._live: dict[str, list[str]] = {}  # problem id -> its journal lines, in order
        self._live_bytes = self._dead_bytes = 0
        self.inflight: dict[str, list[dict]] = {}
        if self.journal_path.exists():
            JsonlAppender(self.journal_path).close()  # repair a torn tail first (a kill mid-round)
            for i, obj in iter_json_rows(self.journal_path):
                pid = obj.get("problem_id")
                if not isinstance(pid, str):
                    raise RecordError(f"{self.journal_path}:{i}: a journal entry needs its problem_id")
                if pid not in self.done:
                    self.inflight.setdefault(pid, []).append(obj)
                    self._live.setdefault(pid, []).append(_dumps(obj))
            self._compact()

    def journal(self, entries: list[dict]) -> None:
        """Save the state of problems still in flight (each entry names its `problem_id`), one fsync for all."""
        if not entries:
            return
        lines = [_dumps(e) for e in entries]
        if self._journal is None:
            self._journal = JsonlAppender(self.journal_path)
        self._journal.append_lines(lines)
        for e, line in zip(entries, lines, strict=True):
            self._live.setdefault(e["problem_id"], []).append(line)
            self._live_bytes += len(line) + 1

    def _forget(self, pid: str) -> None:
        gone = sum(len(line) + 1 for line in self._live.pop(pid, []))
        self._live_bytes -= gone
        self._dead_bytes += gone
        if self._dead_bytes > max(self._live_bytes, 1 << 20):
            self._compact()

    def _compact(self) -> None:
        """Rewrite the journal with the entries of problems still in flight (atomically), or remove it."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        lines = [line for pid_lines in self._live.values() for line in pid_lines]
        if lines:
            atomic_write_text(self.journal_path, "".join(line + "\n" for line in lines))
        else:
            self.journal_path.unlink(missing_ok=True)
        self._live_bytes, self._dead_bytes = sum(len(line) + 1 for line in lines), 0

    def items(self) -> list:
        return read_jsonl(self.items_path, self.item_cls)

    def ordered_traces(self, problems: list) -> list:
        """Every trace on disk (earlier runs included), in the order of `problems`."""
        order = {p.id: i for i, p in enumerate(problems)}
        return sorted(self.traces, key=lambda t: order.get(t.problem_id, len(order)))

    def commit(self, trace: Any, items: list) -> None:
        self._items.append(*items)
        self._traces.append(trace)
        self.traces.append(trace)
        self.done.add(trace.problem_id)
        if trace.problem_id in self._live:
            self._forget(trace.problem_id)

    def close(self) -> None:
        self._items.close()
        self._traces.close()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if not self._live and self.journal_path.exists():
            self.journal_path.unlink()  # nothing in flight: every problem of the journal committed
        self._lock.release()

    def __enter__(self) -> ProblemLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _problem_of(record: Any) -> str | None:
    meta = record.meta if hasattr(record, "meta") else record.get("meta", {})
    return meta.get("problem_id")
