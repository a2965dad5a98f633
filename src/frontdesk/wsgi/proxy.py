"""Believing a proxy: X-Forwarded-* and RFC 7239 `Forwarded`, only from trusted peers. Pure.

A request from a peer in `--forwarded-allow-ips` (loopback by default; a unix-socket peer is
always trusted, since the socket's permissions decide who connects) may set the client address,
scheme and host the app sees. From anyone else the headers reach the app untouched in HTTP_*,
but REMOTE_ADDR, wsgi.url_scheme, SERVER_NAME/PORT stay what the connection says.

Through a chain of proxies the client is the right-most address that is not itself a trusted
proxy: every proxy appends the address it received the request from, and only the entries
appended by trusted proxies can be believed.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

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
        if self.everyone:
            return True
        if not address:  # a unix-socket peer
            return True
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


_FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                   "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def apply_forwarded(environ: dict[str, Any], trust: ProxyTrust) -> None:
    """Rewrite the connection facts in `environ` from a trusted proxy's believed headers."""
    if not any(key in environ for key in _FORWARDED_KEYS):
        return
    believed = trust.headers
    proto = host = port = None
    addresses: list[str] | None = None
    if "forwarded" in believed and "HTTP_FORWARDED" in environ:
        hops = _parse_forwarded(environ["HTTP_FORWARDED"])
        addresses = [hop.get("for", "") for hop in hops]
        nearest = hops[-1] if hops else {}
        proto, host = nearest.get("proto"), nearest.get("host")
    else:
        if "x-forwarded-for" in believed and "HTTP_X_FORWARDED_FOR" in environ:
            addresses = [a.strip() for a in environ["HTTP_X_FORWARDED_FOR"].split(",")]
        if "x-forwarded-proto" in believed:
            proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
        if "x-forwarded-host" in believed:
            host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
        if "x-forwarded-port" in believed:
            port = _last(environ.get("HTTP_X_FORWARDED_PORT"))
    client = _client(addresses, trust) if addresses else None
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
    if host and _plausible_host(host):
        environ["HTTP_HOST"] = host
        name, host_port = _split_host(host)
        environ["SERVER_NAME"] = name
        port = port or host_port
    if not port and (proto or host):
        port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
    if port and port.isdigit():
        environ["SERVER_PORT"] = port


def _client(addresses: list[str], trust: ProxyTrust) -> tuple[str, str] | None:
    """The right-most address not belonging to a trusted proxy, with its port if given."""
    parsed = [_split_node(a) for a in addresses if a]
    parsed = [p for p in parsed if p is not None]
    if not parsed:
        return None
    for address, port in reversed(parsed):
        if not trust.trusts(address):
            return address, port
    return parsed[0]


def _split_node(node: str) -> tuple[str, str] | None:
    """`1.2.3.4`, `1.2.3.4:5`, `[::1]`, `[::1]:5`, `::1` → (address, port); junk → None."""
    node = node.strip().strip('"')
    if node.startswith("["):
        address, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        address, port = node.split(":")
    else:
        address, port = node, ""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None  # "unknown", obfuscated identifiers (RFC 7239 §6.3), garbage
    return address, port if port.isdigit() else ""


def _parse_forwarded(value: str) -> list[dict[str, str]]:
    hops = []
    for element in value.split(","):
        hop = {}
        for pair in element.split(";"):
            name, sep, val = pair.partition("=")
            if sep:
                hop[name.strip().lower()] = val.strip().strip('"')
        hops.append(hop)
    return hops


def _last(value: str | None) -> str | None:
    """The value the nearest proxy set (it appends to any list the client sent)."""
    if not value:
        return None
    return value.rsplit(",", 1)[-1].strip() or None


def _split_host(host: str) -> tuple[str, str]:
    if host.startswith("["):
        name, _, rest = host.partition("]")
        return name + "]", rest[1:] if rest.startswith(":") else ""
    name, _, port = host.partition(":")
    return name, port


def _plausible_host(host: str) -> bool:
    return all(c.isalnum() or c in ".-:[]_" for c in host) and len(host) < 256
