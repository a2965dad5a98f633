"""WSGI apps the tests serve. Well-behaved ones run inside `wsgiref.validate.validator`, with its
warnings turned into errors, so any PEP 3333 slip by the server fails a test with a 500."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
import warnings
from wsgiref.validate import WSGIWarning, validator

warnings.simplefilter("error", WSGIWarning)


def _scratch(name: str) -> str:
    """A path for a file an app writes: in the test session's temporary directory, which
    tests/conftest.py passes down in TESTS_APPS_TMPDIR and removes at the end."""
    return os.path.join(os.environ.get("TESTS_APPS_TMPDIR") or tempfile.gettempdir(), name)


def _hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]


hello = validator(_hello)

_ENVIRON_KEYS = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
    "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
    "REMOTE_PORT", "RAW_URI", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess",
    "wsgi.run_once", "wsgi.input_terminated", "frontdesk.request_id",
)


def _environ(environ, start_response):
    """JSON of the environ (strings and flags), headers and body digest."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    data = {k: environ[k] for k in _ENVIRON_KEYS if k in environ}
    data["headers"] = {k: v for k, v in environ.items() if k.startswith("HTTP_")}
    data["version"] = list(environ["wsgi.version"])
    data["body_length"] = len(body)
    data["body_head"] = body[:64].decode("latin-1")
    data["input_type"] = type(environ["wsgi.input"]).__name__
    out = json.dumps(data).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


def _stream(environ, start_response):
    count = int(environ.get("QUERY_STRING") or 3)
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        for i in range(count):
            yield b"chunk %d\n" % i

    return chunks()


def _echo_lines(environ, start_response):
    """Reads wsgi.input with readline/iteration (validator checks the calls)."""
    stream = environ["wsgi.input"]
    lines = list(stream)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%d lines\n" % len(lines)] + lines


def _write_callable(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"from write; ")
    return [b"from iterable"]


def _empty(environ, start_response):
    start_response("204 No Content", [])
    return []


def _file(environ, start_response):
    size = int(environ.get("QUERY_STRING") or 100000)
    path = _scratch(f"frontdesk-test-file-{size}")
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(bytes(range(256)) * (size // 256) + b"x" * (size % 256))
        os.replace(path + ".tmp", path)
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return environ["wsgi.file_wrapper"](open(path, "rb"))


def _big(environ, start_response):
    size = int(environ.get("QUERY_STRING") or 1 << 20)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])

    def body():
        # A new object per chunk (not one block yielded again and again): a server that buffers
        # the response then holds real memory, so a test of its memory bound can fail.
        sent = 0
        while sent < size:
            part = b"x" * min(65536, size - sent)
            sent += len(part)
            yield part

    return body()


def _sleep(environ, start_response):
    seconds = float(environ.get("QUERY_STRING") or 1)
    time.sleep(seconds)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"slept %s\n" % str(seconds).encode()]


def _exc_info(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    try:
        raise RuntimeError("changed my mind")
    except RuntimeError:
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                       sys.exc_info())
    return [b"replaced"]


validated = {
    "/hello": _hello,
    "/environ": _environ,
    "/stream": _stream,
    "/lines": _echo_lines,
    "/write": _write_callable,
    "/empty": _empty,
    "/file": _file,
    "/big": _big,
    "/sleep": _sleep,
    "/exc_info": _exc_info,
}
validated = {path: validator(app) for path, app in validated.items()}

# -- misbehaving apps (not validated: their faults are the point) ---------------------------------

closed_log: list[str] = []
_closed_lock = threading.Lock()


class _TracksClose:
    def __init__(self, name, chunks, fail_at=None):
        self.name, self.chunks, self.fail_at = name, chunks, fail_at

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("iterator failed")
            yield chunk

    def close(self):
        with _closed_lock:
            closed_log.append(self.name)


def _raise(environ, start_response):
    raise RuntimeError("app failed before start_response")


