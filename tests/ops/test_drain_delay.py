"""--drain-delay: on TERM, readiness fails at once but everything else is served for the delay;
then the usual graceful stop, in which keep-alive clients are told `Connection: close` instead of
racing a close. Real master, real workers, real clients on loopback."""

from __future__ import annotations

import signal
import socket
import threading
import time

from tests.ops.conftest import APP, alive, read_response, request, serving, wait_for


def readiness(server) -> int:
    return request(server.host, server.port, "/readyz")[0]


class KeepAliveClient(threading.Thread):
    """Requests /hello back to back on one connection until told `Connection: close`."""

    def __init__(self, server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.ok = 0
        self.errors: list[str] = []
        self.closed_at = 0.0  # when the server said Connection: close (and then closed)
        self.start()

    def run(self) -> None:
        try:
            with socket.create_connection((self.server.host, self.server.port), timeout=10) as sock:
                while True:
                    sock.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
                    head, _ = read_response(sock)
                    if not head:
                        self.errors.append("closed without answering a request")
                        return
                    if not head.startswith(b"HTTP/1.1 200 "):
                        self.errors.append(head.split(b"\r\n")[0].decode())
                        return
                    self.ok += 1
                    if b"\r\nconnection: close" in head.lower():
                        self.closed_at = time.monotonic()
                        if sock.recv(1) != b"":
                            self.errors.append("bytes after Connection: close")
                        return
        except OSError as exc:
            self.errors.append(repr(exc))


class NewConnectionClient(threading.Thread):
    """One request per connection, until `stop` (the load balancer has noticed)."""

    def __init__(self, server, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, stop
        self.ok = 0
        self.errors: list[str] = []
        self.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, _ = request(self.server.host, self.server.port, "/hello")
            except OSError as exc:
                self.errors.append(repr(exc))
                return
            if status != 200:
                self.errors.append(f"status {status}")
                return
            self.ok += 1


def test_drain_delay_serves_with_readiness_failing_then_drains_cleanly(servers, tmp_path):
    notify_path = str(tmp_path / "notify")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(0.1)
    notes: list[str] = []

    def collect_notes() -> None:
        while notify.fileno() >= 0:
            try:
                notes.append(notify.recv(4096).decode())
            except (TimeoutError, OSError):
                continue

    threading.Thread(target=collect_notes, daemon=True).start()
    server = servers(APP, "--workers", "2", "--threads", "4", "--drain-delay", "2",
                     "--graceful-timeout", "5", "--ready-path", "/readyz", "--keep-alive", "30",
                     env={"NOTIFY_SOCKET": notify_path})
    workers = serving(server, 2)
    assert readiness(server) == 200
    idle = socket.create_connection((server.host, server.port), timeout=10)
    idle.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    assert read_response(idle)[0].startswith(b"HTTP/1.1 200 ")  # then it stays idle
    stop_new = threading.Event()
    fresh = [NewConnectionClient(server, stop_new) for _ in range(2)]
    kept = [KeepAliveClient(server) for _ in range(2)]
    wait_for(lambda: all(c.ok > 5 for c in fresh + kept), 5, "the clients to get going")

    term_at = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: any("STOPPING=1" in note for note in notes), 1, "STOPPING=1 to systemd")
    wait_for(lambda: readiness(server) == 503, 1, "readiness to fail")
    assert request(server.host, server.port, "/readyz")[1] == b"draining\n"
    served = sum(c.ok for c in fresh + kept)
    slow: list[tuple[int, bytes]] = []
    in_flight = threading.Thread(
        target=lambda: slow.append(request(server.host, server.port, "/sleep?1.2")))
    time.sleep(max(0.0, term_at + 1.3 - time.monotonic()))
    in_flight.start()
    time.sleep(max(0.0, term_at + 1.5 - time.monotonic()))
    # Still serving, new connections and keep-alive alike; nobody was signalled or killed.
    assert sum(c.ok for c in fresh + kept) > served + 20
    assert all(alive(pid) for pid in workers)
    assert "Drain delay over" not in server.log and all(c.closed_at == 0 for c in kept)
    stop_new.set()  # the balancer took this instance out of rotation
    for client in fresh:
        client.join(5)

    wait_for(lambda: "Drain delay over" in server.log, 2, "the end of the drain delay")
    assert time.monotonic() - term_at >= 1.9
    for client in kept:
        client.join(5)
        assert client.closed_at >= term_at + 1.9  # told Connection: close once draining
    assert idle.recv(1) == b""  # the idle keep-alive connection: closed cleanly, no reset
    idle.close()
    in_flight.join(5)
    assert slow and slow[0][0] == 200  # the request in flight when the drain began finished

    def refused() -> bool:
        try:
            socket.create_connection((server.host, server.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, 2, "new connections to be refused once draining")
    assert server.proc.wait(10) == 0
    errors = [e for c in fresh + kept for e in c.errors]
    assert errors == []
    log = server.log
    assert "Draining: readiness probes answer 503; serving 2 s more (--drain-delay)" in log
    assert "SIGKILL" not in log
    notify.close()


def test_without_a_drain_delay_term_stops_at_once(servers):
    server = servers(APP, "--workers", "1", "--ready-path", "/readyz")
    serving(server, 1)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0
    assert time.monotonic() - started < 1.5
    assert "Draining:" not in server.log
