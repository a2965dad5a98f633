"""Request → PEP 3333 environ. Pure: no I/O.

The per-connection part (server and peer addresses, the wsgi.* constants) is built once per
connection by `connection_environ`; `build_environ` copies it and adds the request's part, so a
request costs one dict copy plus its headers.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote_to_bytes

from frontdesk.protocol.parser import Request
from frontdesk.wsgi.errors import error_stream
from frontdesk.wsgi.file_wrapper import FileWrapper
from frontdesk.wsgi.proxy import ProxyTrust, apply_forwarded

# Header name (as sent) → environ key. Bounded so hostile clients cannot grow it without limit.
_KEYS: dict[bytes, str] = {}
_KEYS_MAX = 512
_UNPREFIXED = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
# Body already de-chunked and framed by the server: these would mislead the app.
_HOP_BY_HOP = {b"transfer-encoding"}


def _environ_key(name: bytes) -> str | None:
    key = _KEYS.get(name)
    if key is None:
        lname = name.lower()
        if lname in _HOP_BY_HOP:
            return None
        key = _UNPREFIXED.get(lname) or "HTTP_" + lname.decode("latin-1").upper().replace("-", "_")
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


def connection_environ(
    *,
    server: tuple[str, str],
    peer: tuple[str, str],
    url_scheme: str,
    root_path: str,
    multithread: bool,
    multiprocess: bool,
) -> dict[str, Any]:
    """The environ entries shared by every request on one connection."""
    return {
        "SERVER_NAME": server[0],
        "SERVER_PORT": server[1],
        "REMOTE_ADDR": peer[0],
        "REMOTE_PORT": peer[1],
        "SCRIPT_NAME": root_path,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": error_stream,  # into the error log (--error-logfile), not stderr
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Request-target → (path, query), both still percent-encoded. Handles absolute-form."""
    if b"#" in target:
        target = target.partition(b"#")[0]  # a fragment is the client's business (RFC 9110 §4.2.5)
    if target[:1] != b"/":
        if target == b"*":
            return b"*", b""
        # absolute-form (RFC 9112 §3.2.2): scheme://authority/path?query
        scheme_end = target.find(b"://")
        if scheme_end > 0:
            path_start = target.find(b"/", scheme_end + 3)
            query_start = target.find(b"?", scheme_end + 3)
            if path_start < 0 or (0 <= query_start < path_start):
                target = b"/" + target[query_start:] if query_start >= 0 else b"/"
            else:
                target = target[path_start:]
    path, sep, query = target.partition(b"?")
    return path, query


def _absolute_form_authority(target: bytes) -> str | None:
    if target[:1] == b"/" or target == b"*":
        return None
    rest = target.partition(b"://")[2]
    end = min((i for i in (rest.find(b"/"), rest.find(b"?"), rest.find(b"#")) if i >= 0),
              default=len(rest))
    authority = rest[:end].rpartition(b"@")[2]  # never pass on userinfo
    return authority.decode("latin-1") or None


def build_environ(
    request: Request, base: dict[str, Any], proxy_trust: ProxyTrust | None = None
) -> dict[str, Any]:
    """The environ for `request`; `proxy_trust` when the peer is a trusted proxy."""
    environ = base.copy()
    path, query = split_target(request.target)
    # PEP 3333: PATH_INFO is the percent-decoded path, bytes carried as latin-1 code points.
    path_info = (unquote_to_bytes(path) if b"%" in path else path).decode("latin-1")
    script_name = environ["SCRIPT_NAME"]
    if script_name and (path_info == script_name or path_info.startswith(script_name + "/")):
        path_info = path_info[len(script_name) :]
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = path_info
    environ["QUERY_STRING"] = query.decode("latin-1")
    environ["RAW_URI"] = environ["REQUEST_URI"] = request.target.decode("latin-1")
    environ["SERVER_PROTOCOL"] = "HTTP/1.1" if request.version == "1.1" else "HTTP/1.0"
    absolute_host = _absolute_form_authority(request.target)
    for name, value in request.headers:
        key = _KEYS.get(name) or _environ_key(name)
        if key is None:
            continue
        text = value.decode("latin-1")
        if key in environ:
            # RFC 9110 §5.3: repeated fields combine with commas; cookies with "; " (RFC 6265).
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    if absolute_host:
        environ["HTTP_HOST"] = absolute_host  # RFC 9112 §3.2.2: the target's authority wins
    if request.chunked or request.body_size:
        # The body arrives de-chunked and complete: tell the app its real length.
        environ["CONTENT_LENGTH"] = str(request.body_size)
    if proxy_trust is not None:
        apply_forwarded(environ, proxy_trust)
    body = request.body
    environ["wsgi.input"] = io.BytesIO(body) if isinstance(body, bytes) else body
    return environ
