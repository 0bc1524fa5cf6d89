"""Validators of the NetHSM's answers: each takes the decoded answer and returns the value the
client method returns, or raises `Invalid` (which the client turns into BadResponse with a log
line). Anything not as the API promises is refused here, so no KeyError/TypeError/ValueError
ever escapes a client call.

`parse(response, check, media)` checks the content type, decodes JSON (unless `media` is not
JSON: `check` then gets the raw bytes) and applies `check`.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable

from p11nethsm.log import logger
from p11nethsm.net.failover import Response

__all__ = ["JSON", "PEM", "OCTETS", "Invalid", "parse", "obj", "field", "key", "key_ids", "user",
           "strings", "signature", "decrypted", "encrypted", "random_of", "pem", "raw"]

JSON = "application/json"
PEM = "application/x-pem-file"
OCTETS = "application/octet-stream"


_OPENERS = (b"{", b"[")


class Invalid(Exception):
    """An answer that is not what the API promises."""


def parse(response: Response, check: Callable[[Any], Any], media: str = JSON) -> Any:
    ctype = response.content_type
    if ctype != media and ctype.partition(";")[0].strip().lower() != media:
        raise Invalid(f"content type {ctype[:60]!r}, expected {media}")
    if media != JSON:
        return check(response.body)
    body = response.body
    try:
        # An object or array whose second byte is not NUL is UTF-8 for json.detect_encoding: decode
        # it here as json.loads does (surrogatepass), without detect_encoding's calls (the hot path).
        if body[:1] in _OPENERS and body[1:2] != b"\x00":
            body = body.decode("utf-8", "surrogatepass")
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise Invalid(f"invalid JSON ({type(exc).__name__})") from None
    return check(value)


def b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise Invalid(f"{what}: expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{what}: invalid base64") from None


def obj(value: Any) -> dict:
    if not isinstance(value, dict):
        raise Invalid(f"expected a JSON object, got {type(value).__name__}")
    return value


def string(o: dict, name: str, *, optional: bool = False) -> str | None:
    value = o.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise Invalid(f"{name!r}: expected a string, got {type(value).__name__}")
    return value


def field(name: str) -> Callable[[Any], str]:
    """The string field `name` of a JSON object (e.g. the "id" of a created key)."""
    return lambda value: string(obj(value), name)


def _field_b64(value: Any, name: str) -> bytes:
    return b64(obj(value).get(name), name)


def _string_list(value: Any, what: str) -> None:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise Invalid(f"{what!r}: expected a list of strings")


def key(value: Any) -> dict:
    """GET /keys/{id}: type, mechanisms, operations, restrictions.tags, public, label."""
    o = obj(value)
    string(o, "type")
    _string_list(o.get("mechanisms"), "mechanisms")
    ops = o.get("operations", 0)
    if not isinstance(ops, int) or isinstance(ops, bool):
        raise Invalid("'operations': expected an integer")
    restrictions = o.get("restrictions", {})
    if restrictions is None:
        restrictions = {}
    if not isinstance(restrictions, dict):
        raise Invalid("'restrictions': expected an object")
    tags = restrictions.get("tags", [])
    if tags is not None:
        _string_list(tags, "restrictions.tags")
    public = o.get("public")
    if public is not None:
        if not isinstance(public, dict):
            raise Invalid("'public': expected an object")
        for name, item in public.items():
            b64(item, f"public.{name}")
    string(o, "label", optional=True)
    return o


def key_ids(value: Any) -> list[str]:
    """GET /keys: the key ids. An entry that is not {"id": <non-empty printable string>}, or repeats one,
    is skipped with a warning naming it (one bad entry must not hide every key)."""
    if not isinstance(value, list):
        raise Invalid(f"expected a JSON list, got {type(value).__name__}")
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


def user(value: Any) -> dict:
    o = obj(value)
    string(o, "realName")
    string(o, "role")
    return o


def strings(value: Any) -> dict:
    """An object of strings only (GET /info)."""
    o = obj(value)
    for k, v in o.items():
        if not isinstance(v, str):
            raise Invalid(f"{k!r}: expected a string, got {type(v).__name__}")
    return o


def signature(value: Any) -> bytes:
    return _field_b64(value, "signature")


def decrypted(value: Any) -> bytes:
    return _field_b64(value, "decrypted")


def encrypted(value: Any) -> tuple[bytes, bytes]:
    return _field_b64(value, "encrypted"), _field_b64(value, "iv")


def random_of(n: int) -> Callable[[Any], bytes]:
    """POST /random: exactly `n` bytes."""
    def check(value: Any) -> bytes:
        data = _field_b64(value, "random")
        if len(data) != n:
            raise Invalid(f"'random': {len(data)} bytes, asked for {n}")
        return data
    return check


def pem(data: bytes) -> bytes:
    if not data.lstrip().startswith(b"-----BEGIN "):
        raise Invalid("not a PEM document")
    return data


raw = bytes  # an octet-stream answer as it came
