"""Access log formats, escaping, request ids; and the access log of a real server."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import shutil
import time

import httpx
import pytest

from frontdesk.errors import ConfigError
from frontdesk.logs import (ACCESS_LOGGER, ERROR_LOGGER, AccessLog, StreamHandler,
                            WatchedFileHandler, check_format, configure, escape, reopen_files,
                            request_id)
from frontdesk.protocol.parser import Limits, RequestParser

COMBINED = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s %(rid)s'


def parsed(data: bytes):
    parser = RequestParser(Limits())
    parser.feed(data)
    return parser.requests[0]


def test_combined_format_line():
    request = parsed(b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nReferer: http://r/\r\n"
                     b"User-Agent: curl/8\r\n\r\n")
    log = AccessLog(COMBINED, as_json=False)
    line = log.format("10.0.0.1", request, 200, 13, [], 0.001234, time.time(), "abc-1")
    assert re.fullmatch(
        r'10\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /a\?b=1 HTTP/1\.1" '
        r'200 13 "http://r/" "curl/8" 1234 abc-1', line)
    log.close()


def test_header_atoms_and_json():
    request = parsed(b"POST /x HTTP/1.0\r\nX-Custom: v\r\n\r\n")
    log = AccessLog("%({x-custom}i)s %({content-type}o)s %(m)s %(U)s %(H)s %(b)s", as_json=False)
    line = log.format("1.2.3.4", request, 201, 0, [("Content-Type", "text/plain")], 0.5,
                      time.time(), "r")
    assert line == "v text/plain POST /x HTTP/1.0 -"
    as_json = json.loads(AccessLog("", as_json=True).format(
        "1.2.3.4", request, 201, 5, [], 0.25, time.time(), "rid-9"))
    assert as_json["status"] == 201 and as_json["duration_us"] == 250000
    assert as_json["request_id"] == "rid-9" and as_json["uri"] == "/x"


def test_log_injection_is_escaped():
    assert escape('evil\r\n127.0.0.1 - - "GET / HTTP/1.1" 200') == (
        'evil\\x0d\\x0a127.0.0.1 - - \\x22GET / HTTP/1.1\\x22 200')
    # llhttp refuses C0 controls and DEL in values; C1 controls arrive as obs-text.
    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: a\x9b31mred\r\n\r\n")
    line = AccessLog("%(a)s", as_json=False).format("1.1.1.1", request, 200, 0, [], 0, 0, "r")
    assert "\x9b" not in line and line == "a\\x9b31mred"


def test_request_ids():
    assert request_id("heroku-abc-123") == "heroku-abc-123"
    generated = {request_id(None) for _ in range(1000)}
    assert len(generated) == 1000
    assert request_id("bad id\r\nwith spaces") not in ("bad id\r\nwith spaces",)


def test_server_writes_access_log_with_request_id(server_factory, tmp_path):
    path = tmp_path / "access.log"
    server = server_factory("tests.apps:router", "--workers", "1", "--access-logfile", str(path))
    with httpx.Client(base_url=server.url) as client:
        env = client.get("/environ", headers={"X-Request-ID": "req-from-proxy-1"}).json()
        client.get("/hello", headers={"User-Agent": b"evil\x9bagent"})
        client.get("/raise")
    assert env["headers"]["HTTP_X_REQUEST_ID"] == "req-from-proxy-1"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(path.read_text().splitlines()) < 3:
        time.sleep(0.05)
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert '"GET /environ HTTP/1.1" 200 ' in lines[0] and lines[0].endswith(" req-from-proxy-1")
    assert '"evil\\x9bagent"' in lines[1]
    assert '"GET /raise HTTP/1.1" 500 ' in lines[2]
    assert re.search(r'" \d+ [0-9a-f]{10}-[0-9a-f]+$', lines[2])  # µs, generated id


def test_generated_request_id_reaches_the_app(apps_server):
    first = httpx.get(apps_server.url + "/environ").json()["frontdesk.request_id"]
    second = httpx.get(apps_server.url + "/environ").json()["frontdesk.request_id"]
    assert re.fullmatch(r"[0-9a-f]{10}-[0-9a-f]+", first) and first != second


def test_access_log_queue_is_bounded_and_never_holds_bodies(monkeypatch):
    import frontdesk.logs as logs_module

    request = parsed(b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
    log = AccessLog(COMBINED, as_json=False)
    monkeypatch.setattr(logs_module, "MAX_QUEUED_LINES", 0)
    log.record("1.1.1.1", request, 200, 0, [], time.monotonic(), "r")
    assert log.dropped == 1
    monkeypatch.setattr(logs_module, "MAX_QUEUED_LINES", 10)
    log._queue.put(None)  # stop the writer so the queued record can be inspected
    log._thread.join(2)
    log.record("1.1.1.1", request, 200, 0, [], time.monotonic(), "r")
    queued = log._queue.get_nowait()
    assert request not in queued and all(part is not request.body for part in queued)


# -- %(u)s and %({var}e)s --


def test_user_atom_decodes_basic_authorization_as_gunicorn_does():
    def user(authorization: bytes | None) -> str:
        header = b"Authorization: " + authorization + b"\r\n" if authorization is not None else b""
        request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n" + header + b"\r\n")
        return AccessLog("%(u)s", as_json=False).format("1.1.1.1", request, 200, 0, [], 0, 0, "r")

    assert user(b"Basic " + base64.b64encode(b"alice:secret:with:colons")) == "alice"
    assert user(b"basic " + base64.b64encode("jos\u00e9:pw".encode())) == "jos\u00e9"
    assert user(b"Basic " + base64.b64encode(b'ev"il\r\n:pw')) == "ev\\x22il\\x0d\\x0a"  # escaped
    assert user(b"Basic " + base64.b64encode(b"nocolon")) == "nocolon"
    assert user(b"Basic !!!notbase64") == "-"
    assert user(b"Basic " + base64.b64encode(b"\xff\xfe:pw")) == "-"  # not UTF-8
    assert user(b"Bearer abc.def") == "-"
    assert user(b"Basic") == "-"
    assert user(None) == "-"


def test_environ_atoms_are_looked_up_case_insensitively_and_only_those_are_kept():
    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    log = AccessLog("%({REMOTE_USER}e)s %({wsgi.url_scheme}e)s %({missing}e)s %({Tricky}e)s",
                    as_json=False)
    log._queue.put(None)  # stop the writer so the queued record can be inspected
    log._thread.join(2)
    environ = {"REMOTE_USER": "bob", "wsgi.url_scheme": "https", "tricky": "a\nb",
               "wsgi.input": object(), "HTTP_COOKIE": "secret"}
    log.record("1.1.1.1", request, 200, 0, [], time.monotonic(), "r", environ)
    item = log._queue.get_nowait()
    assert item[-1] == {"remote_user": "bob", "wsgi.url_scheme": "https", "tricky": "a\nb"}
    assert log.format(*item) == "bob https - a\\x0ab"
    log.record("1.1.1.1", request, 200, 0, [], time.monotonic(), "r")  # the loop has no environ
    assert log.format(*log._queue.get_nowait()) == "- - - -"


def test_environ_atoms_look_up_only_the_names_the_format_asks_for():
    """Per request: a few dict lookups, not a lower-cased copy of every environ key."""

    class Environ(dict):
        def items(self):
            raise AssertionError("the whole environ was scanned")

        __iter__ = keys = values = items

    request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    log = AccessLog("%({remote_addr}e)s %({wsgi.url_scheme}e)s %({X}e)s", as_json=False)
    log._queue.put(None)
    log._thread.join(2)
    environ = Environ({"REMOTE_ADDR": "10.0.0.1", "wsgi.url_scheme": "http", "x": "lower"})
    log.record("1.1.1.1", request, 200, 0, [], time.monotonic(), "r", environ)
    assert log.format(*log._queue.get_nowait()) == "10.0.0.1 http lower"


def test_environ_atoms_through_the_server(server_factory, tmp_path):
    path = tmp_path / "access.log"
    server = server_factory("tests.apps:router", "--workers", "1", "--access-logfile", str(path),
                            "--access-log-format",
                            "%({server_protocol}e)s %({PATH_INFO}e)s %({nope}e)s %(u)s")
    auth = base64.b64encode(b"carol:pw").decode()
    httpx.get(server.url + "/hello", headers={"Authorization": "Basic " + auth})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not path.read_text():
        time.sleep(0.05)
    assert path.read_text() == "HTTP/1.1 /hello - carol\n"


def test_format_check():
    assert check_format("%(h)s 100%% %({x}i)s") == "%(h)s 100%% %({x}i)s"
    for bad in ("%(h) %(s)s", "100% done", "%s", "%(s)d", "%(h)s %("):
        with pytest.raises(ValueError, match="atoms are written like %\\(h\\)s"):
            check_format(bad)


# -- handlers that never raise --


def error_record(message: str = "x") -> logging.LogRecord:
    return logging.LogRecord("frontdesk.error", logging.ERROR, __file__, 1, message, None, None)


def test_watched_file_handler_survives_a_failed_reopen(tmp_path, capsys):
    directory = tmp_path / "logs"
    directory.mkdir()
    handler = WatchedFileHandler(str(directory / "error.log"))
    handler.emit(error_record("one"))
    shutil.rmtree(directory)  # logrotate (or anyone) took the directory away: reopen must fail
    handler.emit(error_record("two"))
    handler.emit(error_record("three"))
    err = capsys.readouterr().err
    assert err == (f"frontdesk: cannot write log to {directory / 'error.log'}: No such file or"
                   " directory (lines are lost until it works again)\n")
    directory.mkdir()
    handler.emit(error_record("four"))  # works again, and would report a new failure again
    assert (directory / "error.log").read_text() == "four\n"
    handler.emit(error_record("five"))
    assert (directory / "error.log").read_text() == "four\nfive\n"  # no reopen per line
    handler.close()


def test_reopen_files_survives_a_missing_directory(tmp_path):
    directory = tmp_path / "logs"
    directory.mkdir()
    logger = logging.getLogger("frontdesk.test-reopen")
    handler = WatchedFileHandler(str(directory / "a.log"))
    logger.addHandler(handler)
    try:
        shutil.rmtree(directory)
        assert reopen_files() >= 1  # USR1 in the master: logged, not raised
        directory.mkdir()
        logger.error("back")
        assert (directory / "a.log").read_text() == "back\n"
    finally:
        logger.removeHandler(handler)
        handler.close()


def test_stream_handler_reports_a_broken_stream_once(capsys):
    stream = io.StringIO()
    handler = StreamHandler(stream)
    stream.close()
    handler.emit(error_record())
    handler.emit(error_record())
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("frontdesk: cannot write log to ")


def test_access_log_writer_survives_failing_handlers():
    written = []

    class FailsOnce(logging.Handler):
        def emit(self, record):  # raising out of emit, as the stdlib's reopen can
            if not written:
                written.append("failed")
                raise OSError("disk on fire")
            written.append(record.getMessage())

    class Fails(logging.Handler):
        def emit(self, record):
            raise OSError("disk on fire")

    access, error = logging.getLogger(ACCESS_LOGGER), logging.getLogger(ERROR_LOGGER)
    saved = [(lg, lg.handlers[:], lg.propagate, lg.level) for lg in (access, error)]
    try:
        access.handlers[:] = [FailsOnce()]
        error.handlers[:] = [Fails()]  # even reporting the failure fails
        access.propagate = error.propagate = False
        access.setLevel(logging.INFO)
        log = AccessLog("%(s)s", as_json=False)
        request = parsed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        log.record("1.1.1.1", request, 500, 0, [], time.monotonic(), "r")
        log.record("1.1.1.1", request, 201, 0, [], time.monotonic(), "r")
        log.close(5)
        assert written == ["failed", "201"]
    finally:
        for lg, handlers, propagate, level in saved:
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(level)


def test_configure_errors_name_the_setting(tmp_path):
    from frontdesk.config import Config

    with pytest.raises(ConfigError, match="^setting 'error_log' is invalid: cannot open "):
        configure(Config(error_log=str(tmp_path / "nowhere" / "e.log")))
    (tmp_path / "log.toml").write_text('version = 1\n[handlers.x]\nclass = "no.such.Handler"\n')
    with pytest.raises(ConfigError, match="^setting 'log_config' is invalid: .*no.such.Handler"):
        configure(Config(log_config=str(tmp_path / "log.toml")))
