"""PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy and cloud load balancers send
them at the start of a connection (haproxy.org/download/2.9/doc/proxy-protocol.txt). Pure.

`parse(buffer)` returns None while the header is incomplete, else `(consumed, source)` where
`source` is the original client's `(address, port)`, or None for `UNKNOWN`/`LOCAL` (health
checks from the balancer itself) and for v2 families other than TCP (UDP, UNIX, UNSPEC): then the
connection's own address stands. Malformed → ValueError.
"""

from __future__ import annotations

import ipaddress
import socket
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX = 107  # the longest valid v1 line, CRLF included
V2_MAX_ADDRESSES = 216 + 2048  # addresses plus generous room for TLVs


def parse(buffer: bytes) -> tuple[int, tuple[str, str] | None] | None:
    if buffer.startswith(V2_SIGNATURE[: len(buffer)]) and len(buffer) < 16:
        return None
    if buffer.startswith(V2_SIGNATURE):
        return _parse_v2(buffer)
    if b"PROXY "[: len(buffer)] == buffer[:6] and len(buffer) < 6:
        return None
    if buffer.startswith(b"PROXY "):
        return _parse_v1(buffer)
    raise ValueError("connection did not start with a PROXY protocol header")


def _parse_v1(buffer: bytes) -> tuple[int, tuple[str, str] | None] | None:
    end = buffer.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(buffer) >= V1_MAX:
            raise ValueError("PROXY v1 header too long")
        return None
    line = buffer[:end]
    if line.split(b" ", 2)[1:2] == [b"UNKNOWN"]:
        return end + 2, None  # whatever follows UNKNOWN up to the CRLF is ignored (spec §2.1)
    parts = line.decode("ascii").split(" ")  # UnicodeDecodeError is a ValueError
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ValueError("malformed PROXY v1 header")
    _, family, source, destination, source_port, destination_port = parts
    addresses = [ipaddress.ip_address(source), ipaddress.ip_address(destination)]  # ValueError
    if any((address.version == 4) != (family == "TCP4") for address in addresses):
        raise ValueError("PROXY v1 address does not match its family")
    for port in (source_port, destination_port):
        if not port.isdigit() or int(port) > 65535 or (
                port != "0" and port.startswith("0")):
            raise ValueError("malformed PROXY v1 port")
    return end + 2, (str(addresses[0]), source_port)


# v2 address families (high nibble) and transports (low nibble), spec §2.2. Only TCP over IPv4
# and IPv6 name a client this server can use; for UDP and UNIX the header is valid but the
# connection's own addresses stand, as for LOCAL and UNSPEC.
_V2_TCP4, _V2_TCP6 = 0x11, 0x21
_V2_OTHER_FAMILIES = frozenset((0x00, 0x12, 0x22, 0x31, 0x32))


def _parse_v2(buffer: bytes) -> tuple[int, tuple[str, str] | None] | None:
    version_command, family, length = struct.unpack("!BBH", buffer[12:16])
    if version_command >> 4 != 2:
        raise ValueError("unsupported PROXY protocol version")
    if length > V2_MAX_ADDRESSES:
        raise ValueError("PROXY v2 header too long")
    total = 16 + length
    if len(buffer) < total:
        return None
    command = version_command & 0x0F
    if command == 0x0:  # LOCAL: the balancer's own connection (health check)
        return total, None
    if command != 0x1:
        raise ValueError("unknown PROXY v2 command")
    body = buffer[16:total]
    if family == _V2_TCP4:
        if length < 12:
            raise ValueError("PROXY v2 header too short for its IPv4 addresses")
        source = socket.inet_ntop(socket.AF_INET, body[0:4])
        (port,) = struct.unpack("!H", body[8:10])
        return total, (source, str(port))
    if family == _V2_TCP6:
        if length < 36:
            raise ValueError("PROXY v2 header too short for its IPv6 addresses")
        source = socket.inet_ntop(socket.AF_INET6, body[0:16])
        (port,) = struct.unpack("!H", body[32:34])
        return total, (source, str(port))
    if family in _V2_OTHER_FAMILIES:
        return total, None
    raise ValueError("unknown PROXY v2 address family")
