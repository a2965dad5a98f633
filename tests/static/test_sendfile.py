"""sendfile() over real loopback sockets, under the stdlib loop and uvloop."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from frontdesk.worker import sendfile as sendfile_mod
from frontdesk.worker.sendfile import duplicate_socket, sendfile

uvloop = pytest.importorskip("uvloop")

Job = Callable[[asyncio.Transport], Awaitable[None]]

MIB = 1024 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Callable[[], Coroutine[Any, Any, Any]]], Any]:
    factory = asyncio.new_event_loop if request.param == "asyncio" else uvloop.new_event_loop

    def _run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(main(), 15))
        finally:
            loop.close()

    return _run


@pytest.fixture
def data_file(tmp_path: Path):  # type: ignore[no-untyped-def]
    data = os.urandom(4 * MIB)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with open(path, "rb", buffering=0) as f:
        yield f, data


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Proto(asyncio.Protocol):
    def __init__(self, job: Job, results: list[BaseException | None], ssl_ctx: Any = None):
        self.job = job
        self.results = results

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        asyncio.get_running_loop().create_task(self._run(transport))  # type: ignore[arg-type]

    async def _run(self, transport: asyncio.Transport) -> None:
        try:
            await self.job(transport)
        except BaseException as exc:
            self.results.append(exc)
            transport.abort()
        else:
            self.results.append(None)
            transport.close()


async def start(job: Job, ssl_ctx: ssl.SSLContext | None = None):  # type: ignore[no-untyped-def]
    results: list[BaseException | None] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Proto(job, results), "127.0.0.1", 0, ssl=ssl_ctx)
    port = server.sockets[0].getsockname()[1]
    return server, port, results


async def connect(port: int, *, rcvbuf: int | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    """A client connection. (Not loop.sock_*: uvloop leaves a /dev/null fd behind for those.)"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, **kw)
    if rcvbuf:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return reader, writer


async def read_all(port: int, *, rcvbuf: int | None = None, slow: float = 0.0, **kw: Any) -> bytes:
    reader, writer = await connect(port, rcvbuf=rcvbuf, **kw)
    out = bytearray()
    while True:
        chunk = await reader.read(16384 if slow else 1 << 20)
        if not chunk:
            break
        out += chunk
        if slow:
            await asyncio.sleep(slow)
    writer.close()
    return bytes(out)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    ("offset", "count"),
    [(0, 4 * MIB), (12345, 1_000_000), (4 * MIB - 1, 1), (100, 0)],
)
def test_sends_the_region(run, data_file, monkeypatch, offset: int, count: int) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file
    calls: list[int] = []
    real = os.sendfile
    monkeypatch.setattr(os, "sendfile", lambda *a: calls.append(a[3]) or real(*a))

    async def job(transport: asyncio.Transport) -> None:
        transport.write(b"HEAD\r\n")
        await sendfile(transport, f, offset, count)
        transport.write(b"TAIL")

    async def main() -> bytes:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        assert results == [None]
        return got

    assert run(main) == b"HEAD\r\n" + data[offset : offset + count] + b"TAIL"
    assert (len(calls) > 0) == (count > 0)  # the real thing, not the fallback


