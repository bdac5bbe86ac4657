"""How `main` reports what went wrong: a user's error (bad input, a missing file, a full disk, a server that did not
start) in one line, never a traceback; a closed stdout pipe quietly."""

from __future__ import annotations

import errno
import sys

from psrlm.configs import ConfigError
from psrlm.records import RecordError, WriteError

DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def user_errors() -> tuple[type[BaseException], ...]:
    """What a user's input or machine can cause: reported in one line, never as a traceback."""
    from psrlm.engines.openai_api import EngineError
    from psrlm.engines.servers import ServerError
    from psrlm.launch import JobError
    from psrlm.stages import EngineFailure

    return (ConfigError, RecordError, WriteError, FileNotFoundError, NotADirectoryError, ValueError, EngineError,
            ServerError, EngineFailure, JobError)  # fmt: skip


def one_line(e: BaseException, verbose: bool, cause: BaseException | None = None) -> int:
    """A user's error in one line; with -v the traceback first, so a real bug behind a ValueError keeps it."""
    if verbose:
        import traceback

        traceback.print_exception(cause or e, file=sys.stderr)
    print(f"psrlm: error: {e}", file=sys.stderr)
    return 2


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's own flush at exit finds no closed pipe to complain about."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def disk_error(e: OSError) -> Exception:
    """An OSError of the disk (full, quota, read-only) raised where no writer named it: one line with the file."""
    from psrlm.records import disk_reason

    where = f" {e.filename}" if e.filename else ""
    fix = "free space (or choose another output folder)" if e.errno != errno.EROFS else "choose another output folder"
    return WriteError(f"cannot write{where}: {disk_reason(e)}; what was committed before is kept: {fix} and rerun "
                      "the same command to resume")  # fmt: skip
