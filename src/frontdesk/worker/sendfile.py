"""Send a file region over an asyncio transport with sendfile(2), under uvloop and asyncio alike.

Theory of operation
-------------------
`loop.sendfile()` exists only on the stdlib loop (uvloop raises NotImplementedError), and both
loops refuse `add_writer` on a file descriptor owned by a transport. So we work beside the
transport on a *duplicate* of its socket fd:

1. `os.dup()` the transport's socket fd. The duplicate shares the socket (and its O_NONBLOCK), but
   it is ours: it can be registered with `add_writer`, and it never goes stale when the transport
   closes its own fd (that fd number may be reused by a new connection at once; ours may not).
2. Wait until the transport's write buffer is empty, so the bytes already written (the response
   head, earlier pipelined responses) go out first. Waiting means: register a writer on the
   duplicate and re-check `get_write_buffer_size()` when the socket is writable — the transport
   flushes on the same readiness, so this converges without polling or busy looping.
3. `os.sendfile(dup, file, offset, n)` until done, at most 2 MiB a call (nginx's
   sendfile_max_chunk: one call to a fast reader must not hold the loop for long); on EAGAIN wait
   for writability of the duplicate the same way, and yield to the loop every 4 MiB even without
   EAGAIN (a fast reader must not starve the other connections). The kernel copies page cache to
   socket: no bytes pass through Python.
4. Always `remove_writer` and close the duplicate before returning. (Removing first matters: an
   epoll registration of a dup'ed fd outlives close() while the original fd is still open.)

While waiting for the socket, a timer re-checks every second whether the transport was closed
(our duplicate would keep a half-dead socket open and writable never come), and whether the
client has taken nothing for `timeout` seconds (then TimeoutError: nginx's send_timeout).
Cancellation is clean.

Fallback, used when sendfile cannot be (a TLS transport, no socket fd, a file system without
sendfile support): `os.pread` 256 KiB chunks and `transport.write` them, waiting between chunks on
`drain()` when the caller gives one (its protocol's flow control), else on the write buffer going
under 256 KiB (checked on socket writability when there is a socket fd, else by short sleeps).

Errors: ConnectionError when the peer is gone or the transport is closing; OSError when the file
cannot be read or is shorter than the region (it shrank after its size was sent). Either way the
response cannot be completed and the connection must be closed. The file is never seeked, read
through its position or closed (FileRegion files are shared); only its fd is used, with offsets.

The caller must not write to the transport until this returns.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["duplicate_socket", "sendfile"]


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


_CHUNK = 256 * 1024
_MAX_SENDFILE = 2 * 1024 * 1024  # per call (module docstring)
_CLOSE_CHECK_INTERVAL = 1.0
# A client that reads as fast as we send never makes sendfile return EAGAIN: yield to the loop
# after this many bytes anyway, so one fast download cannot starve the other connections.
_YIELD_EVERY = 4 * 1024 * 1024
# sendfile(2) errors meaning "not possible for this pair of fds", before anything was sent.
_UNSUPPORTED = frozenset(
    {errno.EINVAL, errno.ENOSYS, errno.ENOTSOCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EOVERFLOW}
)


def _socket_fd(transport: asyncio.Transport) -> int | None:
    """The socket fd to use sendfile on, or None (TLS, pipes, exotic transports)."""
    if transport.get_extra_info("sslcontext") is not None:
        return None
    if transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    if sock is None:
        return None
    try:
        fd = sock.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) and fd >= 0 else None


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():  # pragma: no branch - the timer may have failed it first
        fut.set_result(None)


def _check_closing(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    fut: asyncio.Future[None],
    holder: list[asyncio.TimerHandle],
    deadline: float,
) -> None:
    if fut.done():  # pragma: no cover - woken in the same loop iteration
        return
    if transport.is_closing():
        fut.set_exception(ConnectionResetError("transport closed during sendfile"))
    elif loop.time() >= deadline:
        fut.set_exception(TimeoutError("the client took none of the file for the send timeout"))
    else:
        holder[0] = loop.call_later(
            _CLOSE_CHECK_INTERVAL, _check_closing, loop, transport, fut, holder, deadline
        )


async def _writable(
    loop: asyncio.AbstractEventLoop, fd: int, transport: asyncio.Transport, timeout: float
) -> None:
    """Wait until `fd` (our duplicate) is writable; raise if the transport closes meanwhile, or
    if `timeout` seconds pass first."""
    fut: asyncio.Future[None] = loop.create_future()
    holder: list[asyncio.TimerHandle] = []
    deadline = loop.time() + timeout
    holder.append(loop.call_later(min(_CLOSE_CHECK_INTERVAL, timeout), _check_closing, loop,
                                  transport, fut, holder, deadline))
    loop.add_writer(fd, _wake, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)
        holder[0].cancel()


def _ensure_open(transport: asyncio.Transport) -> None:
    if transport.is_closing():
        raise ConnectionResetError("transport closed during sendfile")


def duplicate_socket(transport: asyncio.Transport, spare_fd: int = -1) -> int:
    """A duplicate of `transport`'s socket for `sendfile` (step 1 above), or -1 when sendfile
    cannot be used on it (then `sendfile` falls back to reads and writes). `spare_fd`, when
    >= 0, is a descriptor the caller reserved and gives up here: the duplicate takes its number
    with dup2, which cannot fail for lack of descriptors; it is closed if not needed. The caller
    owns the result and closes it once its last region is sent."""
    sock_fd = _socket_fd(transport)
    if sock_fd is None or not hasattr(os, "sendfile") or transport.is_closing():
        if spare_fd >= 0:
            os.close(spare_fd)
        return -1
    return os.dup2(sock_fd, spare_fd, inheritable=False) if spare_fd >= 0 else os.dup(sock_fd)


async def sendfile(
    transport: asyncio.Transport,
    file: _HasFileno,
    offset: int,
    count: int,
    *,
    timeout: float = 60.0,
    sock_dup: int = -1,
    drain: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Send `count` bytes of `file` (anything with fileno()) from `offset` over `transport`.

    `timeout`: seconds the client may take nothing before TimeoutError. `sock_dup`, when >= 0,
    is the caller's `duplicate_socket` of the transport, used and left open (one for all the
    regions of a response); otherwise a duplicate is made and closed here. `drain`, optional,
    is awaited between chunks in the read/write fallback (e.g. the protocol's wait-for-
    resume_writing); sendfile proper does not need it. See the module docstring.
    """
    if offset < 0 or count < 0:
        raise ValueError("offset and count must be non-negative")
    if count == 0:
        return
    _ensure_open(transport)
    loop = asyncio.get_running_loop()
    file_fd = file.fileno()
    dup = sock_dup if sock_dup >= 0 else duplicate_socket(transport)
    if dup < 0:
        await _fallback(loop, transport, None, file_fd, offset, count, drain, timeout)
        return
    try:
        while transport.get_write_buffer_size():
            await _writable(loop, dup, transport, timeout)
            _ensure_open(transport)
        sent_any = False
        since_yield = 0
        while count:
            try:
                n = os.sendfile(dup, file_fd, offset, min(count, _MAX_SENDFILE))
            except BlockingIOError:
                await _writable(loop, dup, transport, timeout)
                _ensure_open(transport)
                continue
            except OSError as exc:
                if not sent_any and exc.errno in _UNSUPPORTED:
                    await _fallback(loop, transport, dup, file_fd, offset, count, drain, timeout)
                    return
                raise
            if n == 0:
                raise OSError(errno.EIO, "file ended before the region was sent (it shrank)")
            sent_any = True
            offset += n
            count -= n
            since_yield += n
            if since_yield >= _YIELD_EVERY and count:
                since_yield = 0
                await asyncio.sleep(0)
                _ensure_open(transport)
    finally:
        if dup != sock_dup:
            os.close(dup)


async def _fallback(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    dup: int | None,
    file_fd: int,
    offset: int,
    count: int,
    drain: Callable[[], Awaitable[None]] | None,
    timeout: float,
) -> None:
    delay = 0.001
    while count:
        _ensure_open(transport)
        chunk = os.pread(file_fd, min(count, _CHUNK), offset)
        if not chunk:
            raise OSError(errno.EIO, "file ended before the region was sent (it shrank)")
        transport.write(chunk)
        offset += len(chunk)
        count -= len(chunk)
        if drain is not None:
            await drain()
            continue
        while transport.get_write_buffer_size() > _CHUNK:
            _ensure_open(transport)
            if dup is not None:
                await _writable(loop, dup, transport, timeout)
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
        delay = 0.001
    _ensure_open(transport)
