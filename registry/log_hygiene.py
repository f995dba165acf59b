"""What the token service's process may write to its log, which holds who logged in from where.

aiohttp logs a request it cannot parse with the exception, and the exception
quotes the offending bytes: for an over-long `Authorization` header that is a
slice of base64 `user:password`. Library records keep their first line, capped;
their exception shrinks to its type. The log file and its folder are made
readable by owner and group only.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

MAX_LIBRARY_MESSAGE = 200
LOG_FILE_MODE = 0o640
LOG_DIR_MODE = 0o750


class LibraryRecordFilter(logging.Filter):
    """Strips request data from records of libraries (anything not logged by ASCI's own loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("asci."):
            return True
        message = record.getMessage().splitlines()[0] if record.getMessage() else ""
        if len(message) > MAX_LIBRARY_MESSAGE:
            message = message[:MAX_LIBRARY_MESSAGE] + "...(cut)"
        if record.exc_info and record.exc_info[1] is not None:
            message += f" ({type(record.exc_info[1]).__name__})"
        record.msg, record.args = message, None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def guard_handlers(logger: logging.Logger | None = None) -> None:
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(LibraryRecordFilter())


def restrict_log_file(fd: int = 1) -> Path | None:
    """Make the file behind FD (stdout: the stack's log of this part) 0640 and its folder 0750.

    Returns the file's path, or None when FD is not a regular file (a terminal, a pipe).
    """
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.fchmod(fd, LOG_FILE_MODE & stat.S_IMODE(os.fstat(fd).st_mode) or LOG_FILE_MODE)
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None
    folder = path.parent
    try:
        current = stat.S_IMODE(folder.stat().st_mode)
        folder.chmod(current & LOG_DIR_MODE)
    except OSError:
        pass  # not ours to change: the file itself is already private
    return path
