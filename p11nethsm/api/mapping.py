"""Failed attempts -> errors of p11nethsm.api.errors: the one place where a transport failure of
p11nethsm.net (ExchangeError) or an HTTP error answer becomes a NetHSMError, with its log line
and metrics. Each error carries instance, method, path, status and the server's JSON "message"
(cut to 200 characters), never a request body (bodies hold PINs and key material).

Also the 401 throttle: after a 401 the NetHSM answers 429 to the same user for about a second
(docs/nethsm-behaviour.md §4.2), so the next call of that user waits that long first.
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import unquote

from p11nethsm.api.errors import (
    BadResponse,
    KeyUseForbidden,
    NetHSMError,
    TLSVerificationError,
    TransportError,
    error_for_status,
)
from p11nethsm.api.validate import JSON
from p11nethsm.log import logger
from p11nethsm.net.failover import Response
from p11nethsm.net.errors import ExchangeError

__all__ = ["ErrorMapping", "THROTTLE_SECONDS"]

THROTTLE_SECONDS = 1.05  # after a 401, the device answers 429 to the same user for 1 s
_MESSAGE_MAX = 200  # server messages are cut to this length in errors and logs
_KEY_USE = re.compile(r"^/keys/([^/?]+)/(?:sign|decrypt|encrypt)$")


class ErrorMapping:
    """The net.failover.ErrorMapper of one slot: builds, logs and counts the errors."""

    def __init__(self, label: str, metrics=None):
        self.label = label
        self._metrics = metrics  # p11nethsm.metrics.Metrics, or None
        self.last_401: dict[str, float] = {}  # username -> monotonic time of its last 401

    def transport(self, instance: str, method: str, path: str, exc: ExchangeError) -> TransportError:
        cls = TLSVerificationError if exc.certificate else TransportError
        err = cls(str(exc), instance=instance, method=method, path=path)
        err.__cause__ = exc.cause
        if self._metrics is not None:
            self._metrics.error(self.label, instance, "tls" if cls is TLSVerificationError else "transport")
        logger.warning("{} {}{}: no answer ({})", method, instance, path, exc, kind="request", instance=instance,
                       method=method, path=path, status=None, reason=str(exc))
        return err

    def answer(self, response: Response, method: str, path: str, creds) -> NetHSMError:
        """The error of an answer with an error status (`creds`: who asked, or None)."""
        instance, status = response.instance, response.status
        message = _server_message(response)
        if status == 401 and creds is not None:
            self.last_401[creds.username] = time.monotonic()
        if self._metrics is not None:
            self._metrics.error(self.label, instance, f"http_{status}")
        use = _KEY_USE.match(path) if status == 403 and method == "POST" else None
        if use:
            key_id, user = unquote(use.group(1)), creds.username if creds else "?"
            logger.warning("key {!r} may not be used by user {!r}: {} {}{} -> 403{} (key restriction tags)",
                           key_id, user, method, instance, path, f": {message}" if message else "")
            return KeyUseForbidden(f"HTTP {status}", instance=instance, method=method, path=path, status=status,
                                   server_message=message, key_id=key_id, user=user)
        err = error_for_status(status)(f"HTTP {status}", instance=instance, method=method, path=path,
                                       status=status, server_message=message)
        level = "WARNING" if status >= 500 or status in (412, 429) else "INFO" if status in (401, 403) else "DEBUG"
        logger.log(level, "{} {}{} -> {}{}", method, instance, path, status, f": {message}" if message else "",
                   kind="request", instance=instance, method=method, path=path, status=status, reason=message)
        return err

    def bad(self, instance: str, method: str, path: str, status: int | None, reason: str) -> BadResponse:
        if self._metrics is not None:
            self._metrics.error(self.label, instance, "bad_response")
        logger.error("{} {}{} -> {}: bad response: {}", method, instance, path, status, reason)
        return BadResponse(reason, instance=instance, method=method, path=path, status=status)

    def respect_throttle(self, username: str) -> None:
        """Wait out the NetHSM's 1 s throttle after a 401 of this user."""
        since = self.last_401.get(username)
        if since is None:
            return
        wait = since + THROTTLE_SECONDS - time.monotonic()
        if wait > 0:
            logger.debug("user {!r}: waiting {:.2f} s after a 401 (the NetHSM throttles for 1 s)", username, wait)
            time.sleep(wait)
        self.last_401.pop(username, None)


def _server_message(response: Response) -> str:
    """The "message" of a JSON error answer, cut short; "" if there is none."""
    data = response.body
    if not data or response.content_type.partition(";")[0].strip().lower() != JSON:
        return ""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return ""
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return parsed["message"][:_MESSAGE_MAX]
    return ""
