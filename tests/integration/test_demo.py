"""The demo in examples/flaskapp, started with its Procfile's command, fetched like a browser would.

(The Procfile under honcho and a real headless browser: tests/deploy/test_procfile.py and
test_browser.py, which rely on the page's h1, header img and #clock.)"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import WORKERS, Server, start_server

DEMO = Path(__file__).resolve().parents[2] / "examples" / "flaskapp"
ASSETS = {
    "/static/style.css": "text/css",
    "/static/app.js": "text/javascript",
    "/static/logo.svg": "image/svg+xml",
}
NO_STATIC = ("depends on frontdesk's --static mount, which this build does not accept yet "
             "(the Procfile's command failed to start with it)")


def procfile_command() -> list[str]:
    """The Procfile's `web:` command as argv."""
    lines = [line for line in (DEMO / "Procfile").read_text().splitlines() if line.strip()]
    (web,) = [line for line in lines if line.startswith("web:")]
    return shlex.split(web.removeprefix("web:"))


@pytest.fixture(scope="module")
def demo() -> Iterator[Server]:
    argv = procfile_command()
    assert argv[0] == "frontdesk"
    app, *options = argv[1:]
    try:
        server = start_server(app, *options, *WORKERS, cwd=DEMO)
        server.static = True  # type: ignore[attr-defined]
    except RuntimeError as exc:
        stderr = str(exc).partition("\n")[2]  # after the command line, which names --static
        if "static" not in stderr:
            raise
        # Only the static mount is missing: serve the rest of the demo without it.
        without = [o for i, o in enumerate(options)
                   if o != "--static" and (i == 0 or options[i - 1] != "--static")]
        server = start_server(app, *without, *WORKERS, cwd=DEMO)
        server.static = False  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def client(demo: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo.url, timeout=10) as client:
        yield client


def test_procfile_runs_frontdesk_with_the_static_mount() -> None:
    assert procfile_command() == ["frontdesk", "app:app", "--static", "/static=static"]


def test_page_renders_and_links_its_assets(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    links = set(re.findall(r'(?:href|src)="(/static/[^"]+)"', response.text))
    assert links == set(ASSETS)
    assert "<h1>frontdesk demo</h1>" in response.text


def test_json_time(client: httpx.Client) -> None:
    response = client.get("/api/time")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    data = response.json()
    utc = datetime.datetime.fromisoformat(data["utc"])
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - utc).total_seconds()) < 60
    assert data["unix"] == int(utc.timestamp())


def test_guestbook_form_post_redirect_get(client: httpx.Client) -> None:
    response = client.post("/guestbook", data={"name": "Zoë", "message": "<b>hi</b> & bye"})
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    page = client.get("/").text
    assert "<strong>Zoë</strong>: &lt;b&gt;hi&lt;/b&gt; &amp; bye" in page  # escaped by Jinja
    refused = client.post("/guestbook", data={"name": "x", "message": "  "})
    assert refused.status_code == 400
    assert "Please write a message." in refused.text


@pytest.mark.parametrize(("path", "content_type"), ASSETS.items())
def test_static_assets(demo: Server, client: httpx.Client, path: str, content_type: str) -> None:
    if not demo.static:  # type: ignore[attr-defined]
        pytest.skip(NO_STATIC)
    response = client.get(path)
    assert response.status_code == 200
    assert response.content == (DEMO / path.lstrip("/")).read_bytes()
    assert response.headers["content-type"].split(";")[0] == content_type
    # What makes a static server worth having: revalidation costs a 304 and no body.
    etag = response.headers["etag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    head = client.head(path)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(response.content))


def test_static_requests_do_not_reach_flask(demo: Server, client: httpx.Client) -> None:
    if not demo.static:  # type: ignore[attr-defined]
        pytest.skip(NO_STATIC)
    # A missing file under the mount is frontdesk's plain 404, not Flask's HTML error page,
    # and an asset carries the mount's caching policy, not Flask's `no-cache`.
    missing = client.get("/static/missing.css")
    assert missing.status_code == 404
    assert not missing.headers["content-type"].startswith("text/html")
    assert "no-cache" not in client.get("/static/style.css").headers.get("cache-control", "")