def test_empty_file(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").write_bytes(b"")

    async def job(transport: asyncio.Transport) -> None:
        with open(tmp_path / "empty", "rb") as f:
            await sendfile(transport, f, 0, 0)
        transport.write(b"done")

    async def main() -> bytes:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        assert results == [None]
        return got

    assert run(main) == b"done"


def test_slow_reader_keeps_the_loop_responsive(run, data_file) -> None:  # type: ignore[no-untyped-def]
    """Buffered bytes go first, the loop serves another client meanwhile, nothing blocks."""
    f, data = data_file
    blob = os.urandom(MIB)  # sits in the transport's buffer: sendfile must wait for it
    finished: list[str] = []

    async def job(transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        transport.write(blob)
        await sendfile(transport, f, 0, len(data))

    async def main() -> None:
        server, port, results = await start(job)
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:
            last = time.monotonic()
            while not stop.is_set():
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        async def slow() -> bytes:
            got = await read_all(port, rcvbuf=32768, slow=0.002)
            finished.append("slow")
            return got

        async def fast() -> bytes:
            await asyncio.sleep(0.05)
            got = await read_all(port)
            finished.append("fast")
            return got

        tick = asyncio.ensure_future(ticker())
        slow_got, fast_got = await asyncio.gather(slow(), fast())
        stop.set()
        await tick
        server.close()
        assert slow_got == blob + data
        assert fast_got == blob + data
        assert finished == ["fast", "slow"]
        assert results == [None, None]
        assert max(gaps) < 0.25, max(gaps)

    run(main)


def test_peer_disconnect_mid_file_raises_and_leaks_nothing(run, data_file) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file

    async def job(transport: asyncio.Transport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        await sendfile(transport, f, 0, len(data))

    async def main() -> None:
        server, port, results = await start(job)
        # After listen(): libuv keeps a reserve fd on /dev/null per loop for EMFILE handling.
        before = fd_count()
        reader, writer = await connect(port, rcvbuf=32768)
        assert await reader.read(65536)
        # Close with unread data and linger 0: the kernel resets the connection.
        linger = b"\x01\x00\x00\x00\x00\x00\x00\x00"
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        writer.transport.abort()
        for _ in range(200):
            if results:
                break
            await asyncio.sleep(0.01)
        await settle()
        assert len(results) == 1 and isinstance(results[0], ConnectionError), results
        assert fd_count() == before
        server.close()

    run(main)


def test_transport_closed_while_waiting(run, data_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Our dup keeps the socket alive, so a close must be noticed some other way."""
    f, data = data_file
    monkeypatch.setattr(sendfile_mod, "_CLOSE_CHECK_INTERVAL", 0.05)
    transports: list[asyncio.Transport] = []

    async def job(transport: asyncio.Transport) -> None:
        transports.append(transport)
        await sendfile(transport, f, 0, len(data))

    async def main() -> None:
        server, port, results = await start(job)
        # After listen(): libuv keeps a reserve fd on /dev/null per loop for EMFILE handling.
        before = fd_count()
        _reader, writer = await connect(port)
        writer.transport.pause_reading()  # connected, never reads
        await asyncio.sleep(0.2)
        assert not results
        transports[0].close()
        for _ in range(100):
            if results:
                break
            await asyncio.sleep(0.01)
        assert len(results) == 1 and isinstance(results[0], ConnectionError), results
        writer.close()
        await settle()
        assert fd_count() == before
        server.close()

    run(main)


def test_cancel_while_waiting_cleans_up(run, data_file) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file
    tasks: list[asyncio.Task[None]] = []

    async def job(transport: asyncio.Transport) -> None:
        task = asyncio.ensure_future(sendfile(transport, f, 0, len(data)))
        tasks.append(task)
        await task

    async def main() -> None:
        server, port, results = await start(job)
        # After listen(): libuv keeps a reserve fd on /dev/null per loop for EMFILE handling.
        before = fd_count()
        _reader, writer = await connect(port)
        writer.transport.pause_reading()
        await asyncio.sleep(0.2)
        tasks[0].cancel()
        await settle()
        assert len(results) == 1 and isinstance(results[0], asyncio.CancelledError)
        writer.close()
        await settle()
        assert fd_count() == before
        server.close()

    run(main)


def test_client_taking_nothing_times_out_and_cleans_up(run, data_file) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file

    async def job(transport: asyncio.Transport) -> None:
        await sendfile(transport, f, 0, len(data), timeout=0.5)

    async def main() -> float:
        server, port, results = await start(job)
        before = fd_count()
        _reader, writer = await connect(port, rcvbuf=65536)
        writer.transport.pause_reading()  # the client stops reading at once
        started = time.monotonic()
        while not results and time.monotonic() - started < 5:
            await asyncio.sleep(0.02)
        waited = time.monotonic() - started
        assert len(results) == 1 and isinstance(results[0], TimeoutError), results
        writer.close()
        await settle()
        assert fd_count() == before
        server.close()
        return waited

    assert 0.4 <= run(main) < 3


def test_one_call_never_sends_more_than_the_chunk(run, data_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # nginx's sendfile_max_chunk: a fast reader must not hold the loop in one long call.
    f, data = data_file
    asked: list[int] = []
    real = os.sendfile
    monkeypatch.setattr(os, "sendfile", lambda *a: asked.append(a[3]) or real(*a))

    async def job(transport: asyncio.Transport) -> None:
        await sendfile(transport, f, 0, len(data))

    async def main() -> bytes:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        return got

    assert run(main) == data
    assert max(asked) <= 2 * MIB


def test_a_spare_descriptor_is_used_when_none_is_left(run, data_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The static layer reserves a descriptor before the head goes out; the socket's duplicate
    # takes its number, so nothing is needed when the process is out of descriptors (os.dup
    # failing with EMFILE here). One duplicate serves every region of a response.
    f, data = data_file

    def no_more(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    async def job(transport: asyncio.Transport) -> None:
        spare = os.open("/dev/null", os.O_RDONLY)
        monkeypatch.setattr(os, "dup", no_more)
        try:
            dup = duplicate_socket(transport, spare)
            assert dup == spare
            half = len(data) // 2
            await sendfile(transport, f, 0, half, sock_dup=dup)
            await sendfile(transport, f, half, len(data) - half, sock_dup=dup)
            os.fstat(dup)  # still open: the caller's to close
            os.close(dup)
        finally:
            monkeypatch.undo()

    async def main() -> bytes:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        assert results == [None], results
        return got

    assert run(main) == data


def test_an_unneeded_spare_descriptor_is_closed(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        spare = os.open("/dev/null", os.O_RDONLY)
        assert duplicate_socket(_FakeTransport(), spare) == -1  # type: ignore[arg-type]
        with pytest.raises(OSError):
            os.fstat(spare)

    run(main)


def test_region_beyond_the_end_of_the_file_is_an_oserror(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "short").write_bytes(b"x" * 1000)

    async def job(transport: asyncio.Transport) -> None:
        with open(tmp_path / "short", "rb") as f:
            await sendfile(transport, f, 0, 5000)  # it "shrank" after Content-Length was sent

    async def main() -> None:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        assert got == b"x" * 1000
        assert len(results) == 1 and isinstance(results[0], OSError)
        assert not isinstance(results[0], ConnectionError)

    run(main)


@pytest.mark.parametrize("mode", ["no-socket", "unsupported", "no-socket-with-drain"])
def test_fallback(run, data_file, monkeypatch, mode: str) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file
    peak: list[int] = [0]
    if mode == "unsupported":

        def refuse(*a: Any) -> int:
            raise OSError(errno.EINVAL, "Invalid argument")

        monkeypatch.setattr(os, "sendfile", refuse)
    else:
        monkeypatch.setattr(sendfile_mod, "_socket_fd", lambda transport: None)

    class Spy:
        """The transport, with the write buffer's size recorded after every write."""

        def __init__(self, transport: asyncio.Transport) -> None:
            self._transport = transport

        def write(self, chunk: bytes) -> None:
            self._transport.write(chunk)
            peak[0] = max(peak[0], self._transport.get_write_buffer_size())

        def __getattr__(self, name: str) -> Any:
            return getattr(self._transport, name)

    async def job(transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # so the buffer fills
        transport.write(b"HEAD")
        drain = None
        if mode == "no-socket-with-drain":

            async def drain() -> None:
                while transport.get_write_buffer_size() > 65536:
                    await asyncio.sleep(0.001)

        await sendfile(Spy(transport), f, 10, len(data) - 10, drain=drain)  # type: ignore[arg-type]

    async def main() -> bytes:
        server, port, results = await start(job)
        got = await read_all(port, rcvbuf=65536, slow=0.0005)
        server.close()
        assert results == [None]
        return got

    assert run(main) == b"HEAD" + data[10:]
    assert peak[0] <= 2 * sendfile_mod._CHUNK + 4  # flow control held the buffer down


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(d / "k.pem"),
            "-out",
            str(d / "c.pem"),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    client_ctx = ssl.create_default_context(cafile=str(d / "c.pem"))
    client_ctx.check_hostname = False
    return server_ctx, client_ctx


def test_tls_transport_uses_the_fallback(run, data_file, tls, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file
    server_ctx, client_ctx = tls
    calls: list[int] = []
    real = os.sendfile
    monkeypatch.setattr(os, "sendfile", lambda *a: calls.append(1) or real(*a))

    async def job(transport: asyncio.Transport) -> None:
        await sendfile(transport, f, 0, MIB)

    async def main() -> bytes:
        server, port, results = await start(job, server_ctx)
        got = await read_all(port, ssl=client_ctx, server_hostname="localhost")
        server.close()
        assert results == [None]
        return got

    assert run(main) == data[:MIB]
    assert calls == []  # sendfile would have bypassed TLS


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        asyncio.run(sendfile(None, None, -1, 5))  # type: ignore[arg-type]


class _FakeTransport:
    def __init__(self, **extra: Any) -> None:
        self.extra = extra

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


class _BadSock:
    def fileno(self) -> int:
        raise OSError(errno.EBADF, "closed")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"socket": socket.socket()}, "fd"),
        ({"socket": socket.socket(), "sslcontext": object()}, None),
        ({"socket": socket.socket(), "ssl_object": object()}, None),
        ({}, None),
        ({"socket": _BadSock()}, None),
    ],
)
def test_socket_fd(extra: dict[str, Any], expected: str | None) -> None:
    fd = sendfile_mod._socket_fd(_FakeTransport(**extra))  # type: ignore[arg-type]
    if expected is None:
        assert fd is None
    else:
        assert fd == extra["socket"].fileno()
    for value in extra.values():
        if isinstance(value, socket.socket):
            value.close()


def test_other_send_errors_propagate(run, data_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file
    sent: list[int] = []
    real = os.sendfile

    def flaky(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if sent:
            raise OSError(errno.EINVAL, "Invalid argument")  # after bytes went out: no fallback
        sent.append(1)
        return real(out_fd, in_fd, offset, min(count, 1000))

    monkeypatch.setattr(os, "sendfile", flaky)

    async def job(transport: asyncio.Transport) -> None:
        await sendfile(transport, f, 0, len(data))

    async def main() -> None:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        assert got == data[:1000]
        assert len(results) == 1 and isinstance(results[0], OSError)

    run(main)


def test_fallback_file_shrank(run, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "short").write_bytes(b"y" * 1000)
    monkeypatch.setattr(sendfile_mod, "_socket_fd", lambda transport: None)

    async def job(transport: asyncio.Transport) -> None:
        with open(tmp_path / "short", "rb") as f:
            await sendfile(transport, f, 0, 5000)

    async def main() -> None:
        server, port, results = await start(job)
        got = await read_all(port)
        server.close()
        assert got == b"y" * 1000
        assert len(results) == 1 and type(results[0]) is OSError

    run(main)


def test_closed_transport_is_refused_at_once(run, data_file) -> None:  # type: ignore[no-untyped-def]
    f, _ = data_file

    async def job(transport: asyncio.Transport) -> None:
        transport.close()
        await sendfile(transport, f, 0, 10)

    async def main() -> None:
        server, port, results = await start(job)
        await read_all(port)
        server.close()
        assert len(results) == 1 and isinstance(results[0], ConnectionError)

    run(main)


def test_a_fast_reader_does_not_starve_the_loop(run, data_file, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    f, data = data_file
    monkeypatch.setattr(sendfile_mod, "_YIELD_EVERY", 4000)
    ticks = [0]
    seen: list[int] = []
    real = os.sendfile

    def never_eagain(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        seen.append(ticks[0])  # as if the peer read everything at once
        return real(out_fd, in_fd, offset, min(count, 1000))

    monkeypatch.setattr(os, "sendfile", never_eagain)

    async def job(transport: asyncio.Transport) -> None:
        await sendfile(transport, f, 0, 20_000)

    async def main() -> bytes:
        async def ticker() -> None:
            while True:
                ticks[0] += 1
                await asyncio.sleep(0)

        tick = asyncio.ensure_future(ticker())
        server, port, results = await start(job)
        got = await read_all(port)
        tick.cancel()
        server.close()
        assert results == [None]
        return got

    assert run(main) == data[:20_000]
    assert len(seen) == 20
    runs = [seen[i : i + 4] for i in range(0, 20, 4)]
    assert all(len(set(r)) == 1 for r in runs)  # 4 x 1000 bytes, then a yield
    assert len(set(seen)) == 5
