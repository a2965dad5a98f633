"""The worker's acceptor: many connections per wake-up, a pause when descriptors run out."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from frontdesk.worker import acceptor as acceptor_module
from frontdesk.worker.acceptor import Acceptor

uvloop = pytest.importorskip("uvloop")


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    loop = asyncio.new_event_loop() if request.param == "asyncio" else uvloop.new_event_loop()
    yield loop
    loop.close()


class Counting(asyncio.Protocol):
    made: list[Counting] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made.append(self)
        self.transport = transport


def listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


def test_a_burst_is_accepted_in_few_loop_iterations(loop) -> None:  # type: ignore[no-untyped-def]
    # libuv alone takes one connection per loop iteration; 300 waiting connections must not
    # need 300 iterations (BATCH per wake-up: 3 here).
    Counting.made = []
    sock = listening()
    clients = [socket.create_connection(sock.getsockname()) for _ in range(300)]
    acceptor = Acceptor(loop, sock, Counting)
    acceptor.start()

    async def iterations() -> int:
        for n in range(1, 50):
            await asyncio.sleep(0)
            if len(Counting.made) == 300:
                return n
        return -1

    n = loop.run_until_complete(iterations())
    assert 0 < n <= 12, (n, len(Counting.made))
    assert all(proto.transport.get_extra_info("peername") for proto in Counting.made)
    acceptor.close()
    assert sock.fileno() == -1  # this process's copy is closed: new connections are refused
    for proto in Counting.made:
        proto.transport.close()
    for client in clients:
        client.close()
    loop.run_until_complete(asyncio.sleep(0))


def test_out_of_descriptors_pauses_then_accepts_again(loop, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    Counting.made = []
    monkeypatch.setattr(acceptor_module, "PAUSE_ON_EXHAUSTION", 0.2)
    sock = listening()
    failing = [True]

    class Exhausted:
        """The listening socket, while the process has no descriptor left for a new one."""

        family = sock.family
        fileno, setblocking, close = sock.fileno, sock.setblocking, sock.close

        def accept(self):  # type: ignore[no-untyped-def]
            if failing[0]:
                raise OSError(errno.EMFILE, "Too many open files")
            return sock.accept()

    acceptor = Acceptor(loop, Exhausted(), Counting)  # type: ignore[arg-type]
    acceptor.start()
    client = socket.create_connection(sock.getsockname())

    async def scenario() -> None:
        for _ in range(20):  # it must not spin on the readable socket meanwhile
            await asyncio.sleep(0)
        assert Counting.made == [] and not acceptor._accepting
        failing[0] = False
        await asyncio.sleep(0.4)
        assert len(Counting.made) == 1

    loop.run_until_complete(scenario())
    assert "cannot accept connections: Too many open files" in caplog.text
    Counting.made[0].transport.close()
    client.close()
    acceptor.close()
    loop.run_until_complete(asyncio.sleep(0))
