"""The test router of `tests/apps.py`, plus a recorder of the request bodies the app was given
(so a test can prove a truncated upload never reached the app)."""

from __future__ import annotations

import json
import threading

from tests.apps import router

seen: list[list[int]] = []  # [declared CONTENT_LENGTH, bytes read] per call of /record
_lock = threading.Lock()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/record":
        declared = int(environ.get("CONTENT_LENGTH") or 0)
        stream = environ["wsgi.input"]
        got = 0
        while True:
            block = stream.read(65536)
            if not block:
                break
            got += len(block)
        with _lock:
            seen.append([declared, got])
        body = json.dumps({"declared": declared, "read": got}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/recorded":
        with _lock:
            body = json.dumps(seen).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return router(environ, start_response)
