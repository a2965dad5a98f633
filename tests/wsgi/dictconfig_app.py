"""An app that sets up logging at import, as Flask's documentation shows (dictConfig with the
default disable_existing_loggers=True), then writes to wsgi.errors and fails once."""

from logging.config import dictConfig

dictConfig({
    "version": 1,
    "handlers": {"wsgi": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["wsgi"]},
})


def app(environ, start_response):
    if environ["PATH_INFO"] == "/raise":
        raise RuntimeError("boom from the app")
    environ["wsgi.errors"].write("a line the app wrote to wsgi.errors\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
