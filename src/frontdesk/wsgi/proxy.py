"""Believing a proxy: X-Forwarded-* and RFC 7239 `Forwarded`, only from trusted peers. Pure.

A request from a peer in `--forwarded-allow-ips` (loopback by default; a unix-socket peer is
always trusted, since the socket's permissions decide who connects) may set the client address,
scheme and host the app sees. From anyone else the headers reach the app untouched in HTTP_*,
but REMOTE_ADDR, wsgi.url_scheme, SERVER_NAME/PORT stay what the connection says.

The client address is found as nginx's realip module does with `real_ip_recursive on`: every
proxy appends the address it received the request from, so the list is walked from the right,
past addresses of known proxies (the networks listed in `--forwarded-allow-ips`), and the first
address that is not one is the client. Entries further left were written by the client itself
and are never believed; so the walk also stops at the first entry that is not an address
(`unknown`, an obfuscated `_name`, a missing `for=`, junk) and keeps the last address it
trusted: walking past junk would let the client's own entries win. When every entry is a known
proxy, the left-most is the client.

`*` trusts every peer as the proxy in front, but assumes nothing about the addresses inside the
header: the right-most entry, the one the connecting proxy appended, is the client (werkzeug's
`ProxyFix(x_for=1)`). Behind a chain of proxies, list their addresses or networks instead.

Host and port are believed only when they are well-formed (RFC 3986 host, port 1-65535), and a
host's name and port are applied together or not at all.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any, Callable, TypeVar

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


FORWARDED_HEADERS = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host",
                     "x-forwarded-port", "forwarded")
DEFAULT_FORWARDED_HEADERS = "X-Forwarded-For,X-Forwarded-Proto"


def parse_forwarded_headers(spec: str) -> frozenset[str]:
    """`--forwarded-headers` → the header families believed. ValueError names a bad one."""
    given = [part.strip() for part in spec.split(",") if part.strip()]
    unknown = [name for name in given if name.lower() not in FORWARDED_HEADERS]
    if unknown:
        raise ValueError(f"unknown header {unknown[0]!r}; choose from "
                         "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, "
                         "X-Forwarded-Port, Forwarded")
    return frozenset(name.lower() for name in given)


class ProxyTrust:
    """Which peers may speak for the client (`--forwarded-allow-ips`), and with which headers
    (`--forwarded-headers`: only those a proxy in front overwrites or appends to can be
    believed; one it passes through unchanged would let the client speak for itself)."""

    def __init__(self, spec: str, headers: str = DEFAULT_FORWARDED_HEADERS) -> None:
        self.headers = parse_forwarded_headers(headers)
        parts = [part.strip() for part in spec.split(",") if part.strip()]
        self.everyone = "*" in parts
        self.networks: list[_Network] = [
            ipaddress.ip_network(part, strict=False) for part in parts if part != "*"
        ]

    def trusts(self, address: str) -> bool:
        """Whether the connected peer at `address` may speak for the client."""
        if self.everyone:
            return True
        if not address:  # a unix-socket peer
            return True
        return self.is_proxy(address)

    def is_proxy(self, address: str) -> bool:
        """Whether an address named inside a forwarding header is a known proxy (listed in
        `--forwarded-allow-ips`; `*` names none)."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


@functools.lru_cache(maxsize=8)
def proxy_trust_for(spec: str, headers: str = DEFAULT_FORWARDED_HEADERS) -> ProxyTrust:
    """One shared `ProxyTrust` per settings pair (parsed once per worker)."""
    return ProxyTrust(spec, headers)


# -- the client address --------------------------------------------------------------------------

_CACHED_MAX = 256  # header values up to this long are cached (the same chains come again)

_T = TypeVar("_T")


def _cached_if_short(maxsize: int) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """An lru_cache for a function of (trust, header value) that caches only values up to
    _CACHED_MAX long: a client sending ever-new long values would only evict the usual ones.
    What it returns is shared between callers: tuples only."""

    def decorate(func: Callable[..., _T]) -> Callable[..., _T]:
        cached = functools.lru_cache(maxsize=maxsize)(func)

        def call(trust: ProxyTrust, value: str) -> _T:
            return cached(trust, value) if len(value) <= _CACHED_MAX else func(trust, value)

        return call

    return decorate


