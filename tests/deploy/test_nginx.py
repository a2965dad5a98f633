"""A real nginx (Debian's package) in front of frontdesk, as people deploy it today.

nginx listens on loopback and proxies to frontdesk over a unix socket (and over TCP for the
keep-alive check). The client connects from 127.0.0.2 so the address the app sees proves that
X-Forwarded-For from the trusted proxy was believed.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from tests.conftest import free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (python3 dev.py test installs it with apt-get)"
)

CONFIG = """
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
    upstream over_unix {{ server unix:{sock}; keepalive 8; }}
    upstream over_tcp {{ server 127.0.0.1:{tcp_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;   # as if nginx terminated TLS
        location /tcp/ {{ proxy_pass http://over_tcp/; }}
        location / {{ proxy_pass http://over_unix; }}
    }}
}}
"""


@pytest.fixture
def stack(server_factory, tmp_path):
    sock = tmp_path / "frontdesk.sock"
    app = server_factory("tests.apps:router", "--workers", "1", "--bind", f"unix:{sock}",
                         "--limit-request-body", "0")
    port = free_port()
    (tmp_path / "nginx.conf").write_text(
        CONFIG.format(tmp=tmp_path, sock=sock, tcp_port=app.port, port=port))
    nginx = subprocess.Popen([NGINX, "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or nginx.poll() is not None:
                nginx.kill()
                pytest.fail(f"nginx did not start: {nginx.stderr.read().decode()}")
            time.sleep(0.05)
    yield port
    nginx.send_signal(signal.SIGTERM)
    try:
        nginx.wait(5)
    except subprocess.TimeoutExpired:
        nginx.kill()
        nginx.wait(5)


def request(port: int, method: str, path: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=("127.0.0.2", 0))
    conn.request(method, path, body=body, headers={"Host": "shop.example"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_app_sees_client_address_scheme_and_host(stack):
    response, data = request(stack, "GET", "/environ/x")
    env = json.loads(data)
    assert response.status == 200
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert env["wsgi.url_scheme"] == "https"
    assert env["headers"]["HTTP_HOST"] == "shop.example"


def test_large_upload_and_download_pass_intact(stack):
    body = os.urandom(20 * 1024 * 1024)
    response, data = request(stack, "POST", "/environ", body)
    assert response.status == 200
    assert json.loads(data)["body_length"] == len(body)
    response, data = request(stack, "GET", f"/big?{50 * 1024 * 1024}")
    assert response.status == 200 and len(data) == 50 * 1024 * 1024
    response, data = request(stack, "GET", "/sendfile?3000000")
    expected = bytes(range(256)) * (3000000 // 256) + b"x" * (3000000 % 256)
    assert hashlib.sha256(data).digest() == hashlib.sha256(expected).digest()


def test_keep_alive_to_the_upstream_is_reused(stack):
    ports = set()
    for _ in range(10):
        response, data = request(stack, "GET", "/tcp/environ")
        assert response.status == 200
        env = json.loads(data)
        assert env["REMOTE_ADDR"] == "127.0.0.2"
        ports.add(env["REMOTE_PORT"])
    # nginx reuses its keep-alive upstream connections: far fewer ports than requests
    assert len(ports) <= 2
