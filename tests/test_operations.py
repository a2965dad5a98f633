"""Health and readiness probes answered by the server; overload shedding with 503 + Retry-After."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time

import httpx

from tests.conftest import read_until_close


def test_probes_answer_from_the_loop_while_every_thread_is_busy(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--threads", "1",
                            "--health-path", "/healthz", "--ready-path", "/readyz")
    busy = threading.Thread(target=httpx.get, args=(server.url + "/sleep?1.5",),
                            kwargs={"timeout": 10})
    busy.start()
    time.sleep(0.2)  # the only app thread is now asleep
    with httpx.Client(base_url=server.url) as client:
        for path in ("/healthz", "/readyz", "/healthz?verbose=1"):
            started = time.monotonic()
            response = client.get(path)
            assert response.status_code == 200 and response.text == "ok\n"
            assert time.monotonic() - started < 0.2
            assert response.headers["cache-control"] == "no-store"
        assert client.head("/healthz").content == b""
        assert client.post("/healthz").status_code == 200  # not a probe: the app answers
    busy.join()


def test_probe_paths_are_off_by_default(apps_server):
    response = httpx.get(apps_server.url + "/healthz")
    assert response.json()["PATH_INFO"] == "/healthz"  # the app's route, not shadowed


def test_readiness_turns_503_while_draining(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--ready-path", "/readyz")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        out = read_until_close(sock, timeout=10)
    assert b"slept 1" in out
    assert b"HTTP/1.1 503 Service Unavailable\r\n" in out and out.endswith(b"draining\n")


def test_backlog_limit_sheds_with_503_and_retry_after(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--threads", "1",
                            "--backlog-limit", "2")
    results: list[int] = []

    def get(path: str) -> None:
        results.append(httpx.get(server.url + path, timeout=10).status_code)

    threads = [threading.Thread(target=get, args=("/sleep?1",))]
    threads[0].start()
    time.sleep(0.2)  # the thread is busy; two more may queue
    threads += [threading.Thread(target=get, args=("/sleep?0",)) for _ in range(2)]
    for thread in threads[1:]:
        thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    shed = httpx.get(server.url + "/hello", timeout=10)
    assert shed.status_code == 503 and shed.headers["retry-after"] == "1"
    assert time.monotonic() - started < 0.3  # at once, not after the queue drained
    for thread in threads:
        thread.join()
    assert sorted(results) == [200, 200, 200]  # everything accepted still completed


def test_max_queue_time_sheds_requests_that_waited_too_long(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--threads", "1",
                            "--max-queue-time", "0.3")
    slow = threading.Thread(target=httpx.get, args=(server.url + "/sleep?3",),
                            kwargs={"timeout": 10})
    slow.start()
    time.sleep(0.2)
    started = time.monotonic()
    waited = httpx.get(server.url + "/hello", timeout=10)
    assert waited.status_code == 503 and "retry-after" in waited.headers
    # At once (the loop sheds it), not when the busy thread frees up 2.8 s later.
    assert time.monotonic() - started < 1.0
    slow.join()
    assert httpx.get(server.url + "/hello").status_code == 200


def test_backlog_limit_counts_only_requests_no_idle_thread_will_take(server_factory):
    # 8 idle threads, a burst of 8 requests read in the same loop iteration: none must wait, so
    # none is shed, however small the backlog limit.
    server = server_factory("tests.apps:router", "--workers", "1", "--threads", "8",
                            "--backlog-limit", "2")
    socks = [socket.create_connection((server.host, server.port)) for _ in range(8)]
    for sock in socks:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answers = [read_until_close(sock) for sock in socks]
    for sock in socks:
        sock.close()
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 8


def test_shed_requests_are_logged_once_a_second_not_each(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1", "--threads", "1",
                            "--backlog-limit", "1")
    busy = [threading.Thread(target=httpx.get, args=(server.url + "/sleep?1.5",),
                             kwargs={"timeout": 10}) for _ in range(2)]
    for thread in busy:
        thread.start()
        time.sleep(0.1)  # one runs, one waits: the backlog is full
    with httpx.Client(base_url=server.url) as client:
        statuses = [client.get("/hello").status_code for _ in range(30)]
    for thread in busy:
        thread.join()
    time.sleep(1.2)  # the tick reports
    assert statuses == [503] * 30
    counts = [int(m) for m in re.findall(r"answered 503 to (\d+) request\(s\)", server.log)]
    assert 1 <= len(counts) <= 3 and sum(counts) == 30, server.log


def test_a_response_made_after_the_drain_began_says_connection_close(server_factory):
    # The app is still running when TERM arrives: its response closes the connection instead
    # of promising keep-alive the draining worker will not keep.
    server = server_factory("tests.apps:router", "--workers", "1")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        out = read_until_close(sock, timeout=10)
    head = out.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"HTTP/1.1 200 OK") and b"\r\nConnection: close" in head


def test_requests_pipelined_before_the_drain_are_all_answered(server_factory):
    server = server_factory("tests.apps:router", "--workers", "1")
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(b"GET /sleep?1 HTTP/1.1\r\nHost: x\r\n\r\n"
                     + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        out = read_until_close(sock, timeout=10)
    heads = [part.split(b"\r\n\r\n", 1)[0] for part in out.split(b"HTTP/1.1 ")[1:]]
    assert len(heads) == 3 and all(head.startswith(b"200 OK") for head in heads), out
    assert [b"Connection: close" in head for head in heads] == [False, False, True]
