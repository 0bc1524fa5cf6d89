"""Typed client of the NetHSM REST API (one `NetHSM` per slot = one NetHSM cluster).

Every call goes through `NetHSM._call(method, path, creds, body, parse)`: the slot's
`net.failover.Failover` runs the exchange with failover and retries and returns a
`net.failover.Response`; a failed attempt becomes an error of p11nethsm.api.errors
(p11nethsm.api.mapping) carrying instance, method, path, status and the server's JSON "message".
Request bodies (PINs, key material) never appear in errors or logs. Answers are validated
strictly (p11nethsm.api.validate): anything not as the API promises is `BadResponse` (with a log
line), never a stray KeyError/TypeError/ValueError. A new endpoint is one `_call`:

    def get_user(self, creds, user_id):
        return self._call("GET", f"/users/{_seg(user_id, _USER_ID)}", creds, parse=v.user)

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
import json
import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import quote

from p11nethsm import metrics
from p11nethsm.api import firmware
from p11nethsm.api import validate as v
from p11nethsm.api.errors import BadRequest, Conflict, HTTPStatusError, NetHSMError, NotFound
from p11nethsm.api.mapping import ErrorMapping
from p11nethsm.api.validate import JSON, OCTETS, PEM
from p11nethsm.config.model import SlotConfig
from p11nethsm.log import logger
from p11nethsm.net.failover import Failover, Response

__all__ = ["Credentials", "NetHSM", "Response", "new_key_id"]

RANDOM_CHUNK = 1024  # the device's limit per /random request

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(?:~[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?")
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode

# Header sets by kind: what we send (Content-Type) and accept; encoded once as the CRLF-ended
# header lines of the request (p11nethsm.net.http11).
_KINDS: dict[str, bytes] = {
    kind: b"".join(f"{k}: {x}\r\n".encode("ascii") for k, x in {"User-Agent": "p11nethsm", **hdrs}.items())
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


def _seg(value: str, pattern: re.Pattern[str]) -> str:
    """A path segment: ids as the device allows them go as they are, anything else is quoted."""
    if type(value) is str and pattern.fullmatch(value):  # noqa: E721 (exact str only)
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"invalid id {value!r}")
    return quote(value, safe="~")


def _key(key_id: str, rest: str = "") -> str:
    return f"/keys/{_seg(key_id, _KEY_ID)}{rest}"


def _b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class NetHSM:
    """The REST client of one slot. Thread-safe; no network I/O until the first call."""

    def __init__(self, slot: SlotConfig, *, threads: bool):
        self.slot = slot
        self.threads = threads
        self._metrics = metrics.current()  # None unless metrics_file is configured
        self._errors = ErrorMapping(slot.label, self._metrics)
        self._failover = Failover(slot, self._errors, threads=threads, metrics=self._metrics)

    def __repr__(self) -> str:
        return f"NetHSM({self.slot.label!r}, {list(self.instances)})"

    # ---- lifecycle -------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        """{instance url: InstanceStats} (requests sent, connections opened, failures...)."""
        return {inst.name: inst.stats for inst in self.instances}

    @property
    def instances(self):
        return self._failover.instances.all

    def close(self) -> None:
        self._failover.close()

    def drop_after_fork(self) -> None:
        """In a forked child: forget pools and the health thread, touching no socket."""
        self._failover.drop_after_fork()
        self._errors.last_401.clear()

    # ---- the one call ----------------------------------------------------------------------

    def _call(self, method: str, path: str, creds: Credentials | None, body=None,
              parse: Callable[[Any], Any] | None = None, *, kind: str | None = None, media: str = JSON,
              idempotent: bool = True, recovers: bool = True, done_if: type[NetHSMError] | None = None):
        """One API call: `parse(answer)` (validated, p11nethsm.api.validate), or the `Response`
        when `parse` is None. `body`: bytes, or a function of the receiving instance's
        Capabilities returning them. `kind`: the header set (default: "get" without a body,
        "json" with one). `done_if`: the error that, after an unknown outcome, means an earlier
        attempt already did it (a repeated DELETE gets 404): the call then returns None."""
        if kind is None:
            kind = "get" if body is None else "json"
        if creds is None:
            head = _KINDS[kind]
        else:
            head = creds.headers[kind]
            if self._errors.last_401:
                self._errors.respect_throttle(creds.username)
        if callable(body):  # built for the firmware of the instance that receives it
            build = body
            body = lambda inst: build(self._caps_of(inst))  # noqa: E731
        try:
            r = self._failover.call(method, path, head, body, creds, idempotent, recovers)
        except NetHSMError as exc:
            if done_if is not None and isinstance(exc, done_if) and exc.outcome_unknown:
                return None
            raise
        if parse is None:
            return r
        try:
            return v.parse(r, parse, media)
        except v.Invalid as exc:
            raise self._errors.bad(r.instance, method, path, r.status, str(exc)) from None

    def _parsed(self, r: Response, method: str, path: str, parse: Callable[[Any], Any], media: str = JSON):
        try:
            return v.parse(r, parse, media)
        except v.Invalid as exc:
            raise self._errors.bad(r.instance, method, path, r.status, str(exc)) from None

    # ---- no auth ---------------------------------------------------------------------------

    def health_state(self) -> str:
        return self._call("GET", "/health/state", None, parse=v.field("state"), recovers=False)

    def info(self) -> dict:
        return self._call("GET", "/info", None, parse=v.strings, recovers=False)

    def diagnose(self) -> dict | None:
        """GET /health/diagnose without credentials (5.0; open outside Operational): the
        HealthDiagnoseData, or None where there is none (older firmware, Operational)."""
        try:
            return self._call("GET", "/health/diagnose", None, parse=v.obj, recovers=False)
        except HTTPStatusError:
            return None

    # ---- firmware capabilities (p11nethsm.api.firmware) --------------------------------------

    def capabilities(self):
        """What the instance serving the next calls can do; detected once per instance. In a
        cluster of mixed firmware the next call may land elsewhere: requests whose form depends
        on it build their body per instance (`_call`), and a ?label= listing answered by older
        firmware lists every key (the template match still decides)."""
        return self._caps_of(self._failover.instances.pick())

    def _caps_of(self, inst):
        caps = inst.caps
        if caps is None:
            caps = firmware.detect(inst, self.instances, _KINDS["get"], self.slot.timeout_seconds)
        return caps

    # ---- Basic auth ------------------------------------------------------------------------

    def system_info(self, creds: Credentials) -> dict:
        return self._call("GET", "/system/info", creds, parse=v.obj)

    def get_user(self, creds: Credentials, user_id: str) -> dict:
        return self._call("GET", f"/users/{_seg(user_id, _USER_ID)}", creds, parse=v.user)

    def set_passphrase(self, creds: Credentials, user_id: str, passphrase: str) -> None:
        self._call("POST", f"/users/{_seg(user_id, _USER_ID)}/passphrase", creds,
                   _encode({"passphrase": passphrase}).encode())

    def list_keys(self, creds: Credentials, *, label: str | None = None, usable: bool = False) -> list[str]:
        """GET /keys; `label`: only keys with that label (5.0: ?label=); `usable`: only keys the
        (operator) caller may use under key restriction tags (?filter=)."""
        query = []
        if usable:
            query.append("filter=1")
        if label is not None:
            query.append("label=" + quote(label, safe=""))
        return self._call("GET", "/keys?" + "&".join(query) if query else "/keys", creds, parse=v.key_ids)

    def get_key(self, creds: Credentials, key_id: str) -> dict:
        return self._call("GET", _key(key_id), creds, parse=v.key)

    def public_pem(self, creds: Credentials, key_id: str) -> bytes:
        return self._call("GET", _key(key_id, "/public.pem"), creds, parse=v.pem, kind="pem", media=PEM)

    def generate_key(self, creds: Credentials, *, key_type: str, mechanisms: list[str],
                     length: int | None = None, key_id: str | None = None, label: str | None = None) -> str:
        kid = key_id or new_key_id()
        body: dict[str, Any] = {"type": key_type, "mechanisms": list(mechanisms), "id": kid}
        if length is not None:
            body["length"] = length
        return self._create("/keys/generate", creds, _with_label(body, label), kid, "generation")

    def move_key(self, creds: Credentials, key_id: str, new_id: str) -> str:
        return self._create(_key(key_id, "/move"), creds, _encode({"newId": new_id}).encode(), new_id, "move")

    def _create(self, path: str, creds: Credentials, body, kid: str, what: str) -> str:
        """A POST that makes key `kid` (not idempotent): an unknown outcome is resolved by looking,
        never by repeating it; an answer naming another id is BadResponse."""
        try:
            r = self._call("POST", path, creds, body, idempotent=False)
        except NetHSMError as exc:
            if not exc.outcome_unknown:
                raise
            return self._resolve_by_looking(creds, kid, exc, what)
        if r.status == 201 or r.body:
            got = self._parsed(r, "POST", path, v.field("id"))
            if got != kid:
                raise self._errors.bad(r.instance, "POST", path, r.status, f"{what}: id {got!r}, asked for {kid!r}")
        return kid

    def import_key(self, creds: Credentials, *, key_id: str | None, key_type: str, mechanisms: list[str],
                   private: dict, label: str | None = None) -> str:
        kid = key_id or new_key_id()
        priv = {k: _b64e(x) if isinstance(x, (bytes, bytearray, memoryview)) else x for k, x in private.items()}
        body: dict[str, Any] = {"type": key_type, "mechanisms": list(mechanisms), "private": priv}
        try:
            self._call("PUT", _key(kid), creds, _with_label(body, label))
        except (BadRequest, Conflict) as exc:
            if not exc.outcome_unknown:  # "already exists" only means "done" after an unknown outcome
                raise
            return self._resolve_by_looking(creds, kid, exc, "import")
        return kid

    def _resolve_by_looking(self, creds: Credentials, kid: str, exc: NetHSMError, what: str) -> str:
        logger.warning("key {}: outcome of the {} unknown ({}); looking it up", kid, what, exc.describe())
        # One look per cluster member: the member that took the request (marked unreachable by its
        # cut answer) may well be the one that can tell, while another is locked (chaos soak).
        for look in range(len(self.instances), 0, -1):
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
        self._call("DELETE", _key(key_id), creds, done_if=NotFound)

    def set_label(self, creds: Credentials, key_id: str, label: str) -> None:
        """PUT /keys/{id}/label (firmware with key labels; 304 = already so). Idempotent."""
        try:
            self._call("PUT", _key(key_id, "/label"), creds, _encode({"label": label}).encode())
        except HTTPStatusError as exc:
            if exc.status != 304:
                raise

    def get_cert(self, creds: Credentials, key_id: str) -> bytes:
        return self._call("GET", _key(key_id, "/cert"), creds, parse=v.raw, kind="octets", media=OCTETS)

    def put_cert(self, creds: Credentials, key_id: str, data: bytes) -> None:
        self._call("PUT", _key(key_id, "/cert"), creds, bytes(data), kind="put_octets", done_if=Conflict)

    def delete_cert(self, creds: Credentials, key_id: str) -> None:
        self._call("DELETE", _key(key_id, "/cert"), creds, done_if=NotFound)

    # ---- crypto (the hot path) -------------------------------------------------------------

    def sign(self, creds: Credentials, key_id: str, mode: str, message: bytes) -> bytes:
        body = b"%s%s\"}" % (_sign_prefix(mode), base64.b64encode(message))
        return self._call("POST", _sign_path(key_id), creds, body, v.signature)

    def decrypt(self, creds: Credentials, key_id: str, mode: str, encrypted: bytes,
                iv: bytes | None = None) -> bytes:
        return self._call("POST", _key(key_id, "/decrypt"), creds,
                          _crypt_body(mode, "encrypted", encrypted, iv), v.decrypted)

    def encrypt(self, creds: Credentials, key_id: str, mode: str, message: bytes,
                iv: bytes | None = None) -> tuple[bytes, bytes]:
        return self._call("POST", _key(key_id, "/encrypt"), creds, _crypt_body(mode, "message", message, iv),
                          v.encrypted)

    def random(self, creds: Credentials, length: int) -> bytes:
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"random length must be >= 1, got {length!r}")
        out = []
        for start in range(0, length, RANDOM_CHUNK):
            n = min(length - start, RANDOM_CHUNK)
            out.append(self._call("POST", "/random", creds, _encode({"length": n}).encode(), v.random_of(n)))
        return b"".join(out)


def _crypt_body(mode: str, name: str, data: bytes, iv: bytes | None) -> bytes:
    req: dict[str, str] = {"mode": mode, name: _b64e(data)}
    if iv is not None:
        req["iv"] = _b64e(iv)
    return _encode(req).encode()


def _with_label(body: dict, label: str | None):
    """The request body, with `label` for firmware that has key labels (or may have: unknown)."""
    plain = _encode(body).encode()
    if not label:
        return plain
    labelled = _encode({**body, "label": label}).encode()
    return lambda caps: plain if caps.labels is False else labelled


@lru_cache(maxsize=1024)
def _sign_path(key_id: str) -> str:
    return _key(key_id, "/sign")


@lru_cache(maxsize=64)
def _sign_prefix(mode: str) -> bytes:
    """`{"mode":"<mode>","message":"` as the JSON encoder writes it (the message is base64)."""
    return _encode({"mode": mode, "message": ""}).encode()[:-2]
