"""TLS policy of one instance: system trust, private CA (`ca_file`), pinned leaf, or none.

The four modes, decided once per instance (never per request):

| config                    | chain / hostname checked by | leaf pinned |
|---------------------------|-----------------------------|-------------|
| (default)                 | ssl, system trust store     | no          |
| `ca_file`                 | ssl, that bundle only       | no          |
| `sha256_fingerprints`     | nobody (self-signed device) | yes, any of the list (`pin_matches`) |
| `danger_insecure_cert`    | nobody (warning at start)   | no          |

Pinning runs right after the handshake in `p11nethsm.net.pool.NetHSMConnection.connect`, before any
byte of a request is written, so a mismatch is a "surely not sent" failure.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time
from enum import Enum

from p11nethsm.config.model import InstanceConfig
from p11nethsm.forksafe import native_section


class TLSMode(Enum):
    SYSTEM = "system trust store"
    CA_FILE = "ca_file"
    PINNED = "sha256_fingerprints"
    INSECURE = "danger_insecure_cert"


def tls_mode(inst: InstanceConfig) -> TLSMode:
    if inst.danger_insecure_cert:
        return TLSMode.INSECURE
    if inst.sha256_fingerprints:
        return TLSMode.PINNED
    if inst.ca_file:
        return TLSMode.CA_FILE
    return TLSMode.SYSTEM


class PinMismatch(ssl.SSLError):
    """The leaf certificate matches none of the configured SHA-256 fingerprints."""

    def __init__(self, instance: str, got: bytes, expected: tuple[bytes, ...]):
        self.instance = instance
        self.got = got
        self.expected = expected
        super().__init__(
            f"certificate fingerprint mismatch for {instance}: got {format_fingerprint(got)}, "
            f"expected {' or '.join(format_fingerprint(e) for e in expected)}")

    def __reduce__(self):  # picklable despite the keyword-less signature of SSLError
        return (type(self), (self.instance, self.got, self.expected))


def format_fingerprint(digest: bytes) -> str:
    """`31:92:8E:...` as in the config file."""
    return ":".join(f"{b:02X}" for b in digest)


def parse_fingerprint(text: str) -> bytes:
    """Inverse of `format_fingerprint` (colons optional, any case); ValueError if not 32 bytes."""
    raw = bytes.fromhex(text.replace(":", "").strip())
    if len(raw) != 32:
        raise ValueError(f"a SHA-256 fingerprint has 32 bytes, got {len(raw)}")
    return raw


def pin_matches(der: bytes, pins: tuple[bytes, ...]) -> tuple[bool, bytes]:
    """(any pin equals SHA-256(der), that digest); constant-time compare against every pin."""
    digest = hashlib.sha256(der).digest()
    ok = False
    for pin in pins:
        ok |= hmac.compare_digest(digest, pin)
    return ok, digest


class SectionSSLSocket(ssl.SSLSocket):
    """An SSLSocket whose handshake is a fork-safety section (p11nethsm.forksafe)."""

    def do_handshake(self, *args, **kwargs):
        with native_section():
            return super().do_handshake(*args, **kwargs)


_monotonic = time.monotonic
_recv_into = ssl.SSLSocket.recv_into
_recv = ssl.SSLSocket.recv
_send = ssl.SSLSocket.send
_sendall = ssl.SSLSocket.sendall


class DeadlineSSLSocket(SectionSSLSocket):
    """An SSLSocket whose reads and writes end at `deadline` (monotonic seconds), if set.

    A socket timeout only bounds each read, so a peer dripping one byte (or one TLS record) per
    second would keep a call alive forever. Before each recv/send the socket timeout is set to
    what is left until the deadline (a C call; an answer takes one or two reads), and
    past it the read fails as a timeout. `deadline` is set per exchange by p11nethsm.net.pool;
    None (no `timeout_seconds`) costs one attribute test. Its handshake is a fork-safety section
    (SectionSSLSocket).
    """

    deadline: float | None = None

    def _bound(self) -> None:
        left = self.deadline - _monotonic()
        if left <= 0:
            raise TimeoutError("timed out (deadline of the call)")
        self.settimeout(left)

    def recv(self, buflen=1024, flags=0):
        if self.deadline is not None:
            self._bound()
        sslobj = self._sslobj
        if sslobj is None or flags:
            return _recv(self, buflen, flags)
        try:  # SSLSocket.recv -> read -> _sslobj.read, without the two Python frames between
            return sslobj.read(buflen)
        except ssl.SSLError as exc:
            if exc.args[0] == ssl.SSL_ERROR_EOF and self.suppress_ragged_eofs:
                return b""
            raise

    def sendall(self, data, flags=0):
        if self.deadline is not None:
            self._bound()
        sslobj = self._sslobj
        if sslobj is None or flags:
            return _sendall(self, data, flags)
        sent = sslobj.write(data)  # blocking: all of it, unless OpenSSL wrote part of it
        if sent < len(data):
            _sendall(self, memoryview(data)[sent:], flags)

    def recv_into(self, buffer, nbytes=None, flags=0):
        if self.deadline is not None:
            self._bound()
        return _recv_into(self, buffer, nbytes, flags)

    def send(self, data, flags=0):
        if self.deadline is not None:
            self._bound()
        return _send(self, data, flags)


def make_ssl_context(inst: InstanceConfig) -> ssl.SSLContext:
    """The client context of one instance (built once, shared by all its connections). Loading the
    trust store and every handshake are fork-safety sections (p11nethsm.forksafe)."""
    mode = tls_mode(inst)
    with native_section():
        if mode is TLSMode.CA_FILE:
            ctx = ssl.create_default_context(cafile=inst.ca_file)
        elif mode is TLSMode.SYSTEM:
            ctx = ssl.create_default_context()
        else:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # PINNED: checked after the handshake by pin_matches
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.sslsocket_class = DeadlineSSLSocket
    return ctx
