"""Validates emulator responses against the NetHSM OpenAPI spec (openapi-core).

The emulator follows the firmware where it differs from the spec
(docs/nethsm-behaviour.md); those deviations are whitelisted here,
each with its reason. Everything else must match the spec exactly.
Needs the `test` extra (openapi-core)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from urllib.parse import urlsplit

from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPEC_V40 = "nethsm-api-v4.0.yaml"
SPEC_MAIN = "nethsm-api.yaml"


@functools.lru_cache(maxsize=None)
def load_spec(name: str = SPEC_V40) -> OpenAPI:
    path = resources.files("nethsm_emulator") / "spec" / name
    return OpenAPI.from_file_path(str(path))


# (status, method or None, API-path regex or None, reason). Consulted only when a
# response fails the spec check.
WHITELIST = [
    (304, "GET", None, "ETag/If-None-Match gives 304 on GET; the spec lists no 304"),
    (405, None, None, "framework 405 with Allow header for a method the route lacks"),
    (413, None, None, "framework 413 when the body exceeds the endpoint limit"),
    (414, None, None, "framework 414 for URIs longer than 2000 characters"),
    (415, None, None, "create-POST/PUT with a wrong Content-Type gives 415; the spec does not list it"),
    (429, None, None, "failed-login / unlock throttle; not in the spec"),
    (404, None, None, "resource missing: 404 (empty body) from webmachine's resource_exists "
                      "on routes whose spec omits 404 (e.g. PUT /keys/{id}/cert, "
                      "POST /users/{id}); unknown routes answer text 'Not found'"),
    (400, "PUT", r"^/keys/[^/]+/cert$", "cert PUT on a bad key ID gives 400 (ID validation); "
                                         "the spec omits 400 there"),
    (400, "DELETE", r"^/keys/[^/]+(/cert|/restrictions/tags/[^/]+)?$",
     "invalid KeyID/tag in the path gives 400; the spec omits 400 there"),
    (400, "DELETE", r"^/users/[^/]+/tags/[^/]+$", "invalid UserID in path gives 400"),
    (400, "GET", r"^/keys/[^/]*\*$", "empty or invalid prefix in GET /keys/{prefix}* gives 400"),
    (400, "POST", r"^/config/tls/csr\.pem$", "malformed/strict-JSON body gives 400 on every JSON "
                                              "endpoint; the spec omits 400 here"),
    (400, "PUT", r"^/keys/[^/]+/label$", "label longer than 32 bytes or invalid gives 400; "
                                         "the main spec omits 400 here"),
    (401, "POST", r"^/system/restore$", "restore on an Operational device needs R-Admin Basic "
                                        "auth; the spec lists no 401/403"),
    (403, "POST", r"^/system/restore$", "restore on an Operational device is R-Admin only"),
    (412, "POST", r"^/system/backup$", "backup without a backup passphrase gives 412"),
    (503, "POST", r"^/keys/[^/]+/decrypt$", "RAW decrypt of a value below 2 raises an unhandled "
                                            "exception in the firmware: 503"),
]


def whitelisted(status: int, method: str, api_path: str) -> str | None:
    for st, m, rx, reason in WHITELIST:
        if st == status and (m is None or m == method) and (rx is None or re.search(rx, api_path)):
            return reason
    return None


@dataclass
class _Req:
    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str


@dataclass
class _Resp:
    status_code: int
    data: bytes
    content_type: str
    headers: Headers


class SpecViolation(AssertionError):
    pass


def validate(method: str, url: str, status: int, headers, body: bytes,
             spec: str = SPEC_V40) -> str | None:
    """Raises SpecViolation if the response does not conform to the spec and is not a
    whitelisted firmware deviation; returns the whitelist reason if one was needed."""
    parts = urlsplit(url)
    api_path = parts.path.split("/api/v1", 1)[1] if "/api/v1" in parts.path else parts.path
    try:
        _check_spec(method, parts, status, headers, body, spec)
        return None
    except SpecViolation:
        reason = whitelisted(status, method.upper(), api_path)
        if reason:
            return reason
        raise


def _check_spec(method, parts, status, headers, body, spec):
    # headers: urllib3/requests mappings, or schemathesis' name -> [values]
    hdrs = Headers([(k, v[0] if isinstance(v, (list, tuple)) else v)
                    for k, v in dict(headers).items()])
    ctype = hdrs.get("Content-Type", "")
    req = _Req(f"{parts.scheme}://{parts.netloc}/api/v1", parts.path, method.lower(),
               RequestParameters(query=ImmutableMultiDict(), header=Headers(), cookie={}),
               None, "application/json")
    # Empty error bodies (401/403/404...) come from the framework; the spec
    # attaches ErrorResponse content to them, so only the status code is checked then.
    empty_error = status >= 400 and not body
    data = body
    if ctype and "json" not in ctype and "octet-stream" not in ctype:
        data = body.decode("utf-8", "replace")  # PEM and text bodies are schema strings
    resp = _Resp(status, data, ctype or ("application/json" if empty_error else ""), hdrs)
    api_path = parts.path.split("/api/v1", 1)[-1]
    try:
        result = load_spec(spec).unmarshal_response(req, resp)
    except Exception as exc:  # path/operation not found
        raise SpecViolation(f"{method} {api_path} -> {status}: {exc}") from exc
    errors = [e for e in result.errors if not (empty_error and _is_body_error(e))]
    if errors:
        raise SpecViolation(f"{method} {api_path} -> {status}: "
                            + "; ".join(f"{type(e).__name__}: {e} {e.__cause__ or ''}"
                                        for e in errors))


def _is_body_error(e) -> bool:
    name = type(e).__name__
    return "Data" in name or "Content" in name or "Body" in name or "Media" in name
