"""Request/response values passed between the HTTP server and the API layer,
and the strict JSON body parser (unknown field -> 400, as keyfender's
ppx_deriving_yojson parsers do)."""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict = field(default_factory=dict)


class ApiError(Exception):
    """Short-circuits a handler with an error response (JSON message or empty body)."""

    def __init__(self, status: int, message: str | None = None, headers: dict | None = None):
        super().__init__(message or str(status))
        self.response = error(status, message)
        if headers:
            self.response.headers.update(headers)


def json_response(status: int, obj, headers: dict | None = None) -> Response:
    return Response(status, json.dumps(obj, separators=(",", ":")).encode(),
                    "application/json", dict(headers or {}))


def error(status: int, message: str | None = None) -> Response:
    if message is None:  # framework-level errors have an empty body
        return Response(status)
    return json_response(status, {"message": message})


@dataclass
class Request:
    method: str
    path: str                 # raw path without query
    query: dict               # name -> list of values
    headers: dict             # lower-case name -> value
    body: bytes | None        # None when over the size limit
    client_ip: str = "127.0.0.1"
    uri_length: int = 0


# ---------------------------------------------------------------- strict JSON

class Invalid(ValueError):
    pass


def STR(v):
    if not isinstance(v, str):
        raise Invalid("expected a string")
    return v


def INT(v):
    if isinstance(v, bool) or not isinstance(v, int):
        raise Invalid("expected an integer")
    return v


def enum(values):
    def check(v):
        if v not in values:
            raise Invalid(f"unknown value {v!r}")
        return v
    return check


def list_of(item):
    def check(v):
        if not isinstance(v, list):
            raise Invalid("expected an array")
        return [item(x) for x in v]
    return check


def obj(fields: dict):
    def check(v):
        return check_object(v, fields)
    return check


def check_object(v, fields: dict) -> dict:
    """fields: name -> (checker, required)."""
    if not isinstance(v, dict):
        raise Invalid("expected an object")
    for k in v:
        if k not in fields:
            raise Invalid(f"unknown field {k}")
    out = {}
    for name, (checker, required) in fields.items():
        if v.get(name) is None:
            if required:
                raise Invalid(f"missing field {name}")
            continue
        try:
            out[name] = checker(v[name])
        except Invalid as exc:
            raise Invalid(f"{name}: {exc}") from None
    return out


def parse_json(body: bytes | None, fields: dict) -> dict:
    try:
        data = json.loads((body or b"").decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON: {exc}") from None
    try:
        return check_object(data, fields)
    except Invalid as exc:
        raise ApiError(400, f"Invalid data for JSON schema: {exc}") from None


def b64decode(s: str, strip_newlines: bool = False) -> bytes:
    if strip_newlines:
        s = s.replace("\n", "")
    try:
        return base64.b64decode(s.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise ApiError(400, f"Couldn't decode data from base64: {exc}") from None


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|z|\+00:00|-00:00)$")


def parse_time(s: str) -> float:
    """RFC 3339 with UTC offset only; returns a POSIX timestamp."""
    if not _RFC3339.match(s):
        raise ApiError(400, "Invalid data for JSON schema: time must be RFC 3339 with offset 0")
    try:
        norm = re.sub(r"(Z|z|[+-]00:00)$", "+00:00", s)
        return datetime.datetime.fromisoformat(norm).timestamp()
    except ValueError:
        raise ApiError(400, "Invalid data for JSON schema: invalid time") from None


def format_time(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- IDs

_ID_CHARS = re.compile(r"^[A-Za-z0-9_.-]*$")


def id_error(s: str) -> str | None:
    """Returns the firmware's message for an invalid ID, or None if valid."""
    if len(s) < 1:
        return "ID cannot be shorter than 1 character."
    if len(s) > 128:
        return "ID cannot be longer than 128 characters."
    if not _ID_CHARS.match(s):
        return "ID may only contain alphanumeric characters, underscores, dashes, and dots."
    if not s[0].isalnum() or not s[0].isascii():
        return "ID cannot start with underscore, dash, or dot."
    return None


def check_id(s: str) -> str:
    msg = id_error(s)
    if msg:
        raise ApiError(400, msg)
    return s


def ID(v):
    STR(v)
    msg = id_error(v)
    if msg:
        raise Invalid(msg)
    return v


def passphrase_ok(p: str) -> bool:
    return 10 <= len(p.encode()) <= 200
