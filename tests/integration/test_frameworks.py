"""A real Flask app and a real Django project behind frontdesk, driven by httpx and http.client.

Both sites answer the same URLs (`flask_site.py`, `django_site/`), so every test runs against
both; what is asserted is what a user of the framework sees: status, headers, body.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from .conftest import Server, parse_responses


@pytest.fixture
def client(site: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site.url, timeout=10) as client:
        yield client


def http_connection(site: Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(site.host, site.port, timeout=10)


# -- plain requests -------------------------------------------------------------------------------


def test_json_endpoint(site: Server, client: httpx.Client) -> None:
    response = client.get("/json", params=[("x", "1"), ("x", "2"), ("y", "zoë")])
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json() == {
        "framework": site.framework,
        "args": {"x": ["1", "2"], "y": ["zoë"]},
        "query_string": "x=1&x=2&y=zo%C3%AB",
        "path": "/json",
    }


def test_json_endpoint_with_http_client_keep_alive(site: Server) -> None:
    conn = http_connection(site)
    try:
        for i in range(5):  # one connection, five requests
            conn.request("GET", f"/json?i={i}")
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["args"] == {"i": [str(i)]}
    finally:
        conn.close()


def test_form_post_urlencoded(client: httpx.Client) -> None:
    form = {"name": "Zoë & Ünal", "tags": ["a", "b c"], "empty": "", "eq": "1+1=2"}
    response = client.post("/form", data=form)
    assert response.status_code == 200
    assert response.json() == {
        "form": {"name": ["Zoë & Ünal"], "tags": ["a", "b c"], "empty": [""], "eq": ["1+1=2"]}
    }


def test_multipart_file_upload(client: httpx.Client) -> None:
    data = os.urandom(3 * 1024 * 1024)
    response = client.post(
        "/upload",
        files={"file": ("random.bin", data, "application/octet-stream")},
        data={"note": "three mebibytes"},
    )
    assert response.status_code == 200
    assert response.json() == {
        "filename": "random.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "fields": {"note": "three mebibytes"},
    }


def test_framework_404(client: httpx.Client) -> None:
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert b"Not Found" in response.content


# -- streaming ------------------------------------------------------------------------------------


def test_streaming_response_arrives_incrementally(site: Server, client: httpx.Client) -> None:
    token = uuid.uuid4().hex
    with client.stream("GET", f"/stream/{token}") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        lines = response.iter_lines()
        # The app is now blocked until /release: this line can only come from a streamed body.
        assert next(lines) == f"first chunk of /stream/{token}"
        with httpx.Client(base_url=site.url, timeout=10) as other:
            assert other.post(f"/release/{token}").status_code == 200
        rest = list(lines)
    assert rest == [f"line {i}" for i in range(1000)] + ["end"]


def test_streaming_response_with_http_client(site: Server) -> None:
    token = uuid.uuid4().hex
    conn = http_connection(site)
    try:
        conn.request("GET", f"/stream/{token}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.readline() == f"first chunk of /stream/{token}\n".encode()
        release = http_connection(site)
        release.request("POST", f"/release/{token}")
        assert release.getresponse().status == 200
        release.close()
        rest = response.read()
        assert rest.endswith(b"line 999\nend\n")
        assert rest.count(b"\n") == 1001
        # The connection is still good after a streamed (chunked) body.
        conn.request("GET", "/json")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def _pieces(data: bytes) -> Iterator[bytes]:
    sizes = [1, 7, 4096, 65536, 100_000, 3]
    pos = i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        yield data[pos : pos + size]
        pos += size
        i += 1


def test_chunked_request_body_echoed_httpx(client: httpx.Client) -> None:
    data = os.urandom(1024 * 1024 + 17)
    response = client.post("/echo", content=_pieces(data),
                           headers={"Content-Type": "application/octet-stream"})
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 200
    assert response.headers["x-sha256"] == hashlib.sha256(data).hexdigest()
    assert response.content == data


def test_chunked_request_body_echoed_http_client(site: Server) -> None:
    data = b"".join(b"%06d," % i for i in range(50_000))
    conn = http_connection(site)
    try:
        conn.request("POST", "/echo", body=_pieces(data), encode_chunked=True,
                     headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == data
    finally:
        conn.close()


# -- HEAD, redirects, cookies ---------------------------------------------------------------------


def test_head_has_get_headers_and_no_body(site: Server, client: httpx.Client) -> None:
    get = client.get("/json")
    head = client.head("/json")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    # On the wire: nothing after the head, so a following request on the connection parses.
    conn = http_connection(site)
    try:
        conn.request("HEAD", "/json")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        conn.request("GET", "/json?after=head")
        response = conn.getresponse()
        assert json.loads(response.read())["args"] == {"after": ["head"]}
    finally:
        conn.close()


def test_head_on_the_wire(site: Server) -> None:
    data = site.raw(
        b"HEAD /json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        b"GET /json?second=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    head, get = parse_responses(data, methods=["HEAD", "GET"])
    assert head.status == 200 and head.body == b""
    assert get.status == 200 and json.loads(get.body)["args"] == {"second": ["1"]}


def test_redirect(client: httpx.Client) -> None:
    response = client.get("/redirect")
    assert response.status_code == 302
    assert httpx.URL(response.headers["location"]).raw_path == b"/json?via=redirect"
    followed = client.get("/redirect", follow_redirects=True)
    assert followed.status_code == 200
    assert [r.status_code for r in followed.history] == [302]
    assert followed.json()["args"] == {"via": ["redirect"]}


def test_cookies_set_and_sent_back(client: httpx.Client) -> None:
    response = client.get("/cookie/set")
    assert response.status_code == 200
    set_cookies = response.headers.get_list("set-cookie")
    assert len(set_cookies) == 2  # two Set-Cookie fields, never folded into one
    session = next(c for c in set_cookies if c.startswith("session="))
    assert "httponly" in session.lower()
    assert dict(client.cookies) == {"flavour": "oatmeal", "session": "s3cr3t"}
    assert client.get("/cookie/get").json() == {
        "cookies": {"flavour": "oatmeal", "session": "s3cr3t"}
    }


def test_several_cookie_headers_reach_the_app(site: Server) -> None:
    # Two Cookie fields (HTTP/2-to-1 proxies send them so) must both reach the framework.
    data = site.raw(
        b"GET /cookie/get HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: a=1\r\nCookie: b=2\r\n"
        b"Connection: close\r\n\r\n"
    )
    (reply,) = parse_responses(data)
    assert json.loads(reply.body) == {"cookies": {"a": "1", "b": "2"}}


# -- URLs -----------------------------------------------------------------------------------------


def test_unicode_path(client: httpx.Client) -> None:
    response = client.get("/café")  # httpx sends /caf%C3%A9
    assert response.status_code == 200
    assert response.text == "un café, s'il vous plaît\n"


def test_unicode_path_with_http_client(site: Server) -> None:
    conn = http_connection(site)
    try:
        conn.request("GET", "/caf%C3%A9")
        response = conn.getresponse()
        assert response.status == 200
        assert response.read().decode() == "un café, s'il vous plaît\n"
    finally:
        conn.close()


def test_query_string_with_encoded_slash(client: httpx.Client) -> None:
    response = client.get(httpx.URL("/json", query=b"path=a%2Fb%2Fc&next=%2Fhome%3Fx%3D1"))
    assert response.status_code == 200
    body = response.json()
    assert body["args"] == {"path": ["a/b/c"], "next": ["/home?x=1"]}
    assert body["query_string"] == "path=a%2Fb%2Fc&next=%2Fhome%3Fx%3D1"


# -- Django only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("site", ["django"], indirect=True)
def test_django_csrf_round_trip(site: Server, client: httpx.Client) -> None:
    refused = client.post("/csrf/protected", data={"item": "x"})
    assert refused.status_code == 403
    token = client.get("/csrf/token").json()["token"]
    assert "csrftoken" in client.cookies  # set by the middleware, sent back by the client
    accepted = client.post("/csrf/protected", data={"item": "tea"},
                           headers={"X-CSRFToken": token})
    assert accepted.status_code == 200
    assert accepted.json() == {"accepted": "tea"}


@pytest.mark.parametrize("site", ["django"], indirect=True)
def test_disallowed_host_is_a_django_400(site: Server) -> None:
    data = site.raw(b"GET /json HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    (reply,) = parse_responses(data)
    assert reply.status == 400


# -- what real clients put on the wire ------------------------------------------------------------


def test_raw_non_ascii_bytes_in_the_target_are_refused_clearly(site: Server) -> None:
    """A decision, not an accident: RFC 9112 §3.2 makes the request-target an (ASCII) URI, and
    llhttp refuses raw bytes above 0x7f in it. Browsers percent-encode; curl percent-encodes the
    path but sends a query's bytes raw, so `curl 'http://host/json?q=café'` gets a clear 400
    (use `--data-urlencode` with `-G`, or percent-encode). See docs/architecture.md."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([curl, "-sS", "-w", "\\n%{http_code}", f"{site.url}/json?q=café"],
                          capture_output=True, timeout=10)
    assert done.stdout.rpartition(b"\n")[2] == b"400", done.stdout
    encoded = subprocess.run([curl, "-sS", "-G", "--data-urlencode", "q=café", f"{site.url}/json"],
                             capture_output=True, timeout=10)
    assert json.loads(encoded.stdout)["args"] == {"q": ["café"]}
