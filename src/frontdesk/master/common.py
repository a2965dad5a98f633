"""What the master and its workers share: the pipe messages, process titles, log reopening.

The pipe
--------
Each worker gets the write end of its own pipe; the master reads the other end. Messages are
single bytes, so a write is atomic and the master needs no framing, except `BOOT_FAILED` and
`APP_FAILED`, which are followed by one line and are the last thing a worker that cannot boot
writes.

    =================  ====================================================================
    byte               meaning
    =================  ====================================================================
    `BEAT`   ``.``     the worker's event loop ticked (once a second)
    `READY`  ``R``     the worker serves its listening sockets
    `RETIRE` ``M``     max-requests reached: fork my replacement, then send me TERM
    `STUCK`  ``T``     a request outlived --request-timeout (its stack is in the log);
                       same as `RETIRE`
    `APP_FAILED` ``A``   followed by one line of JSON, ``{"reason": ..., "traceback": ...}``:
                       the app could not be loaded (`AppLoadError`); exit follows. The master
                       decides what to show: a worker prints nothing itself, so N workers
                       failing alike give one traceback, not N
    `BOOT_FAILED` ``E``  followed by ``reason\\n``: the worker crashed before serving; exit follows
    =================  ====================================================================

A worker never blocks on the pipe (its end is non-blocking; a full pipe drops a beat) and treats a
broken pipe as "the master is gone", except for its last words (`BOOT_FAILED`, `APP_FAILED`):
those are written whole, blocking (`send_last`), and kept small enough for the pipe to hold.

The other way, master to workers, there are only signals, and one shared byte: `StopNotice`,
which the master sets when the whole server begins to stop with a `--drain-delay`. Workers do not
act on it; their readiness probe reads it (a readiness probe is rare enough to afford the read).
"""

from __future__ import annotations

import errno
import faulthandler
import importlib
import logging
import mmap
import os
import signal
import sys
from typing import IO, Any

__all__ = [
    "APP_FAILED",
    "BEAT",
    "BOOT_FAILED",
    "READY",
    "RETIRE",
    "STACK_DUMP_SIGNAL",
    "STUCK",
    "StopNotice",
    "error_stream",
    "register_stack_dump",
    "send",
    "send_last",
    "set_title",
]

BEAT = b"."
READY = b"R"
RETIRE = b"M"
STUCK = b"T"
BOOT_FAILED = b"E"
APP_FAILED = b"A"


class StopNotice:
    """One byte shared by the master and every worker it forks: set once the server is stopping.

    Create it in the master before forking (an anonymous MAP_SHARED mapping stays shared across
    fork). Only the master writes it, once; workers read it. A one-byte store needs no lock.
    """

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, 1)

    def set(self) -> None:
        self._map[0] = 1

    def is_set(self) -> bool:
        return self._map[0] != 0


def send(fd: int, message: bytes) -> bool:
    """Write `message` to the master's pipe; False when the master is gone (broken pipe)."""
    try:
        os.write(fd, message)
    except BlockingIOError:
        pass  # the master is behind; a lost beat is harmless, the next tick sends another
    except OSError as exc:
        if exc.errno in (errno.EPIPE, errno.EBADF):
            return False
        raise
    return True


def send_last(fd: int, message: bytes) -> None:
    """Write `message` whole, blocking: the last message of a worker that cannot boot. A
    non-blocking write of more than the pipe holds would be cut short, its line never ended.
    Keep it under the pipe's capacity (64 KiB on Linux): the master reads it only after the
    worker has exited. Nothing is raised if the master is gone."""
    try:
        os.set_blocking(fd, True)
        view = memoryview(message)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass


def set_title(title: str) -> None:
    """Set the process title shown by ps/top, if `setproctitle` is installed (it is optional)."""
    try:
        module = importlib.import_module("setproctitle")
    except ImportError:
        return
    module.setproctitle(title)


def error_stream() -> IO[str]:
    """Where raw dumps (faulthandler) go: the error log's file if it has one, else stderr."""
    for handler in logging.getLogger("frontdesk.error").handlers + logging.getLogger().handlers:
        stream: Any = getattr(handler, "stream", None)
        if stream is not None and hasattr(stream, "fileno"):
            try:
                stream.fileno()
            except (OSError, ValueError):
                continue
            return stream  # type: ignore[no-any-return]
    return sys.stderr


# The master sends this to a worker that stopped beating, before TERM and KILL; an operator may send
# it too (`kill -USR2 WORKER_PID`) to see what a worker is doing. (SIGABRT, gunicorn's choice, is
# reserved by faulthandler for fatal errors.)
STACK_DUMP_SIGNAL = signal.SIGUSR2


def register_stack_dump(sig: int = STACK_DUMP_SIGNAL) -> None:
    """On `sig`, write every thread's Python stack to the error log, from C, without the GIL.

    Works even when the event loop is stuck, which is when the master sends it (before killing a
    worker that stopped beating). The process goes on afterwards (`chain=False`).
    """
    faulthandler.register(sig, file=error_stream(), all_threads=True, chain=False)
