"""A worker: one event loop serving HTTP on inherited listening sockets, plus its app threads.

No HTTP details here (those live in `transport`): this module boots the loop, owns the shared
pieces every connection uses (limits, static files, thread pool, outbox), ticks the clock once a
second (Date header, connection deadlines), and stops gracefully on SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from typing import Any, Callable

from frontdesk.protocol import serialize
from frontdesk.protocol.parser import Limits
from frontdesk.wsgi.bridge import Bridge
from frontdesk.worker.pool import Outbox, ThreadPool
from frontdesk.worker.transport import NO_DEADLINE, HttpConnection

log = logging.getLogger("frontdesk.error")


def new_event_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop when installed (or asked for), else the stdlib loop."""
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Worker:
    """Serves the app on `sockets` until told to stop (see module docstring)."""

    def __init__(self, config: Any, app: Callable[..., Any], static: Any = None) -> None:
        self.config = config
        self.app = app
        self.static = static
        self.limits = Limits.from_config(config)
        self.connections: set[HttpConnection] = set()
        self.draining = False
        self.server_name = "localhost"
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.pool: ThreadPool = None  # type: ignore[assignment]
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped: asyncio.Future[None] | None = None
        self._tick_handle: asyncio.TimerHandle | None = None

    def run(self, sockets: list[socket.socket], on_ready: Callable[[], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT, then drain. Returns the process exit status."""
        loop = new_event_loop(self.config.loop)
        asyncio.set_event_loop(loop)
        self.loop = loop
        outbox = Outbox(loop)
        self.pool = ThreadPool(loop, self.config.threads, Bridge(self.app, outbox).handle)
        try:
            return loop.run_until_complete(self._serve(sockets, on_ready))
        finally:
            self.pool.stop(timeout=1.0)
            loop.close()

    async def _serve(self, sockets: list[socket.socket], on_ready: Callable[[], None] | None) -> int:
        loop = self.loop
        self._stopped = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        for sock in sockets:
            server = await loop.create_server(
                lambda: HttpConnection(self), sock=sock, backlog=self.config.backlog
            )
            self._servers.append(server)
        self._tick()
        if on_ready is not None:
            on_ready()
        await self._stopped
        return await self._drain()

    def stop(self) -> None:
        """Begin a graceful stop (idempotent)."""
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    async def _drain(self) -> int:
        """Stop accepting, let in-flight requests finish up to the graceful timeout, close."""
        self.draining = True
        for server in self._servers:
            server.close()
        for connection in list(self.connections):
            connection.close_if_idle()
        deadline = time.monotonic() + self.config.graceful_timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.connections:
            log.warning("graceful timeout: closing %d connection(s) still busy", len(self.connections))
            for connection in list(self.connections):
                connection._abort()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        await asyncio.sleep(0)  # let the transports finish closing
        return 0

    def _tick(self) -> None:
        """Once a second: refresh the Date header and expire connection deadlines."""
        serialize.refresh_date()
        now = time.monotonic()
        for connection in [c for c in self.connections if c.phase != NO_DEADLINE]:
            if now >= connection.deadline:
                connection.on_deadline()
        # Wake at the next whole second so the Date header turns over on time.
        self._tick_handle = self.loop.call_later(1.0 - time.time() % 1.0 + 0.001, self._tick)


def worker_pid() -> int:
    return os.getpid()
