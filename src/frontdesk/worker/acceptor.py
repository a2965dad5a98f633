"""Accepting connections on a listening socket, many per wake-up.

Why not `loop.create_server(sock=...)`: libuv (so uvloop) accepts one connection per loop
iteration since libuv 1.45 ("unix: don't accept() connections in a loop"). Under load a loop
iteration serves every ready connection first, so a burst of new connections is taken in one at
a time: measured here, 1,000 clients connecting at once to a busy worker were accepted over 1 to
4 seconds (their first requests waited as long), and `Connection: close` traffic, one accept per
request, ran at 60 % of the stdlib loop's rate. So the worker accepts itself: a reader on the
listening socket takes up to `BATCH` connections per wake-up (the stdlib loop does the same),
then hands each to the loop with `connect_accepted_socket`.

Accept errors: the peer gone already (ECONNABORTED and the like) skips that one; out of file
descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) stops accepting for `PAUSE_ON_EXHAUSTION` seconds,
with one log line, instead of spinning on a socket that stays readable; the connections wait in
the kernel's backlog meanwhile.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("frontdesk.error")

BATCH = 128  # connections taken per wake-up at most, so serving the others is never held long
PAUSE_ON_EXHAUSTION = 0.5
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    """Accepts on `sock` and makes a connection with `protocol_factory` for each (see above)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol_factory: Callable[[], asyncio.Protocol]) -> None:
        self._loop = loop
        self._sock = sock
        self._factory = protocol_factory
        self._inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        self._accepting = False
        self._resume: asyncio.TimerHandle | None = None
        self.pending = 0  # accepted sockets whose connection is still being set up

    def start(self) -> None:
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock.fileno(), self._accept)
        self._accepting = True

    def close(self) -> None:
        """Stop accepting for good, and close this process's copy of the socket: once every
        process has closed its copy, new connections are refused instead of waiting in a
        backlog that nobody accepts from."""
        self._stop()
        self._sock.close()

    def _stop(self) -> None:
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None
        if self._accepting:
            self._accepting = False
            self._loop.remove_reader(self._sock.fileno())

    def _accept(self) -> None:
        for _ in range(BATCH):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(exc)
                    return
                continue  # that client is gone already; take the next one
            if self._inet:  # uvloop sets it, the stdlib loop does not
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pending += 1
            self._loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self._factory, conn)
        except (OSError, RuntimeError) as exc:  # gone before it was set up, or the loop closing
            log.debug("connection not set up: %s", exc)
            conn.close()
        finally:
            self.pending -= 1

    def _pause(self, exc: OSError) -> None:
        log.warning("cannot accept connections: %s; trying again in %g s (they wait in the "
                    "kernel's backlog meanwhile)", exc.strerror or exc, PAUSE_ON_EXHAUSTION)
        self._stop()
        self._resume = self._loop.call_later(PAUSE_ON_EXHAUSTION, self.start)
