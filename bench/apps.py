"""Apps served by every server in the benchmark (see docs/benchmarks.md).

All servers import the *same* objects from this file:

* ``hello``     -- plain WSGI hello world (13-byte body, Content-Length set).
* ``flask_app`` -- Flask app: ``/json`` (jsonify), ``/page`` (Jinja template),
  ``/static/<name>`` (``send_from_directory`` on ``$BENCH_STATIC_DIR``).
* ``transfer``  -- plain WSGI app for the large-body scenarios:
  ``POST /upload`` reads and counts the body in 64 KiB chunks,
  ``GET /download?bytes=N`` streams N bytes in 64 KiB chunks, each a new bytes object
  (so a server that buffers the response holds real memory, seen in its peak RSS).

This module is not a test module (pytest never collects ``bench/``).
"""

from __future__ import annotations

import os

HELLO_BODY = b"Hello, World!"
_HELLO_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Content-Length", str(len(HELLO_BODY))),
]


def hello(environ, start_response):
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO_BODY]


# --------------------------------------------------------------------------
# Large bodies (upload-100m / download-100m)

_CHUNK = 64 * 1024
_BLOCK = memoryview(bytes(range(256)) * (_CHUNK // 256))


def transfer(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/upload":
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        total = 0
        while remaining > 0:
            data = stream.read(min(_CHUNK, remaining))
            if not data:
                break
            total += len(data)
            remaining -= len(data)
        body = str(total).encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]
    if path == "/download":
        size = 0
        for part in environ.get("QUERY_STRING", "").split("&"):
            if part.startswith("bytes="):
                size = int(part[len("bytes="):])
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/octet-stream"),
                ("Content-Length", str(size)),
            ],
        )
        return _stream(size)
    return hello(environ, start_response)


def _stream(size):
    # bytes(memoryview) copies: yielding one shared block would let a server buffer the whole
    # response as references to it, and its memory use would not show.
    full, rest = divmod(size, _CHUNK)
    for _ in range(full):
        yield bytes(_BLOCK)
    if rest:
        yield bytes(_BLOCK[:rest])


# --------------------------------------------------------------------------
# Flask

try:
    import flask
except ImportError:  # the frontdesk dev venv may lack Flask; peers venv has it
    flask = None

if flask is not None:
    _HERE = os.path.dirname(os.path.abspath(__file__))
    STATIC_DIR = os.environ.get("BENCH_STATIC_DIR", os.path.join(_HERE, "static"))

    flask_app = flask.Flask(
        __name__,
        static_folder=None,  # /static is the explicit send_from_directory route
        template_folder=os.path.join(_HERE, "templates"),
    )

    _ITEMS = [
        {"id": i, "name": f"Item {i}", "price": 1.25 * i, "tags": ["a", "b", "c"][: i % 3 + 1]}
        for i in range(20)
    ]

    @flask_app.route("/json")
    def json_endpoint():
        return flask.jsonify(message="Hello, World!")

    @flask_app.route("/page")
    def page():
        return flask.render_template("page.html", title="frontdesk bench", items=_ITEMS)

    @flask_app.route("/static/<path:name>")
    def static_file(name):
        return flask.send_from_directory(STATIC_DIR, name)
