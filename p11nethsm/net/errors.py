"""Transport errors of the network layer: what went wrong below HTTP, and in which phase.

`InstancePool.exchange()` (net.pool) raises `ExchangeError` for a request that got no usable
answer; its `phase` says whether the request can have reached the server:

* CONNECT (TCP connect, TLS handshake, pin check) and SEND (writing the request): surely not processed;
* READ (waiting for / reading the answer): the server may have processed it.

An answer bigger than the size limit is `BodyTooLarge`, a malformed one `ProtocolError` (both
raised by net.http11, defined here so that importing the errors does not load the HTTP code).
The api layer maps these to its NetHSM errors (p11nethsm.api.mapping). This module stays light
(no ssl, no urllib3): the layers above import it at start-up.
"""

from __future__ import annotations

import errno
from enum import Enum

__all__ = ["Phase", "ExchangeError", "BodyTooLarge", "ProtocolError", "describe_cause"]

_REFUSED_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})
# By name: ssl (and net.tls, which imports it) is loaded only once a connection is made.
_CERT_ERRORS = frozenset({"PinMismatch", "SSLCertVerificationError", "CertificateError"})


class ProtocolError(Exception):
    """The peer's bytes are not an HTTP/1.1 answer (raised by net.http11)."""


class BodyTooLarge(Exception):
    """The answer is bigger than the size limit (not read further)."""


class Phase(Enum):
    CONNECT = "connect"
    SEND = "send"
    READ = "read"

    @property
    def maybe_processed(self) -> bool:
        return self is Phase.READ


class ExchangeError(Exception):
    """A request got no usable HTTP answer; `phase` tells whether it can have been processed."""

    def __init__(self, phase: Phase, cause: BaseException):
        super().__init__(f"{phase.value}: {describe_cause(cause)}")
        self.phase = phase
        self.cause = cause

    @property
    def refused(self) -> bool:
        """The instance refused the connection at once (port closed, host unreachable, reset):
        nothing was sent and no time was spent."""
        if self.phase is not Phase.CONNECT:
            return False
        return any(isinstance(e, (ConnectionRefusedError, ConnectionResetError))
                   or getattr(e, "errno", None) in _REFUSED_ERRNOS for e in _causes(self.cause, 5))

    @property
    def certificate(self) -> bool:
        """The instance's certificate failed verification or pinning."""
        return any(not _CERT_ERRORS.isdisjoint(c.__name__ for c in type(e).__mro__)
                   for e in _causes(self.cause, 8))


def _causes(exc: BaseException | None, most: int):
    """`exc` and what it wraps (urllib3 wraps the OSError; ssl errors carry one in args[0])."""
    seen = 0
    while exc is not None and seen < most:
        yield exc
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc, seen = exc.__cause__ or exc.__context__ or inner, seen + 1


def describe_cause(exc: BaseException) -> str:
    """A short text for a low-level error (no request bodies are ever in these)."""
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return "timed out"
    inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
    text = str(exc) or type(exc).__name__
    if inner is not None and not str(inner) in text:
        text = f"{text}: {inner}"
    return f"{type(exc).__name__}: {text}"
