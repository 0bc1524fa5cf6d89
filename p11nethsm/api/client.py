"""Typed client of the NetHSM REST API (one `NetHSM` per slot = one NetHSM cluster).

Every call goes through `NetHSM._request`: pick an instance (round robin over the reachable ones),
one exchange on its pool (p11nethsm.net.pool), then either return, fail over / retry as the
immutable `RetryPolicy` allows (p11nethsm.net.retry), or raise an error of p11nethsm.api.errors
carrying instance, method, path, status and the server's JSON "message". Request bodies (PINs,
key material) never appear in errors or logs. Responses are validated strictly: anything not as
the API promises is `BadResponse` (with a log line), never a stray KeyError/TypeError/ValueError.

Idempotency (what a retry after a maybe-processed failure would do):

| call | request | safe to repeat? |
|---|---|---|
| health_state, info, system_info, get_user, list_keys, get_key, public_pem, get_cert | GET | yes: no effect |
| sign, decrypt, encrypt, random | POST | yes: the device keeps no result, only an `operations` counter moves |
| set_passphrase | POST /users/{id}/passphrase | yes: sets the same value again |
| import_key | PUT /keys/{id} (id chosen here if the caller gives none) | yes: a repeat gets 400/409 "exists", resolved by GET /keys/{id} |
| put_cert | PUT /keys/{id}/cert | yes: a repeat gets 409, treated as done after an unknown outcome |
| delete_key, delete_cert | DELETE | yes: a repeat gets 404, treated as done after an unknown outcome |
| generate_key | POST /keys/generate, id chosen here if none given | **no**: an unknown outcome is resolved by GET /keys/{id}, never by generating again |
| move_key | POST /keys/{id}/move | **no**: an unknown outcome is resolved by GET /keys/{new_id} |

A request that surely did not reach the server (connect refused, TLS failure, send error, 412) is
retried on the next instance whatever the call.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import quote, unquote

from p11nethsm.log import logger

from p11nethsm import logflags
from p11nethsm.api.errors import (
    BadRequest,
    BadResponse,
    Conflict,
    HTTPStatusError,
    KeyUseForbidden,
    NetHSMError,
    NotFound,
    TLSVerificationError,
    TransportError,
    error_for_status,
)
from p11nethsm.config.model import SlotConfig

__all__ = ["Credentials", "NetHSM", "new_key_id"]

JSON = "application/json"
PEM = "application/x-pem-file"
OCTETS = "application/octet-stream"
RANDOM_CHUNK = 1024  # the device's limit per /random request
CALL_SLACK = 3.0  # seconds beyond (retries.count + 1) * timeout_seconds that one API call may take
THROTTLE_SECONDS = 1.05  # after a 401, the device answers 429 to the same user for 1 s (notes §4.2)
_MESSAGE_MAX = 200  # server messages are cut to this length in errors and logs

_monotonic = time.monotonic
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?:~[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?")
_KEY_USE = re.compile(r"^/keys/([^/?]+)/(?:sign|decrypt|encrypt)$")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

# Header sets by kind: what we send (Content-Type) and accept; encoded once as the CRLF-ended
# header lines of the request (p11nethsm.net.http11).
_KINDS: dict[str, bytes] = {
    kind: b"".join(f"{k}: {v}\r\n".encode("ascii") for k, v in {"User-Agent": "p11nethsm", **hdrs}.items())
    for kind, hdrs in {
        "get": {"Accept": "*/*"},
        "json": {"Accept": "*/*", "Content-Type": JSON},
        "pem": {"Accept": PEM},
        "octets": {"Accept": OCTETS},
        "put_octets": {"Accept": "*/*", "Content-Type": OCTETS},
    }.items()
}


def new_key_id() -> str:
    """A key id like the device's own: 10 random bytes as 20 lowercase hex chars."""
    return secrets.token_hex(10)


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never logged
    # The encoded request header lines of this user by kind (Basic auth included), built at
    # construction: a cached_property takes a class-wide lock on 3.11, and a fork while another
    # thread holds it left the child hung at its first request.
    headers: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        auth = b"Authorization: Basic " + token.encode("ascii") + b"\r\n"
        object.__setattr__(self, "headers", {kind: auth + lines for kind, lines in _KINDS.items()})


