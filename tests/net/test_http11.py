"""p11nethsm.net.http11: the request bytes and the answer parser, fed byte strings (no sockets)."""

from __future__ import annotations

import pytest

from p11nethsm.net.http11 import BodyTooLarge, ProtocolError, build_request, read_response


def feeder(data: bytes, piece: int = 7):
    """recv() over `data` in small pieces (parsers must not assume one read per answer)."""
    pos = 0

    def recv(n):
        nonlocal pos
        out = data[pos:pos + min(n, piece)]
        pos += len(out)
        return out
    return recv


def parse(data: bytes, max_body: int = 1 << 20, piece: int = 7):
    return read_response(feeder(data, piece), max_body)


JSON_OK = b'HTTP/1.1 200 OK\r\nServer: x\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"a":"xyz"}'


@pytest.mark.parametrize("piece", [1, 7, 65536])
def test_content_length_answer(piece):
    assert parse(JSON_OK, piece=piece) == (200, "application/json", b'{"a":"xyz"}', True)


def test_request_is_one_buffer_with_length():
    req = build_request("POST", "/api/v1/keys/k/sign", b"Host: h:1\r\n", b"A: b\r\n", b"{}")
    assert req == b"POST /api/v1/keys/k/sign HTTP/1.1\r\nHost: h:1\r\nA: b\r\nContent-Length: 2\r\n\r\n{}"
    assert build_request("GET", "/x", b"Host: h:1\r\n", b"", None) == b"GET /x HTTP/1.1\r\nHost: h:1\r\n\r\n"
    assert build_request("DELETE", "/x", b"", b"", None).endswith(b"\r\n\r\n")
    assert b"Content-Length: 0" in build_request("POST", "/x", b"", b"", None)


@pytest.mark.parametrize("target", ["/a b", "/a\r\nX: y", "/\x00", "/é"])
def test_request_target_with_forbidden_characters_is_refused(target):
    with pytest.raises(ValueError):
        build_request("GET", target, b"", b"", None)


def test_chunked_answer_with_extension_and_trailer():
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
            b"4;ext=1\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\nX-Trailer: t\r\n\r\n")
    assert parse(data) == (200, "application/json", b'{"a":1}', True)


def test_interim_answer_is_skipped():
    assert parse(b"HTTP/1.1 100 Continue\r\n\r\n" + JSON_OK)[:3] == (200, "application/json", b'{"a":"xyz"}')


@pytest.mark.parametrize("head, reusable", [
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", False),  # bytes after the answer
    (b"HTTP/1.1 200 OK\r\n\r\nuntil close", False),
    (b"HTTP/1.1 204 No Content\r\n\r\n", True),
])
def test_reusable_connection(head, reusable):
    assert parse(head)[3] is reusable


@pytest.mark.parametrize("head, expected", [
    # field names in any case; values stripped, lower-cased but for Content-Type
    (b"HTTP/1.1 201 Created\r\ncontent-TYPE:  Application/JSON \r\nCONTENT-LENGTH: 2\r\n"
     b"Connection:\tKeep-Alive\r\n\r\n{}", (201, "Application/JSON", b"{}", True)),
    # a name followed by a space before the colon is another field (skipped): no Content-Length here,
    # so the body runs to the end of the connection
    (b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\nabc", (200, "", b"abc", False)),
    # a field name only matches at the start of its line, not inside another field's value
    (b"HTTP/1.1 200 OK\r\nX-Note: content-length: 1\r\nContent-Length: 3\r\n\r\nabc", (200, "", b"abc", True)),
    # a status line without a reason phrase
    (b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", (200, "", b"ok", True)),
])
def test_header_fields(head, expected):
    assert parse(head) == expected


@pytest.mark.parametrize("data, what", [
    (b"", "closed before the answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "closed in the answer's headers"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "closed after 5 of 10"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "twice"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "bad Content-Length"),
    (b"ICY 200 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
    (b"HTTP/2.0 200 OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200OK\r\n\r\n", "bad status line"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nContent-Length: 2\r\n\r\nok", "twice"),
    (b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n", "more than 100 headers"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000, "larger than 64 KiB"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "not followed by CRLF"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "closed in a chunked body"),
])
def test_not_an_answer(data, what):
    with pytest.raises(ProtocolError, match=what):
        parse(data, piece=65536)


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"40\r\n" + b"x" * 64 + b"\r\n" + b"40\r\n" + b"x" * 64,
    b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 101,
])
def test_body_over_the_limit(data):
    with pytest.raises(BodyTooLarge):
        parse(data, max_body=100, piece=65536)
