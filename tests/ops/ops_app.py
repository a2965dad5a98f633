"""The app behind the operations tests: quick answers, sleeps, and a route that keeps memory."""

from __future__ import annotations

import os
import time

_kept: list[bytes] = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/sleep":
        time.sleep(float(environ["QUERY_STRING"] or "0.05"))
    elif path == "/grow":
        # Filled, not calloc'ed: the pages are resident at once, as a real leak's would be.
        _kept.append(b"x" * (int(environ["QUERY_STRING"] or "60") << 20))
    body = f"{path} {os.getpid()} {environ['REMOTE_ADDR']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