class _Invalid(Exception):
    """A response that is not what the API promises (turned into BadResponse by the caller)."""


def _seg(value: str, pattern: re.Pattern[str]) -> str:
    """A path segment: ids as the device allows them go as they are, anything else is quoted."""
    if type(value) is str and pattern.fullmatch(value):  # noqa: E721 (exact str only)
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"invalid id {value!r}")
    return quote(value, safe="~")


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64d(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise _Invalid(f"{what}: expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Invalid(f"{what}: invalid base64") from None


def _obj(value: Any) -> dict:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a JSON object, got {type(value).__name__}")
    return value


def _str(obj: dict, name: str, *, optional: bool = False) -> str | None:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{name!r}: expected a string, got {type(value).__name__}")
    return value


def _field_b64(obj: Any, name: str) -> bytes:
    return _b64d(_obj(obj).get(name), name)


def _check_key(obj: Any) -> dict:
    obj = _obj(obj)
    _str(obj, "type")
    mechs = obj.get("mechanisms")
    if not isinstance(mechs, list) or not all(isinstance(m, str) for m in mechs):
        raise _Invalid("'mechanisms': expected a list of strings")
    ops = obj.get("operations", 0)
    if not isinstance(ops, int) or isinstance(ops, bool):
        raise _Invalid("'operations': expected an integer")
    restrictions = obj.get("restrictions", {})
    if restrictions is None:
        restrictions = {}
    if not isinstance(restrictions, dict):
        raise _Invalid("'restrictions': expected an object")
    tags = restrictions.get("tags", [])
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) for t in tags)):
        raise _Invalid("'restrictions.tags': expected a list of strings")
    public = obj.get("public")
    if public is not None:
        if not isinstance(public, dict):
            raise _Invalid("'public': expected an object")
        for name, value in public.items():
            _b64d(value, f"public.{name}")
    _str(obj, "label", optional=True)
    return obj


def _check_ids(value: Any) -> list[str]:
    """GET /keys: the key ids. An entry that is not {"id": <non-empty printable string>}, or repeats one,
    is skipped with a warning naming it (one bad entry must not hide every key)."""
    if not isinstance(value, list):
        raise _Invalid(f"expected a JSON list, got {type(value).__name__}")
    ids: list[str] = []
    seen: set[str] = set()
    for item in value:
        kid = item.get("id") if isinstance(item, dict) else None
        if type(kid) is str and kid and len(kid) <= 255 and kid.isprintable() and kid not in seen:  # noqa: E721
            seen.add(kid)
            ids.append(kid)
        else:
            why = "repeated" if type(kid) is str and kid in seen else "no usable key id (a non-empty printable string)"
            logger.warning("GET /keys: entry {} skipped: {}", _brief(item), why)
    return ids


def _brief(item: Any) -> str:
    text = json.dumps(item, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_user(obj: Any) -> dict:
    obj = _obj(obj)
    _str(obj, "realName")
    _str(obj, "role")
    return obj


def _check_strings(obj: Any) -> dict:
    obj = _obj(obj)
    for k, v in obj.items():
        if not isinstance(v, str):
            raise _Invalid(f"{k!r}: expected a string, got {type(v).__name__}")
    return obj


def _refused(exc) -> bool:
    """The instance refused the connection at once (port closed, host unreachable, reset)."""
    if exc.phase.value != "connect":
        return False
    cause, seen = exc.cause, 0
    while cause is not None and seen < 5:  # urllib3 wraps the OSError (NewConnectionError)
        if isinstance(cause, (ConnectionRefusedError, ConnectionResetError)):
            return True
        if getattr(cause, "errno", None) in _REFUSED_ERRNOS:
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


_REFUSED_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH})


