"""One HTTP/1.1 request/response on an open connection: the bytes, nothing else (the hot path).

The NetHSM API needs little of HTTP: one request at a time per keep-alive connection, an answer
with Content-Length (or chunked, or until close), a Content-Type. http.client's response object
parses every answer's headers with the `email` package and wraps the socket in two file objects
per answer: ~40 % of the module's CPU per signature in the wire bench (bench/wire.py). Here the
request goes out in one write (no Nagle / delayed-ACK stall) and the answer is read with `recv`
into bytes and parsed with bytes methods, with http.client's limits (100 headers, 64 KiB head).

Anything that is not an answer we accept raises `ProtocolError` (p11nethsm.net.pool turns it into
an ExchangeError in the READ phase); an answer bigger than `max_body` raises BodyTooLarge.
Connection management (connect, TLS, pinning, pooling) stays with urllib3 (p11nethsm.net.pool).
"""

from __future__ import annotations

import re

from p11nethsm.net.errors import BodyTooLarge, ProtocolError

MAX_HEAD = 64 * 1024  # status line + header lines (http.client: 65536 per line, 100 headers)
MAX_HEADERS = 100
RECV = 16384  # one TLS record at most per read: a bigger buffer only costs the allocation

_BAD_TARGET = re.compile(r"[^\x21-\x7e]").search  # a request target is printable ASCII without spaces


def build_request(method: str, target: str, host: bytes, head: bytes, body: bytes | None) -> bytes:
    """The request bytes. `host` and `head`: header lines, each ending in CRLF."""
    if _BAD_TARGET(target):
        raise ValueError(f"request target with forbidden characters: {target[:80]!r}")
    if body is None:
        if method in _BODY_METHODS:
            body = b""
        else:
            return b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method.encode(), target.encode(), host, head)
    return b"%s %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
        method.encode(), target.encode(), host, head, len(body), body)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def read_response(recv, max_body: int) -> tuple[int, str, bytes, bool]:
    """Read one answer with `recv(n) -> bytes` (b"" at EOF): (status, content type, body, reusable).

    `reusable` is False when the connection must not carry another request (Connection: close,
    HTTP/1.0, a body delimited by the end of the connection, or bytes after the answer)."""
    buf = b""
    while True:  # interim 1xx answers are skipped
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("header block larger than 64 KiB")
            chunk = recv(RECV)
            if not chunk:
                raise ProtocolError("connection closed before the answer" if not buf
                                    else "connection closed in the answer's headers")
            buf += chunk
            end = buf.find(b"\r\n\r\n", max(0, len(buf) - len(chunk) - 3))
        if end > MAX_HEAD:
            raise ProtocolError("header block larger than 64 KiB")
        head = buf[:end]
        buf = buf[end + 4:]
        line_end = head.find(b"\r\n")
        status, keep = _status(head if line_end < 0 else head[:line_end])
        if not 100 <= status < 200:
            break
    length, ctype, coding, connection = _fields(head)
    if length is not None:
        if not length.isdigit():
            raise ProtocolError(f"bad Content-Length {length[:30]!r}")
        length = int(length)
    ctype = ctype.decode("latin-1") if ctype is not None else ""
    if coding is not None and coding != b"chunked":
        raise ProtocolError(f"unsupported Transfer-Encoding {coding[:30]!r}")
    chunked = coding is not None
    if connection is not None:
        if b"close" in connection:
            keep = False
        elif b"keep-alive" in connection:
            keep = True
    if status == 204 or status == 304:
        body = b""
    elif chunked:
        body, buf = _read_chunked(recv, buf, max_body)
    elif length is not None:
        if length > max_body:
            raise BodyTooLarge(str(length))
        if len(buf) < length:  # the body did not come with the head (a small answer does)
            buf = _read_upto(recv, buf, length)
        body, buf = buf[:length], buf[length:]
    else:  # delimited by the end of the connection
        return status, ctype, _read_to_eof(recv, buf, max_body), False
    return status, ctype, body, keep and not buf


def _read_upto(recv, buf: bytes, length: int) -> bytes:
    """`buf` and what follows it until it holds at least `length` bytes."""
    parts, have = [buf], len(buf)
    while have < length:
        chunk = recv(RECV)
        if not chunk:
            raise ProtocolError(f"connection closed after {have} of {length} body bytes")
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def _read_to_eof(recv, buf: bytes, max_body: int) -> bytes:
    """`buf` and everything up to the end of the connection (at most `max_body` bytes)."""
    parts, have = [buf], len(buf)
    while have <= max_body:
        chunk = recv(RECV)
        if not chunk:
            break
        have += len(chunk)
        parts.append(chunk)
    if have > max_body:
        raise BodyTooLarge(f">{max_body}")
    return b"".join(parts)


# The four headers we read: their lower-case names -> position in _fields' answer.
_WANTED = {b"content-length": 0, b"content-type": 1, b"transfer-encoding": 2, b"connection": 3}
_LOWER = (True, False, True, True)  # values compared lower-case (Content-Type keeps its case)


def _fields(head: bytes) -> list:
    """[Content-Length, Content-Type, Transfer-Encoding, Connection] of a head (status line and
    header lines, no final CRLF): stripped values, None when absent; ProtocolError for more than
    MAX_HEADERS lines or for one of them twice (an ambiguous answer). One split and one dict
    lookup per line: the head of a signature's answer is five or six lines (the hot path)."""
    lines = head.split(b"\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise ProtocolError(f"more than {MAX_HEADERS} headers")
    found = [None, None, None, None]
    for i in range(1, len(lines)):
        name, sep, value = lines[i].partition(b":")
        at = _WANTED.get(name.lower()) if sep else None
        if at is None:
            continue
        if found[at] is not None:
            raise ProtocolError(f"header {name.lower().decode()!r} twice")
        value = value.strip()
        found[at] = value.lower() if _LOWER[at] else value
    return found


def _status(line: bytes) -> tuple[int, bool]:
    """(status, keep-alive by default) of a status line."""
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if (version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit()
            or rest[3:4] not in (b"", b" ")):
        raise ProtocolError(f"bad status line {line[:60]!r}")
    return int(code), version == b"HTTP/1.1"


def _read_chunked(recv, data: bytes, max_body: int) -> tuple[bytes, bytes]:
    """The de-chunked body and what follows it (a bytearray: deleting from its front is cheap)."""
    buf, parts, total = bytearray(data), [], 0
    while True:
        end = buf.find(b"\r\n")
        while end < 0:
            if len(buf) > 4096:
                raise ProtocolError("chunk size line too long")
            _more(recv, buf)
            end = buf.find(b"\r\n")
        size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        del buf[:end + 2]
        if size == 0:
            break
        total += size
        if total > max_body:
            raise BodyTooLarge(f">{max_body}")
        while len(buf) < size + 2:
            _more(recv, buf)
        if buf[size:size + 2] != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
        parts.append(bytes(buf[:size]))
        del buf[:size + 2]
    while True:  # trailer lines up to the empty line
        end = buf.find(b"\r\n")
        while end < 0:
            if len(buf) > MAX_HEAD:
                raise ProtocolError("trailers larger than 64 KiB")
            _more(recv, buf)
            end = buf.find(b"\r\n")
        empty = end == 0
        del buf[:end + 2]
        if empty:
            return b"".join(parts), bytes(buf)


def _more(recv, buf: bytearray) -> None:
    chunk = recv(RECV)
    if not chunk:
        raise ProtocolError("connection closed in a chunked body")
    buf += chunk
