"""PROXY protocol v1/v2: pure parsing, and a real server started with --proxy-protocol."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from frontdesk.protocol.proxy_protocol import V2_SIGNATURE, parse

V1 = b"PROXY TCP4 203.0.113.5 10.0.0.1 51000 443\r\n"


def v2(command=0x1, family=0x11, body=None):
    if body is None:
        body = socket.inet_aton("198.51.100.7") + socket.inet_aton("10.0.0.1") + struct.pack(
            "!HH", 40000, 443)
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(body)) + body


def test_v1_and_v2_parse():
    assert parse(V1 + b"GET") == (len(V1), ("203.0.113.5", "51000"))
    header = v2()
    assert parse(header + b"GET") == (len(header), ("198.51.100.7", "40000"))
    six = socket.inet_pton(socket.AF_INET6, "2001:db8::5") + bytes(16) + struct.pack("!HH", 7, 8)
    assert parse(v2(family=0x21, body=six))[1] == ("2001:db8::5", "7")
    assert parse(b"PROXY UNKNOWN\r\n") == (15, None)
    assert parse(v2(command=0x0, family=0x00, body=b"")) == (16, None)


def test_incomplete_headers_wait_for_more():
    for prefix in (b"", b"PRO", V1[:20], V2_SIGNATURE[:5], v2()[:20]):
        assert parse(prefix) is None


@pytest.mark.parametrize("family, body", [
    (0x12, socket.inet_aton("198.51.100.7") + socket.inet_aton("10.0.0.1") + bytes(4)),  # UDP4
    (0x22, bytes(36)),  # UDP over IPv6
    (0x31, bytes(216)),  # UNIX stream
    (0x32, bytes(216)),  # UNIX datagram
    (0x00, b""),  # UNSPEC with PROXY
], ids=["udp4", "udp6", "unix-stream", "unix-dgram", "unspec"])
def test_v2_families_without_a_tcp_client_keep_the_connection_address(family, body):
    header = v2(family=family, body=body)
    assert parse(header + b"GET") == (len(header), None)


def test_v1_unknown_ignores_the_rest_of_its_line():
    line = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"
    assert parse(line + b"GET") == (len(line), None)
    line = b"PROXY UNKNOWN \xff\xfe not even ASCII\r\n"
    assert parse(line + b"GET") == (len(line), None)


@pytest.mark.parametrize("bad", [
    b"PROXY TCP4 1.1.1.1 10.0.0.1 \xd9\xa1 2\r\n",  # ARABIC-INDIC DIGIT ONE: isdigit() is true
    b"PROXY TCP4 1.1.1.1 10.0.0.1 1 \xef\xbc\x92\r\n",  # FULLWIDTH DIGIT TWO
    b"PROXY TCP4 1.1.1.\xd9\xa1 10.0.0.1 1 2\r\n",
])
def test_v1_bytes_beyond_ascii_are_refused_by_the_decoding(bad):
    """The line is decoded strictly: a non-ASCII byte never reaches a digit or address check."""
    with pytest.raises(UnicodeDecodeError):
        parse(bad)


@pytest.mark.parametrize("bad", [
    b"GET / HTTP/1.1\r\n",
    b"PROXY TCP4 1.1.1.1 10.0.0.999 1 2\r\n",  # the destination is checked too
    b"PROXY TCP4 1.1.1.1 ::1 1 2\r\n",
    b"PROXY TCP4 1.1.1.1 10.0.0.1 \xd9\xa1 2\r\n",  # a non-ASCII digit
    V2_SIGNATURE + b"\x21\x11\x00\x04" + bytes(4),  # too short for TCP4
    V2_SIGNATURE + b"\x21\x21\x00\x0c" + bytes(12),  # too short for TCP6
    V2_SIGNATURE + b"\x21\x13\x00\x00",  # no such family
    V2_SIGNATURE + b"\x21\x41\x00\x00",
    b"PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 ::1 10.0.0.1 1 2\r\n",
    b"PROXY TCP4 1.1.1.1 10.0.0.1 99999 2\r\n",
    b"PROXY TCP5 1.1.1.1 10.0.0.1 1 2\r\n",
    b"PROXY " + b"x" * 200,
])
def test_malformed_headers_raise(bad):
    with pytest.raises(ValueError):
        parse(bad)


def test_server_takes_client_address_from_proxy_header(server_factory):
    server = server_factory("tests.apps:router", "--proxy-protocol", "--workers", "1")
    out = server.raw(V1 + b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    env = json.loads(out.partition(b"\r\n\r\n")[2])
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("203.0.113.5", "51000")
    out = server.raw(v2() + b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["REMOTE_ADDR"] == "198.51.100.7"
    # a family that names no TCP client (here UNIX) keeps the connection's own address
    out = server.raw(v2(family=0x31, body=bytes(216))
                     + b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["REMOTE_ADDR"] == "127.0.0.1"
    # a peer that does not speak PROXY protocol is cut off before any HTTP is parsed
    assert server.raw(b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n") == b""
    # and the client address from the header is not a trusted proxy: its X-Forwarded-For is ignored
    out = server.raw(V1 + b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 6.6.6.6\r\n"
                          b"Connection: close\r\n\r\n")
    assert json.loads(out.partition(b"\r\n\r\n")[2])["REMOTE_ADDR"] == "203.0.113.5"