def _is_cert_error(exc: BaseException | None) -> bool:
    import ssl  # noqa: PLC0415

    from p11nethsm.net.tls import PinMismatch  # noqa: PLC0415

    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (PinMismatch, ssl.SSLCertVerificationError)) or type(exc).__name__ == "CertificateError":
            return True
        inner = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None
        exc = exc.__cause__ or exc.__context__ or inner
        seen += 1
    return False


class NetHSM:
    """The REST client of one slot. Thread-safe; no network I/O until the first call."""

    def __init__(self, slot: SlotConfig, *, threads: bool):
        from p11nethsm.net.instances import Instance, InstanceSet  # noqa: PLC0415
        from p11nethsm.net.retry import RetryPolicy  # noqa: PLC0415

        self.slot = slot
        self.threads = threads
        self._instances = InstanceSet(tuple(Instance(cfg, slot) for cfg in slot.instances))
        self._policies = {True: RetryPolicy.from_config(slot.retries, idempotent=True),
                          False: RetryPolicy.from_config(slot.retries, idempotent=False)}
        # The documented worst case of one API call: (retries.count + 1) * timeout_seconds + 3 s.
        # Each attempt ends timeout_seconds after it starts (connect, send and read together), and
        # nothing of the call (retry delays, inline health checks) runs past the whole budget.
        t = slot.timeout_seconds
        self._timeout = t if t and math.isfinite(t) and t > 0 else None
        self._budget = ((self._policies[True].remaining + 1) * self._timeout + CALL_SLACK
                        if self._timeout else None)
        self._last_401: dict[str, float] = {}
        self._checker = None
        self._checker_lock = threading.Lock()
        self._closed = False
        from p11nethsm import metrics  # noqa: PLC0415

        self._metrics = metrics.current()  # None unless metrics_file is configured

    def __repr__(self) -> str:
        return f"NetHSM({self.slot.label!r}, {list(self._instances.all)})"

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        """{instance url: InstanceStats} (requests sent, connections opened, failures...)."""
        return {inst.name: inst.stats for inst in self._instances.all}

    @property
    def instances(self):
        return self._instances.all

    def close(self) -> None:
        self._closed = True
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.stop()
        for inst in self._instances.all:
            inst.close()

    def drop_after_fork(self) -> None:
        """In a forked child: forget pools and the health thread, touching no socket."""
        from p11nethsm.net.instances import Instance, InstanceSet  # noqa: PLC0415

        for inst in self._instances.all:
            inst.forget_pool()
        self._instances = InstanceSet(tuple(Instance(cfg, self.slot) for cfg in self.slot.instances))
        self._checker = None
        self._checker_lock = threading.Lock()
        self._last_401 = {}

    # ---- the request loop ------------------------------------------------------------------

    def _request(self, method: str, path: str, creds: Credentials | None, kind: str,
                 body=None, *, idempotent: bool = True, recovers: bool = True):
        """One API call with failover and retries: (status, content type, body, instance).
        `body`: bytes, or a function of the chosen instance's Capabilities returning them (a
        request built for the firmware that receives it)."""
        from p11nethsm.net.pool import BodyTooLarge, ExchangeError  # noqa: PLC0415

        headers = creds.headers[kind] if creds is not None else _KINDS[kind]
        timeout = self._timeout
        end = _monotonic() + self._budget if timeout else None  # the call's deadline
        if creds is not None and self._last_401:
            self._respect_throttle(creds.username)
        policy = self._policies[idempotent]
        inline = 0 if self.threads else 3
        locked: set[str] | None = None  # instances that answered 412 during this call
        while True:
            if inline:
                inline = self._inline_checks(inline)
            inst = self._instances.pick()
            deadline = min(_monotonic() + timeout, end) if timeout else None
            try:
                data = body(self._caps_of(inst)) if callable(body) else body  # built for this firmware
                started = _monotonic()
                status, ctype, data = inst.pool.exchange(method, inst.base + path, data, headers,
                                                         deadline=deadline)
            except ExchangeError as exc:
                err = self._transport_error(inst, method, path, exc)
                if _refused(exc) and self._instances.any_usable_but(inst):
                    # Nothing was sent and no time was spent: going to the next member of the
                    # cluster is failover, not a retry (one node down must not fail calls).
                    if self._metrics is not None:
                        self._metrics.failover(self.slot.label, inst.name)
                    inst.mark_failed(str(exc))
                    self._kick_checker()
                    continue
                policy = self._failed(inst, policy, err, exc.phase.maybe_processed, end)
                continue
            except BodyTooLarge:
                raise self._bad(inst.name, method, path, None, "answer larger than the size limit") from None
            if self._metrics is not None:
                self._metrics.request(self.slot.label, inst.name, _monotonic() - started)
            if status < 300:
                if recovers and not inst.usable:
                    inst.mark_recovered()
                if logflags.DEBUG:
                    _log_request(method, inst.name, path, status, _monotonic() - started)
                    if logflags.TRACE:  # sizes and types only: bodies can hold secrets
                        logger.trace("{} {}{}: {} bytes of {} answered", method, inst.name, path, len(data),
                                     ctype or "no content type")
                return status, ctype, data, inst.name
            err = self._status_error(inst.name, method, path, status, ctype, data, creds)
            if status == 412 or status >= 500:
                if status == 412:
                    locked = locked or set()
                    locked.add(inst.name)
                    if len(locked) == len(self._instances):
                        inst.mark_failed("412")
                        self._kick_checker()
                        err.attempts = len(policy.history) + 1
                        raise err
                policy = self._failed(inst, policy, err, status >= 500, end)
                continue
            err.outcome_unknown = any(f.maybe_processed for f in policy.history)
            err.attempts = len(policy.history) + 1
            raise err

    def _failed(self, inst, policy, err: NetHSMError, maybe_processed: bool, end: float | None):
        """Mark the instance, then the next policy (raises when the call must stop: retries used
        up, or the call's deadline `end` reached)."""
        from p11nethsm.net.retry import Failure  # noqa: PLC0415

        inst.mark_failed(f"{err.status}" if err.status else str(err.args[0] if err.args else err))
        self._kick_checker()
        if self._metrics is not None:
            self._metrics.retry(self.slot.label, inst.name)
            if self._instances.any_usable_but(inst):
                self._metrics.failover(self.slot.label, inst.name)
        if end is not None and _monotonic() >= end:
            policy = policy.out_of_time()
        policy = policy.increment(Failure(inst.name, err, maybe_processed))
        if policy.delay and not self._instances.any_usable():
            delay = policy.jittered_delay()  # hosts that failed together do not retry together
            time.sleep(delay if end is None else max(0.0, min(delay, end - _monotonic())))
        return policy

    def _inline_checks(self, budget: int) -> int:
        from p11nethsm.net.health import inline_checks  # noqa: PLC0415

        for inst in self._instances.all:
            if not inst.usable:
                return budget - inline_checks(self._instances, budget)
        return budget

    def _kick_checker(self) -> None:
        if not self.threads or self._closed:
            return
        checker = self._checker
        if checker is None:
            from p11nethsm.net.health import HealthChecker  # noqa: PLC0415

            with self._checker_lock:
                if self._checker is None:
                    self._checker = HealthChecker(self._instances, self.slot.timeout_seconds)
                checker = self._checker
        checker.notify()

    def _respect_throttle(self, username: str) -> None:
        since = self._last_401.get(username)
        if since is None:
            return
        wait = since + THROTTLE_SECONDS - time.monotonic()
        if wait > 0:
            logger.debug("user {!r}: waiting {:.2f} s after a 401 (the NetHSM throttles for 1 s)", username, wait)
            time.sleep(wait)
        self._last_401.pop(username, None)

    # ---- errors ----------------------------------------------------------------------------

    def _transport_error(self, inst, method: str, path: str, exc) -> TransportError:
        cls = TLSVerificationError if _is_cert_error(exc.cause) else TransportError
        err = cls(str(exc), instance=inst.name, method=method, path=path)
        err.__cause__ = exc.cause
        if self._metrics is not None:
            self._metrics.error(self.slot.label, inst.name, "tls" if cls is TLSVerificationError else "transport")
        logger.warning("{} {}{}: no answer ({})", method, inst.name, path, exc, kind="request", instance=inst.name,
                       method=method, path=path, status=None, reason=str(exc))
        return err

    def _status_error(self, instance: str, method: str, path: str, status: int, ctype: str,
                      data: bytes, creds: Credentials | None) -> NetHSMError:
        message = ""
        if data and ctype.partition(";")[0].strip().lower() == JSON:
            try:
                parsed = json.loads(data)
            except (ValueError, RecursionError):
                parsed = None
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                message = parsed["message"][:_MESSAGE_MAX]
        if status == 401 and creds is not None:
            self._last_401[creds.username] = time.monotonic()
        if self._metrics is not None:
            self._metrics.error(self.slot.label, instance, f"http_{status}")
        if status == 403 and method == "POST" and _KEY_USE.match(path):
            key_id, user = unquote(_KEY_USE.match(path).group(1)), creds.username if creds else "?"
            logger.warning("key {!r} may not be used by user {!r}: {} {}{} -> 403{} (key restriction tags)",
                           key_id, user, method, instance, path, f": {message}" if message else "")
            return KeyUseForbidden(f"HTTP {status}", instance=instance, method=method, path=path, status=status,
                                   server_message=message, key_id=key_id, user=user)
        cls = error_for_status(status)
        err = cls(f"HTTP {status}", instance=instance, method=method, path=path, status=status,
                  server_message=message)
        level = "WARNING" if status >= 500 or status in (412, 429) else "INFO" if status in (401, 403) else "DEBUG"
        logger.log(level, "{} {}{} -> {}{}", method, instance, path, status, f": {message}" if message else "",
                   kind="request", instance=instance, method=method, path=path, status=status, reason=message)
        return err

    def _bad(self, instance: str, method: str, path: str, status: int | None, reason: str) -> BadResponse:
        if self._metrics is not None:
            self._metrics.error(self.slot.label, instance, "bad_response")
        logger.error("{} {}{} -> {}: bad response: {}", method, instance, path, status, reason)
        return BadResponse(reason, instance=instance, method=method, path=path, status=status)

    def _parse(self, result, method: str, path: str, check: Callable[[Any], Any], *,
               media: str = JSON) -> Any:
        """Decode and validate an answer; anything unexpected becomes BadResponse."""
        status, ctype, data, instance = result
        try:
            if ctype != media and ctype.partition(";")[0].strip().lower() != media:
                raise _Invalid(f"content type {ctype[:60]!r}, expected {media}")
            if media != JSON:
                return check(data)
            try:
                value = json.loads(data)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                raise _Invalid(f"invalid JSON ({type(exc).__name__})") from None
            return check(value)
        except _Invalid as exc:
            raise self._bad(instance, method, path, status, str(exc)) from None

    # ---- no auth ---------------------------------------------------------------------------

    def health_state(self) -> str:
        r = self._request("GET", "/health/state", None, "get", recovers=False)
        return self._parse(r, "GET", "/health/state", lambda o: _str(_obj(o), "state"))

    def info(self) -> dict:
        r = self._request("GET", "/info", None, "get", recovers=False)
        return self._parse(r, "GET", "/info", _check_strings)

    def diagnose(self) -> dict | None:
        """GET /health/diagnose without credentials (5.0; open outside Operational): the
        HealthDiagnoseData, or None where there is none (older firmware, Operational)."""
        try:
            r = self._request("GET", "/health/diagnose", None, "get", recovers=False)
        except HTTPStatusError:
            return None
        return self._parse(r, "GET", "/health/diagnose", _obj)

    # ---- firmware capabilities (p11nethsm.api.firmware) --------------------------------------

    def capabilities(self):
        """What the instance serving the next calls can do; detected once per instance. In a
        cluster of mixed firmware the next call may land elsewhere: requests whose form depends
        on it build their body per instance (`_request`), and a ?label= listing answered by older
        firmware lists every key (the template match still decides)."""
        return self._caps_of(self._instances.pick())

    def _caps_of(self, inst):
        caps = inst.caps
        if caps is None:
            caps = self._detect(inst)
        return caps

    def _detect(self, inst):
        from p11nethsm.api import firmware  # noqa: PLC0415
        from p11nethsm.net.pool import BodyTooLarge, ExchangeError  # noqa: PLC0415

        try:
            timeout = self.slot.timeout_seconds
            status, _, _ = inst.pool.exchange("GET", inst.base + "/health/diagnose", None, _KINDS["get"],
                                              deadline=_monotonic() + timeout if timeout else None)
        except (ExchangeError, BodyTooLarge) as exc:
            logger.debug("{}: firmware capabilities not detected ({})", inst.name, exc)
            return firmware.UNKNOWN
        caps = firmware.from_status(status)
        if caps is firmware.UNKNOWN:
            return caps
        others = {i.caps.api for i in self._instances.all if i is not inst and i.caps is not None}
        inst.caps = caps
        if others and caps.api not in others:
            logger.warning("{}: serves the NetHSM {} API, other members {}: features follow the instance",
                           inst.name, caps.api, ", ".join(sorted(others)))
        else:
            logger.info("{}: NetHSM {} API (key labels: {}, GET /keys?label=: {})", inst.name, caps.api,
                        "yes" if caps.labels else "no", "yes" if caps.label_query else "no")
        return caps

    # ---- Basic auth ------------------------------------------------------------------------

    def system_info(self, creds: Credentials) -> dict:
        r = self._request("GET", "/system/info", creds, "get")
        return self._parse(r, "GET", "/system/info", _obj)

    def get_user(self, creds: Credentials, user_id: str) -> dict:
        path = f"/users/{_seg(user_id, _USER_ID)}"
        return self._parse(self._request("GET", path, creds, "get"), "GET", path, _check_user)

    def set_passphrase(self, creds: Credentials, user_id: str, passphrase: str) -> None:
        path = f"/users/{_seg(user_id, _USER_ID)}/passphrase"
        self._request("POST", path, creds, "json", _encode({"passphrase": passphrase}).encode())

    def list_keys(self, creds: Credentials, *, label: str | None = None, usable: bool = False) -> list[str]:
        """GET /keys; `label`: only keys with that label (5.0: ?label=); `usable`: only keys the
        (operator) caller may use under key restriction tags (?filter=)."""
        query = []
        if usable:
            query.append("filter=1")
        if label is not None:
            query.append("label=" + quote(label, safe=""))
        path = "/keys?" + "&".join(query) if query else "/keys"
        return self._parse(self._request("GET", path, creds, "get"), "GET", path, _check_ids)

    def get_key(self, creds: Credentials, key_id: str) -> dict:
        path = f"/keys/{_seg(key_id, _KEY_ID)}"
        return self._parse(self._request("GET", path, creds, "get"), "GET", path, _check_key)

    def public_pem(self, creds: Credentials, key_id: str) -> bytes:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/public.pem"
        return self._parse(self._request("GET", path, creds, "pem"), "GET", path, _check_pem, media=PEM)

    def generate_key(self, creds: Credentials, *, key_type: str, mechanisms: list[str],
                     length: int | None = None, key_id: str | None = None, label: str | None = None) -> str:
        kid = key_id or new_key_id()
        body: dict[str, Any] = {"type": key_type, "mechanisms": list(mechanisms), "id": kid}
        if length is not None:
            body["length"] = length
        try:
            r = self._request("POST", "/keys/generate", creds, "json", _with_label(body, label), idempotent=False)
        except NetHSMError as exc:
            if not exc.outcome_unknown:
                raise
            return self._resolve_by_looking(creds, kid, exc, "generation")
        if r[0] == 201 or r[2]:
            got = self._parse(r, "POST", "/keys/generate", lambda o: _str(_obj(o), "id"))
            if got != kid:
                raise self._bad(r[3], "POST", "/keys/generate", r[0], f"created id {got!r}, asked for {kid!r}")
        return kid

    def import_key(self, creds: Credentials, *, key_id: str | None, key_type: str, mechanisms: list[str],
                   private: dict, label: str | None = None) -> str:
        kid = key_id or new_key_id()
        priv = {k: _b64e(v) if isinstance(v, (bytes, bytearray, memoryview)) else v for k, v in private.items()}
        body: dict[str, Any] = {"type": key_type, "mechanisms": list(mechanisms), "private": priv}
        path = f"/keys/{_seg(kid, _KEY_ID)}"
        try:
            self._request("PUT", path, creds, "json", _with_label(body, label))
        except (BadRequest, Conflict) as exc:
            if not exc.outcome_unknown:  # "already exists" only means "done" after an unknown outcome
                raise
            return self._resolve_by_looking(creds, kid, exc, "import")
        return kid

    def _resolve_by_looking(self, creds: Credentials, kid: str, exc: NetHSMError, what: str) -> str:
        logger.warning("key {}: outcome of the {} unknown ({}); looking it up", kid, what, exc.describe())
        # One look per cluster member: the member that took the request (marked unreachable by its
        # cut answer) may well be the one that can tell, while another is locked (chaos soak).
        for look in range(len(self._instances), 0, -1):
            try:
                self.get_key(creds, kid)
            except NotFound:
                exc.outcome_unknown = False
                logger.warning("key {}: the {} did not happen", kid, what)
                raise exc from None
            except NetHSMError as err:
                if look == 1:
                    raise exc from None
                logger.warning("key {}: looking it up failed ({}); looking again", kid, err.describe())
                continue
            break
        logger.info("key {}: the {} did happen", kid, what)
        return kid

    def delete_key(self, creds: Credentials, key_id: str) -> None:
        path = f"/keys/{_seg(key_id, _KEY_ID)}"
        try:
            self._request("DELETE", path, creds, "get")
        except NotFound as exc:
            if not exc.outcome_unknown:
                raise

    def move_key(self, creds: Credentials, key_id: str, new_id: str) -> str:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/move"
        try:
            r = self._request("POST", path, creds, "json", _encode({"newId": new_id}).encode(), idempotent=False)
        except NetHSMError as exc:
            if not exc.outcome_unknown:
                raise
            return self._resolve_by_looking(creds, new_id, exc, "move")
        if r[2]:
            got = self._parse(r, "POST", path, lambda o: _str(_obj(o), "id"))
            if got != new_id:
                raise self._bad(r[3], "POST", path, r[0], f"moved to {got!r}, asked for {new_id!r}")
        return new_id

    def set_label(self, creds: Credentials, key_id: str, label: str) -> None:
        """PUT /keys/{id}/label (firmware with key labels; 304 = already so). Idempotent."""
        path = f"/keys/{_seg(key_id, _KEY_ID)}/label"
        try:
            self._request("PUT", path, creds, "json", _encode({"label": label}).encode())
        except HTTPStatusError as exc:
            if exc.status != 304:
                raise

    def get_cert(self, creds: Credentials, key_id: str) -> bytes:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/cert"
        return self._parse(self._request("GET", path, creds, "octets"), "GET", path, bytes, media=OCTETS)

    def put_cert(self, creds: Credentials, key_id: str, data: bytes) -> None:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/cert"
        try:
            self._request("PUT", path, creds, "put_octets", bytes(data))
        except Conflict as exc:
            if not exc.outcome_unknown:
                raise

    def delete_cert(self, creds: Credentials, key_id: str) -> None:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/cert"
        try:
            self._request("DELETE", path, creds, "get")
        except NotFound as exc:
            if not exc.outcome_unknown:
                raise

    # ---- crypto (the hot path) -------------------------------------------------------------

    def sign(self, creds: Credentials, key_id: str, mode: str, message: bytes) -> bytes:
        path = _sign_path(key_id)
        body = b"%s%s\"}" % (_sign_prefix(mode), base64.b64encode(message))
        return self._parse(self._request("POST", path, creds, "json", body), "POST", path, _signature)

    def decrypt(self, creds: Credentials, key_id: str, mode: str, encrypted: bytes,
                iv: bytes | None = None) -> bytes:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/decrypt"
        req: dict[str, str] = {"mode": mode, "encrypted": _b64e(encrypted)}
        if iv is not None:
            req["iv"] = _b64e(iv)
        return self._parse(self._request("POST", path, creds, "json", _encode(req).encode()), "POST", path,
                           _decrypted)

    def encrypt(self, creds: Credentials, key_id: str, mode: str, message: bytes,
                iv: bytes | None = None) -> tuple[bytes, bytes]:
        path = f"/keys/{_seg(key_id, _KEY_ID)}/encrypt"
        req: dict[str, str] = {"mode": mode, "message": _b64e(message)}
        if iv is not None:
            req["iv"] = _b64e(iv)
        return self._parse(self._request("POST", path, creds, "json", _encode(req).encode()), "POST", path,
                           _encrypted)

    def random(self, creds: Credentials, length: int) -> bytes:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"random length must be >= 1, got {length!r}")
        out = []
        left = length
        while left:
            n = min(left, RANDOM_CHUNK)
            r = self._request("POST", "/random", creds, "json", _encode({"length": n}).encode())
            chunk = self._parse(r, "POST", "/random", _random_of(n))
            out.append(chunk)
            left -= n
        return b"".join(out)


