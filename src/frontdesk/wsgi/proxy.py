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


class ProxyTrust:
    """Which peers may speak for the client (`--forwarded-allow-ips`)."""

    def __init__(self, spec: str) -> None:
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
def proxy_trust_for(spec: str) -> ProxyTrust:
    """One shared `ProxyTrust` per `--forwarded-allow-ips` value (parsed once per worker)."""
    return ProxyTrust(spec)


_FORWARDED_KEYS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO",
                   "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PORT")


def apply_forwarded(environ: dict[str, Any], trust: ProxyTrust) -> None:
    """Rewrite the connection facts in `environ` from a trusted proxy's headers."""
    if not any(key in environ for key in _FORWARDED_KEYS):
        return
    if "HTTP_FORWARDED" in environ:
        hops = _parse_forwarded(environ["HTTP_FORWARDED"])
        addresses = [hop.get("for", "") for hop in hops]
        nearest = hops[-1] if hops else {}
        proto, host, port = nearest.get("proto"), nearest.get("host"), None
    else:
        addresses = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
        host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
        port = _last(environ.get("HTTP_X_FORWARDED_PORT"))
    client = _client(addresses, trust)
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
    if host and _plausible_host(host):
        environ["HTTP_HOST"] = host
        name, host_port = _split_host(host)
        environ["SERVER_NAME"] = name
        port = port or host_port
        if not port:
            port = "443" if environ["wsgi.url_scheme"] == "https" else "80"
    elif port is None and proto:
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
