"""A fake slot/api/session for the pure-logic tests of objects and mechanisms.

FakeApi keeps keys like the NetHSM (crypto by the emulator's crypto_ops, so signatures are
bit-compatible with the emulator) and counts requests by (method, path-kind)."""

from __future__ import annotations

import base64
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace

from nethsm_emulator import crypto_ops

from p11nethsm.api import errors as E


@dataclass
class Rec:
    key: crypto_ops.Key
    mechanisms: list
    label: str = ""
    cert: bytes | None = None


_KEY_CACHE: dict = {}


def make_key(key_type: str, length: int | None = None, fresh: bool = False) -> crypto_ops.Key:
    """Generated keys are shared between tests (RSA generation is slow) unless fresh."""
    k = (key_type, length)
    if fresh or k not in _KEY_CACHE:
        key = crypto_ops.generate(key_type, length)
        if fresh:
            return key
        _KEY_CACHE[k] = key
    return _KEY_CACHE[k]


class FakeApi:
    def __init__(self, *, labels: bool = False):
        self.keys: dict[str, Rec] = {}
        self.calls: Counter = Counter()
        self.log: list = []
        self.labels = labels
        self.lock = threading.Lock()
        self.delay = 0.0

    def _count(self, method, what, key_id=None):
        with self.lock:
            self.calls[(method, what)] += 1
            self.log.append((method, what, key_id))
        if self.delay:
            import time

            time.sleep(self.delay)

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def crypto_calls(self) -> int:
        return sum(v for (m, w), v in self.calls.items() if w.endswith(("sign", "decrypt", "encrypt")))

    def reset(self):
        self.calls.clear()
        self.log.clear()

    def _rec(self, key_id, path="/keys/{id}", method="GET") -> Rec:
        rec = self.keys.get(key_id)
        if rec is None:
            raise E.NotFound("fake", method=method, path=path.replace("{id}", key_id), status=404)
        return rec

    def add(self, key_id, key_type, mechanisms, length=None, label="", fresh=False) -> Rec:
        rec = Rec(make_key(key_type, length, fresh), list(mechanisms), label)
        self.keys[key_id] = rec
        return rec

    # -- listing
    def capabilities(self):
        from p11nethsm.api import firmware

        return firmware.V5 if self.labels else firmware.V4

    def list_keys(self, creds, *, label=None, usable=False):
        self._count("GET", "/keys")
        if label is not None and self.labels:
            return sorted(k for k, r in self.keys.items() if r.label == label)
        return sorted(self.keys)

    def get_key(self, creds, key_id):
        self._count("GET", "/keys/{id}", key_id)
        rec = self._rec(key_id)
        out = {"type": rec.key.type, "mechanisms": crypto_ops.sort_mechanisms(rec.mechanisms),
               "operations": 0, "restrictions": {}}
        pub = rec.key.public_json()
        if pub is not None:
            out["public"] = pub
        if self.labels and rec.label:
            out["label"] = rec.label
        return out

    def public_pem(self, creds, key_id):
        self._count("GET", "/keys/{id}/public.pem", key_id)
        return self._rec(key_id).key.public_pem()

    def get_cert(self, creds, key_id):
        self._count("GET", "/keys/{id}/cert", key_id)
        rec = self._rec(key_id)
        if rec.cert is None:
            raise E.NotFound("fake", method="GET", path=f"/keys/{key_id}/cert", status=404)
        return rec.cert

    def put_cert(self, creds, key_id, data):
        self._count("PUT", "/keys/{id}/cert", key_id)
        rec = self._rec(key_id)
        if rec.cert is not None:
            raise E.Conflict("fake", status=409, server_message="Key already contains a certificate")
        rec.cert = bytes(data)

    def delete_cert(self, creds, key_id):
        self._count("DELETE", "/keys/{id}/cert", key_id)
        rec = self._rec(key_id)
        if rec.cert is None:
            raise E.NotFound("fake", status=404)
        rec.cert = None

    # -- management
    def generate_key(self, creds, *, key_type, mechanisms, length=None, key_id=None, label=None):
        self._count("POST", "/keys/generate", key_id)
        if label and not self.labels:
            raise E.BadRequest("fake", status=400, server_message="Invalid JSON: unknown field label")
        kid = key_id or base64.b16encode(__import__("os").urandom(10)).decode().lower()
        if kid in self.keys:
            raise E.BadRequest("fake", status=400, server_message=f"Key with id {kid} already exists")
        try:
            key = crypto_ops.generate(key_type, length)
        except crypto_ops.CryptoError as exc:
            raise E.BadRequest("fake", status=400, server_message=str(exc)) from None
        self.keys[kid] = Rec(key, list(mechanisms), label or "")
        self.generated = (key_type, list(mechanisms), length, kid, label)
        return kid

    def import_key(self, creds, *, key_id, key_type, mechanisms, private, label=None):
        self._count("PUT", "/keys/{id}", key_id)
        if label and not self.labels:
            raise E.BadRequest("fake", status=400, server_message="Invalid JSON: unknown field label")
        kid = key_id or base64.b16encode(__import__("os").urandom(10)).decode().lower()
        if kid in self.keys:
            raise E.BadRequest("fake", status=400, server_message=f"Key with id {kid} already exists")
        try:
            key = crypto_ops.import_json(key_type, dict(private))
        except crypto_ops.CryptoError as exc:
            raise E.BadRequest("fake", status=400, server_message=str(exc)) from None
        self.keys[kid] = Rec(key, list(mechanisms), label or "")
        self.imported = (key_type, list(mechanisms), dict(private), kid, label)
        return kid

    def delete_key(self, creds, key_id):
        self._count("DELETE", "/keys/{id}", key_id)
        self._rec(key_id)
        del self.keys[key_id]

    def move_key(self, creds, key_id, new_id):
        self._count("POST", "/keys/{id}/move", key_id)
        rec = self._rec(key_id)
        if new_id in self.keys:
            raise E.Conflict("fake", status=409)
        self.keys[new_id] = self.keys.pop(key_id)
        return new_id

    # -- crypto
    def _crypto(self, fn, *a):
        try:
            return fn(*a)
        except crypto_ops.CryptoError as exc:
            raise E.BadRequest("fake", status=400, server_message=str(exc)) from None

    def sign(self, creds, key_id, mode, message):
        self._count("POST", "/keys/{id}/sign", key_id)
        rec = self._rec(key_id)
        return self._crypto(crypto_ops.sign, rec.key, mode, message)

    def decrypt(self, creds, key_id, mode, encrypted, iv=None):
        self._count("POST", "/keys/{id}/decrypt", key_id)
        rec = self._rec(key_id)
        return self._crypto(crypto_ops.decrypt, rec.key, mode, encrypted, iv)

    def encrypt(self, creds, key_id, mode, message, iv=None):
        self._count("POST", "/keys/{id}/encrypt", key_id)
        rec = self._rec(key_id)
        return self._crypto(crypto_ops.encrypt, rec.key, mode, message, iv)

    def random(self, creds, length):
        self._count("POST", "/random")
        return crypto_ops.random_bytes(length)


class FakeSlot:
    def __init__(self, api: FakeApi | None = None, *, threads: bool = False, cert_format: str = "PEM",
                 creds: bool = True, alias_mode: bool = False):
        self.api = api or FakeApi()
        self.name = "slot 0 (fake)"
        self.library = SimpleNamespace(threads_allowed=threads,
                                       config=SimpleNamespace(disable_thread_pool=False,
                                                              enable_set_attribute_value=alias_mode))
        self.config = SimpleNamespace(certificate_format=cert_format, label="fake")
        self.has_creds = creds
        self._objects = None

    def credentials(self, role=None):
        from p11nethsm.ck.errors import UserNotLoggedIn

        if not self.has_creds:
            raise UserNotLoggedIn("no credentials (fake)")
        return SimpleNamespace(username="operator", password="x")

    @property
    def objects(self):
        if self._objects is None:
            from p11nethsm.objects.store import ObjectStore

            self._objects = ObjectStore(self)
        return self._objects


@dataclass
class FakeSession:
    slot: FakeSlot
    logged_in: bool = True
    rw: bool = True
    ops: dict = field(default_factory=dict)

    def can_see_private(self) -> bool:
        return self.logged_in
