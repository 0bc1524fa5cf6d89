"""Errors of the NetHSM REST client, and the one table from HTTP status to CKR.

Transport errors are translated at one boundary (p11nethsm.net) into this tree. Each carries
the instance URL, method, path and status (never a request body: bodies can hold secrets).
Handlers that know better catch a specific class (e.g. NotFound -> KeyHandleInvalid);
anything else is mapped by `ckr_for()`.
"""

from __future__ import annotations

from p11nethsm.ck.constants import CKR


class NetHSMError(Exception):
    """Base of every error from talking to a NetHSM."""

    status: int | None = None
    # Set by the retry policy: the last attempt may have been processed by the NetHSM (read
    # timeout, connection lost while waiting, 5xx), so the call's effect is unknown.
    outcome_unknown: bool = False
    attempts: int = 1  # requests sent for the call (API requests, not health checks)

    def __init__(self, message: str = "", *, instance: str = "", method: str = "",
                 path: str = "", status: int | None = None, server_message: str = ""):
        super().__init__(message)
        self.instance = instance
        self.method = method
        self.path = path
        if status is not None:
            self.status = status
        self.server_message = server_message

    def describe(self) -> str:
        where = f"{self.method} {self.instance}{self.path}".strip()
        status = f" -> {self.status}" if self.status is not None else ""
        msg = f": {self.server_message}" if self.server_message else ""
        return f"{where}{status}{msg} ({self.args[0] if self.args and self.args[0] else type(self).__name__})"


# Transport: no (usable) HTTP answer.
class TransportError(NetHSMError):
    """No HTTP answer (connect refused, TLS failure, timeout), after retries."""


class TLSVerificationError(TransportError):
    """The instance's certificate failed verification or pinning."""


class BadResponse(NetHSMError):
    """An answer that is not what the API promises (garbage, wrong type, too big)."""


# HTTP status errors.
class HTTPStatusError(NetHSMError):
    """The NetHSM answered with an error status."""


def _status_error(name: str, status: int, doc: str, base: type[HTTPStatusError] = HTTPStatusError):
    return type(name, (base,), {"status": status, "__doc__": doc, "__module__": __name__, "__qualname__": name})


# One line per status the NetHSM answers with a meaning of its own (docs/nethsm-behaviour.md §8).
BadRequest = _status_error("BadRequest", 400, "400: malformed, or not possible as asked.")
Unauthorized = _status_error("Unauthorized", 401, "401: wrong user or password.")
Forbidden = _status_error("Forbidden", 403, "403: the user's role may not do this.")
NotFound = _status_error("NotFound", 404, "404: no such key, user or certificate.")
NotAcceptable = _status_error("NotAcceptable", 406, "406: no answer in the media type asked for.")
Conflict = _status_error("Conflict", 409, "409: exists already.")
PreconditionFailed = _status_error(
    "PreconditionFailed", 412, "412: the NetHSM is not Operational (Locked/Unprovisioned): the token is not present.")
UnsupportedMediaType = _status_error("UnsupportedMediaType", 415, "415: request body of the wrong media type.")
TooManyRequests = _status_error("TooManyRequests", 429, "429: failed-login throttle.")
ServerError = _status_error("ServerError", 500, "5xx.")


class KeyUseForbidden(Forbidden):
    """403 on sign/decrypt/encrypt: the key's restriction tags do not allow this operator."""

    def __init__(self, *args, key_id: str = "", user: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.key_id = key_id
        self.user = user


BY_STATUS: dict[int, type[HTTPStatusError]] = {
    cls.status: cls
    for cls in (BadRequest, Unauthorized, Forbidden, NotFound, NotAcceptable, Conflict,
                PreconditionFailed, UnsupportedMediaType, TooManyRequests)
}


def error_for_status(status: int) -> type[HTTPStatusError]:
    if status >= 500:
        return ServerError
    return BY_STATUS.get(status, HTTPStatusError)


# The one table HTTP error -> CKR (default for a call that has no more specific meaning).
CKR_BY_ERROR: dict[type[NetHSMError], CKR] = {
    PreconditionFailed: CKR.TOKEN_NOT_PRESENT,  # DEVICE_REMOVED when a session is open (dispatcher)
    Unauthorized: CKR.USER_NOT_LOGGED_IN,  # PIN_INCORRECT while logging in (handler)
    KeyUseForbidden: CKR.KEY_FUNCTION_NOT_PERMITTED,  # key restriction tags exclude the operator
    Forbidden: CKR.USER_NOT_LOGGED_IN,  # wrong role for the call
    NotFound: CKR.OBJECT_HANDLE_INVALID,  # KEY_HANDLE_INVALID in crypto inits (handler)
    TooManyRequests: CKR.PIN_LOCKED,
    BadRequest: CKR.FUNCTION_FAILED,
    Conflict: CKR.FUNCTION_FAILED,
    ServerError: CKR.DEVICE_ERROR,
    TransportError: CKR.DEVICE_ERROR,
    BadResponse: CKR.DEVICE_ERROR,
    HTTPStatusError: CKR.DEVICE_ERROR,
    NetHSMError: CKR.DEVICE_ERROR,
}


def ckr_for(exc: NetHSMError) -> CKR:
    for cls in type(exc).__mro__:
        if cls in CKR_BY_ERROR:
            return CKR_BY_ERROR[cls]
    return CKR.DEVICE_ERROR