def _log_request(method: str, instance: str, path: str, status: int, seconds: float) -> None:
    ms = seconds * 1000.0
    logger.debug("{} {}{} -> {} ({:.1f} ms)", method, instance, path, status, ms, kind="request",
                 instance=instance, method=method, path=path, status=status, ms=round(ms, 3))


def _with_label(body: dict, label: str | None):
    """The request body, with `label` for firmware that has key labels (or may have: unknown)."""
    plain = _encode(body).encode()
    if not label:
        return plain
    labelled = _encode({**body, "label": label}).encode()
    return lambda caps: plain if caps.labels is False else labelled


@lru_cache(maxsize=1024)
def _sign_path(key_id: str) -> str:
    return f"/keys/{_seg(key_id, _KEY_ID)}/sign"


@lru_cache(maxsize=64)
def _sign_prefix(mode: str) -> bytes:
    """`{"mode":"<mode>","message":"` as the JSON encoder writes it (the message is base64)."""
    return _encode({"mode": mode, "message": ""}).encode()[:-2]


def _signature(obj: Any) -> bytes:
    return _field_b64(obj, "signature")


def _decrypted(obj: Any) -> bytes:
    return _field_b64(obj, "decrypted")


def _encrypted(obj: Any) -> tuple[bytes, bytes]:
    return _field_b64(obj, "encrypted"), _field_b64(obj, "iv")


def _random_of(n: int) -> Callable[[Any], bytes]:
    def check(obj: Any) -> bytes:
        data = _field_b64(obj, "random")
        if len(data) != n:
            raise _Invalid(f"'random': {len(data)} bytes, asked for {n}")
        return data
    return check


def _check_pem(data: bytes) -> bytes:
    if not data.lstrip().startswith(b"-----BEGIN "):
        raise _Invalid("not a PEM document")
    return data
