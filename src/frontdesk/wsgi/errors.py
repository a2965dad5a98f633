"""`wsgi.errors`: a text stream into the server's error log.

What an app writes there (Flask's `app.logger` does by default, through its `wsgi_errors_stream`)
goes to the `frontdesk.error.app` logger, a child of `frontdesk.error`, so it lands wherever the
error log does (`--error-logfile`, or the handlers of `--log-config`). Each complete line becomes
one record at ERROR level (PEP 3333 calls it the error output stream, and `--log-level` should
not hide it); a partial line waits for its newline, `flush()`, or the end of the request (the
bridge flushes it, so it never prefixes the next request's first line). Lines are gathered per
thread, so two requests writing at once never interleave within a line.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable

from frontdesk.logs import APP_LOGGER

LOGGER = APP_LOGGER
_MAX_PENDING = 65536  # a partial line longer than this is logged as it is


class _Pending(threading.local):
    """This thread's partial line. A class default, not getattr(..., default): a missing
    attribute of a threading.local costs an AttributeError, ~0.4 us."""

    line = ""


class ErrorStream:
    """File-like enough for `print(file=...)`, `logging.StreamHandler` and PEP 3333:
    `write`, `writelines`, `flush`."""

    encoding = "utf-8"
    errors = "replace"
    closed = False

    def __init__(self, logger: str = LOGGER) -> None:
        self._log = logging.getLogger(logger)
        # The bridge reads `pending.line` after each request and calls flush() only when
        # there is one (one attribute read per request).
        self.pending = _Pending()

    def write(self, text: str) -> int:
        if type(text) is not str:
            raise TypeError(f"wsgi.errors takes str, not {type(text).__name__}")
        pending = self.pending.line + text
        if "\n" in pending:
            *lines, pending = pending.split("\n")
            for line in lines:
                self._log.error("%s", line.rstrip("\r"))
        if len(pending) > _MAX_PENDING:
            self._log.error("%s", pending)
            pending = ""
        self.pending.line = pending
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pending = self.pending.line
        if pending:
            self.pending.line = ""
            self._log.error("%s", pending)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<frontdesk wsgi.errors: logger {self._log.name!r}>"


error_stream = ErrorStream()