def _raise_in_iter(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _TracksClose("raise_in_iter", [b"first\n", b"second\n"], fail_at=1)


def _raise_in_iter_first(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _TracksClose("raise_in_iter_first", [b"first\n"], fail_at=0)


def _raise_in_close(environ, start_response):
    class Body:
        def __iter__(self):
            yield b"body ok"

        def close(self):
            raise RuntimeError("close failed")

    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
    return Body()


def _closes_counted(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return _TracksClose(environ.get("QUERY_STRING") or "counted", [b"a", b"b"])


def _close_log(environ, start_response):
    with _closed_lock:
        out = json.dumps(closed_log).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [out]


def _slow_stream(environ, start_response):
    """Streams slowly; records close() so tests can see it is called when the client leaves."""
    start_response("200 OK", [("Content-Type", "text/plain")])

    def chunks():
        for i in range(50):
            time.sleep(0.05)
            yield b"tick %d\n" % i

    return _TracksClose(environ.get("QUERY_STRING") or "slow_stream", chunks())


def _twice(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"never"]


def _crlf_header(environ, start_response):
    start_response("200 OK", [("X-Evil", "a\r\nSet-Cookie: pwned=1")])
    return [b"never"]


def _non_latin1_header(environ, start_response):
    start_response("200 OK", [("X-Name", "snow ☃ man")])
    return [b"never"]


def _bad_status(environ, start_response):
    start_response("OK", [])
    return [b"never"]


def _str_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return ["text, not bytes"]


def _not_iterable(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return 42


def _no_start_response(environ, start_response):
    return [b"body without status"]


def _short_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
    return iter([b"only ten b"])


def _long_body(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return iter([b"0123456789"])


def _hop_by_hop(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Connection", "close"),
                              ("Content-Length", "2")])
    return [b"ok"]


def _list_cl_mismatch(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"0123456789"]


def _write_then_list(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"from write; ")
    return [b"from list"]


def _interim(environ, start_response):
    start_response("103 Early Hints", [("Link", "</a.css>; rel=preload")])
    return [b""]


def _sys_exit(environ, start_response):
    raise SystemExit(1)


def _backend_refused(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        raise ConnectionRefusedError("backend down")
        yield b""  # pragma: no cover

    return body()


def _empty_then_raise(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        yield b""
        raise RuntimeError("failed after an empty chunk")

    return body()


def _no_content_with_length(environ, start_response):
    start_response("204 No Content", [("Content-Length", "0")])
    return []


def _file_cl_mismatch(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    path = _scratch("frontdesk-test-file-mismatch")
    with open(path, "wb") as f:
        f.write(b"A" * 100)
    return environ["wsgi.file_wrapper"](open(path, "rb"))


raw_apps = {
    "/list_cl_mismatch": _list_cl_mismatch,
    "/write_then_list": _write_then_list,
    "/interim": _interim,
    "/sys_exit": _sys_exit,
    "/backend_refused": _backend_refused,
    "/empty_then_raise": _empty_then_raise,
    "/no_content_with_length": _no_content_with_length,
    "/file_cl_mismatch": _file_cl_mismatch,
    "/sendfile": _file,  # unvalidated: the validator would hide the file_wrapper from the server
    "/raise": _raise,
    "/raise_in_iter": _raise_in_iter,
    "/raise_in_iter_first": _raise_in_iter_first,
    "/raise_in_close": _raise_in_close,
    "/closes_counted": _closes_counted,
    "/close_log": _close_log,
    "/slow_stream": _slow_stream,
    "/twice": _twice,
    "/crlf_header": _crlf_header,
    "/non_latin1_header": _non_latin1_header,
    "/bad_status": _bad_status,
    "/str_body": _str_body,
    "/not_iterable": _not_iterable,
    "/no_start_response": _no_start_response,
    "/short_body": _short_body,
    "/long_body": _long_body,
    "/hop_by_hop": _hop_by_hop,
}


def router(environ, start_response):
    """Dispatch on the first path segment; everything else is the environ dump."""
    path = environ["PATH_INFO"]
    prefix = "/" + path.split("/", 2)[1] if path.startswith("/") else path
    app = validated.get(prefix) or raw_apps.get(prefix) or validated["/environ"]
    return app(environ, start_response)


def factory(greeting="Hello"):
    """`tests.apps:factory()` / `factory(greeting='Hi')` for the loader."""

    def app(environ, start_response):
        body = greeting.encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app