def forwarded_client(trust: ProxyTrust | None, headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client address the app sees as REMOTE_ADDR for a request with raw `headers` from a
    peer with `trust` (None: an untrusted peer), or None when the believed headers name no
    client, so the connection's own address stands.

    The same answer as `build_environ` gives, from X-Forwarded-For or RFC 7239 Forwarded as
    `--forwarded-headers` enables them, without building an environ: cheap enough for the
    event loop to call per request (e.g. to key a rate limit); usual values are cached."""
    if trust is None:
        return None
    believed = trust.headers
    use_forwarded = "forwarded" in believed
    use_xff = "x-forwarded-for" in believed
    if not (use_forwarded or use_xff):
        return None
    forwarded = xff = None
    for name, value in headers:
        size = len(name)
        if size == 9 and use_forwarded and name.lower() == b"forwarded":
            forwarded = value if forwarded is None else forwarded + b", " + value
        elif size == 15 and use_xff and name.lower() == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
    # The environ carries header values as latin-1 text; decide on exactly the same text.
    if forwarded is not None:
        client = _forwarded(trust, forwarded.decode("latin-1"))[0]
    elif xff is not None:
        client = _xff_client(trust, xff.decode("latin-1"))
    else:
        return None
    return client[0] if client is not None else None


@_cached_if_short(4096)
def _xff_client(trust: ProxyTrust, xff: str) -> tuple[str, str] | None:
    """(address, port) of the client named by a believed X-Forwarded-For value, or None."""
    return _walk(trust, [_unquote_node(node) for node in xff.split(",")])


@_cached_if_short(1024)
def _forwarded(trust: ProxyTrust, value: str
               ) -> tuple[tuple[str, str] | None, str | None, str | None]:
    """(client (address, port), proto, host) from a believed Forwarded value: the client by the
    walk over every element's `for`, proto and host from the element the connecting proxy
    added (the last); all None when the value is malformed."""
    hops = _parse_forwarded(value)
    if hops is None:
        return None, None, None
    nearest = hops[-1]
    return _walk(trust, [hop.get("for") for hop in hops]), nearest.get("proto"), nearest.get("host")


def _walk(trust: ProxyTrust, nodes: list[str | None]) -> tuple[str, str] | None:
    """The client among the forwarding entries `nodes`, right to left (module docstring)."""
    client = None
    for node in reversed(nodes):
        parsed = _split_node(node) if node else None
        if parsed is None:
            break  # never walk past an entry that is not an address: left of it is the client's
        client = parsed
        if not trust.is_proxy(parsed[0]):
            break
    return client


def _unquote_node(node: str) -> str:
    node = node.strip()
    if len(node) >= 2 and node[0] == '"' and node[-1] == '"':
        node = node[1:-1]
    return node


def _split_node(node: str) -> tuple[str, str] | None:
    """`1.2.3.4`, `1.2.3.4:5`, `[::1]`, `[::1]:5`, `::1` → (address, port); junk → None.
    An obfuscated port (`_abc`, RFC 7239 §6.3) keeps the address without a port."""
    if node.startswith("["):
        address, bracket, rest = node[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    elif node.count(":") == 1:
        address, port = node.split(":")
    else:
        address, port = node, ""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None  # "unknown", obfuscated identifiers (RFC 7239 §6.3), garbage
    return address, port if _PORT.fullmatch(port) else ""


# -- RFC 7239 ------------------------------------------------------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
# forwarded-pair = token "=" value; value = token / quoted-string (RFC 7230 §3.2.6). Unquoted
# values are taken more loosely than a token (anything up to a separator), because proxies are
# commonly configured to send `host=example.com:8443` or `for=[2001:db8::1]` unquoted.
_FORWARDED_PAIR = re.compile(
    r"[ \t]*(" + _TOKEN + r")="
    r'(?:([^;,"\s\x00-\x1f\x7f]+)|"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\x00-\x08\x0a-\x1f\x7f])*)")'
    r"[ \t]*"
)
_QUOTED_PAIR = re.compile(r"\\(.)")


def _parse_forwarded(value: str) -> list[dict[str, str]] | None:
    """RFC 7239 §4 → one dict per element (hop), left to right; None when malformed (then
    nothing in it is believed: a client could otherwise use a broken quote to hide the
    elements appended after its own)."""
    hops: list[dict[str, str]] = []
    hop: dict[str, str] = {}
    pos, end = 0, len(value)
    while True:
        match = _FORWARDED_PAIR.match(value, pos)
        if match is not None:
            name, token, quoted = match.groups()
            name = name.lower()
            if name in hop:
                return None  # §4: each parameter at most once per element
            hop[name] = token if token is not None else _QUOTED_PAIR.sub(r"\1", quoted)
            pos = match.end()
        else:
            while pos < end and value[pos] in " \t":
                pos += 1  # an empty pair or element is allowed
        if pos >= end:
            hops.append(hop)
            return hops
        separator = value[pos]
        pos += 1
        if separator == ",":
            hops.append(hop)
            hop = {}
        elif separator != ";":
            return None


# -- host and port -------------------------------------------------------------------------------

_PORT = re.compile(r"[0-9]{1,5}")
# RFC 3986 §3.2.2 reg-name (which includes IPv4address): unreserved / pct-encoded / sub-delims
_REG_NAME = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")


def _valid_port(port: str) -> str | None:
    if _PORT.fullmatch(port) and 0 < int(port) <= 65535:
        return str(int(port))
    return None


def _parse_host(host: str) -> tuple[str, str] | None:
    """An RFC 3986 `host [":" port]` → (name, port or ""); None unless it is well-formed ASCII
    with a port 1-65535 (an empty port after ':' is allowed, as in a URI)."""
    if len(host) > 255:
        return None
    if host.startswith("["):
        literal, bracket, rest = host[1:].partition("]")
        if not bracket:
            return None
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return None
        if "%" in literal:
            return None  # a zone id is not part of a URI's host (RFC 6874 aside)
        name = "[" + literal + "]"
    else:
        name, colon, port_text = host.partition(":")
        rest = colon + port_text
        if not _REG_NAME.fullmatch(name):
            return None
    if not rest:
        return name, ""
    if not rest.startswith(":"):
        return None
    port_text = rest[1:]
    if not port_text:
        return name, ""
    port = _valid_port(port_text)
    return (name, port) if port is not None else None


# -- the environ ---------------------------------------------------------------------------------

_FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                   "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def apply_forwarded(environ: dict[str, Any], trust: ProxyTrust) -> None:
    """Rewrite the connection facts in `environ` from a trusted proxy's believed headers."""
    if environ.keys().isdisjoint(_FORWARDED_KEYS):
        return
    believed = trust.headers
    proto = host = port = None
    client = None
    if "forwarded" in believed and "HTTP_FORWARDED" in environ:
        client, proto, host = _forwarded(trust, environ["HTTP_FORWARDED"])
    else:
        if "x-forwarded-for" in believed and "HTTP_X_FORWARDED_FOR" in environ:
            client = _xff_client(trust, environ["HTTP_X_FORWARDED_FOR"])
        if "x-forwarded-proto" in believed:
            proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
        if "x-forwarded-host" in believed:
            host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
        if "x-forwarded-port" in believed:
            port = _last(environ.get("HTTP_X_FORWARDED_PORT"))
    if client is not None:
        address, client_port = client
        environ["REMOTE_ADDR"] = address
        if client_port:
            environ["REMOTE_PORT"] = client_port
    if proto:
        proto = proto.lower()
        if proto in ("http", "https"):
            environ["wsgi.url_scheme"] = proto
            if proto == "https":
                environ["HTTPS"] = "on"
        else:
            proto = None
    # A header that is not well-formed counts as absent; a host's name and port go together.
    parsed_host = _parse_host(host) if host else None
    port = _valid_port(port) if port else None
    if parsed_host is not None:
        name, host_port = parsed_host
        environ["HTTP_HOST"] = host
        environ["SERVER_NAME"] = name
        port = port or host_port
    if not port and (proto or parsed_host is not None):
        port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
    if port:
        environ["SERVER_PORT"] = port


def _last(value: str | None) -> str | None:
    """The value the nearest proxy set (it appends to any list the client sent)."""
    if not value:
        return None
    return value.rsplit(",", 1)[-1].strip() or None
