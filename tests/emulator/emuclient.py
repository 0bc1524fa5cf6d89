"""The emulator tests' HTTP client (a named module: test modules import it, never their conftest).
Every response seen by `Client` is validated against the v4.0 OpenAPI spec
(nethsm_emulator.validation)."""
from __future__ import annotations

import base64
import json as jsonlib

import urllib3

from nethsm_emulator.validation import SPEC_MAIN, SPEC_V40, validate

__all__ = ["SPEC_MAIN", "SPEC_V40", "Client", "Resp", "b64"]

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class Resp:
    def __init__(self, r):
        self.status, self.headers, self.data = r.status, r.headers, r.data

    def json(self):
        return jsonlib.loads(self.data)


class Client:
    """urllib3 client bound to one instance; validates every response against the spec."""

    def __init__(self, url: str, fingerprint: str, spec: str = SPEC_V40, check: bool = True):
        self.url, self.spec, self.check = url, spec, check
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", assert_fingerprint=fingerprint,
                                        retries=False, timeout=60)
        self.whitelisted: list[str] = []

    def request(self, method, path, auth=None, json=None, body=None, headers=None, timeout=None):
        h = {}
        if auth:
            h.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        if json is not None:
            body = jsonlib.dumps(json).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        kw = {"timeout": timeout} if timeout else {}
        r = self.http.request(method, self.url + path, body=body, headers=h, **kw)
        if self.check:
            reason = validate(method, self.url + path, r.status, r.headers, r.data, self.spec)
            if reason:
                self.whitelisted.append(reason)
        return Resp(r)

    def get(self, path, auth=None, **kw):
        return self.request("GET", path, auth, **kw)

    def post(self, path, auth=None, json=None, **kw):
        return self.request("POST", path, auth, json, **kw)

    def put(self, path, auth=None, json=None, **kw):
        return self.request("PUT", path, auth, json, **kw)

    def delete(self, path, auth=None, **kw):
        return self.request("DELETE", path, auth, **kw)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()
