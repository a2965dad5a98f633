"""The bridge's edge cases through a real server process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time

from tests.conftest import ROOT, read_until_close
from tests.protocol.test_wire import normal

NEXT = b"GET /errors HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_endless_body_behind_content_length_ends_and_the_connection_goes_on(server_factory):
    server = server_factory("tests.wsgi.edge_apps:app", "--workers", "1", "--threads", "1")
    out = normal(server.raw(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n" + NEXT))
    first, _, rest = out.partition(b"0123456789")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"Content-Length: 10\r\n" in first
    # the only app thread was released: the pipelined request is answered next
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n") and rest.endswith(b"\r\n\r\nok")


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_wsgi_errors_and_flask_logger_reach_the_error_logfile(tmp_path):
    log = tmp_path / "error.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRONTDESK_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdesk", "tests.wsgi.edge_apps:app", "--bind", "127.0.0.1:0",
         "--workers", "1", "--error-logfile", str(log)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: log.exists() and "ready, 1 worker(s) serving" in log.read_text(), 15)
        port = int(re.search(r"Listening at: http://127.0.0.1:(\d+)", log.read_text())[1])
        for target in (b"/errors", b"/flask-log"):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
                assert read_until_close(sock).endswith(b"\r\n\r\nok")
        wait_for(lambda: "logged by the Flask app" in log.read_text(), 5)
        lines = log.read_text().splitlines()
        assert any(line.endswith("[ERROR] written to wsgi.errors") for line in lines)
        assert any(line.endswith("[ERROR] in two parts") for line in lines)
        assert any(line.endswith("[ERROR] unterminated") for line in lines)
        assert any("[ERROR]" in line and "logged by the Flask app" in line for line in lines)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "wsgi.errors" not in stderr and "Flask app" not in stderr  # not on stderr


def test_an_app_configuring_logging_at_import_does_not_silence_the_server(server_factory):
    # Flask's documented dictConfig disables the loggers that exist at import time, the
    # server's among them; they are taken back once the app is loaded.
    server = server_factory("tests.wsgi.dictconfig_app:app", "--workers", "1")
    for target in (b"/", b"/raise"):
        with socket.create_connection((server.host, server.port), timeout=5) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % target)
            read_until_close(sock)
    wait_for(lambda: "RuntimeError: boom from the app" in server.log, 5)
    assert "[ERROR] a line the app wrote to wsgi.errors" in server.log  # in the server's format
    assert "[ERROR] GET /raise: the app raised" in server.log

