"""Apps for the bridge's edge cases on a real server (unvalidated: their behaviour is the point)."""

from __future__ import annotations

import itertools

from flask import Flask


def _endless(environ, start_response):
    """Declares 10 bytes and would yield forever: the server must stop iterating."""
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    return itertools.repeat(b"0123456789")


def _errors(environ, start_response):
    stream = environ["wsgi.errors"]
    stream.write("written to wsgi.errors\n")
    stream.writelines(["in two ", "parts\n", "unterminated"])
    stream.flush()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


flask_app = Flask(__name__)


@flask_app.route("/flask-log")
def _flask_log():
    flask_app.logger.error("logged by the Flask app")
    return "ok"


_routes = {"/endless": _endless, "/errors": _errors}


def app(environ, start_response):
    route = _routes.get(environ["PATH_INFO"])
    if route is None:
        return flask_app(environ, start_response)
    return route(environ, start_response)
