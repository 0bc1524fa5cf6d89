"""Provisioning helper that uses only the REST API (urllib3), so the same code
provisions the emulator and a real NetHSM / test container.

    from nethsm_emulator.provision import provision_standard
    provision_standard("https://127.0.0.1:8443/api/v1", fingerprint="31:92:...")

This module must not import anything else from the emulator.
"""
from __future__ import annotations

import base64
import json

import urllib3

ADMIN = ("admin", "Administrator")
OPERATOR = ("operator", "opPassphrase")
UNLOCK_PASSPHRASE = "UnlockPassphrase"
SYSTEM_TIME = "2018-10-30T11:20:50Z"

RSA_MECHS = ["RSA_Decryption_RAW", "RSA_Decryption_PKCS1", "RSA_Decryption_OAEP_MD5",
             "RSA_Decryption_OAEP_SHA1", "RSA_Decryption_OAEP_SHA224", "RSA_Decryption_OAEP_SHA256",
             "RSA_Decryption_OAEP_SHA384", "RSA_Decryption_OAEP_SHA512", "RSA_Signature_PKCS1",
             "RSA_Signature_PSS_MD5", "RSA_Signature_PSS_SHA1", "RSA_Signature_PSS_SHA224",
             "RSA_Signature_PSS_SHA256", "RSA_Signature_PSS_SHA384", "RSA_Signature_PSS_SHA512"]

# id -> generate request body (without id). The standard key set of the tests and the demo.
STANDARD_KEYS = {
    "rsakey": {"type": "RSA", "length": 2048, "mechanisms": RSA_MECHS},
    "p256key": {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]},
    "p384key": {"type": "EC_P384", "mechanisms": ["ECDSA_Signature"]},
    "p521key": {"type": "EC_P521", "mechanisms": ["ECDSA_Signature"]},
    "p256k1key": {"type": "EC_P256K1", "mechanisms": ["ECDSA_Signature", "BIP340_Signature"]},
    "bp256key": {"type": "BrainpoolP256", "mechanisms": ["ECDSA_Signature"]},
    "bp384key": {"type": "BrainpoolP384", "mechanisms": ["ECDSA_Signature"]},
    "bp512key": {"type": "BrainpoolP512", "mechanisms": ["ECDSA_Signature"]},
    "edkey": {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"]},
    "aeskey": {"type": "Generic", "length": 256,
               "mechanisms": ["AES_Encryption_CBC", "AES_Decryption_CBC"]},
}


class ApiFailure(RuntimeError):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} {path} -> {status}: {body[:300]!r}")
        self.status, self.body = status, body


class NetHSM:
    """Minimal REST client. `fingerprint` pins the server certificate (colon hex);
    without it, certificate verification is off (like danger_insecure_cert)."""

    def __init__(self, base_url: str, fingerprint: str | None = None, timeout: float = 120):
        self.base_url = base_url.rstrip("/")
        kw = {"assert_fingerprint": fingerprint} if fingerprint else {}
        self.http = urllib3.PoolManager(cert_reqs="CERT_NONE", retries=False, timeout=timeout, **kw)
        if not fingerprint:
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    def request(self, method: str, path: str, auth=None, json_body=None, body=None,
                headers=None, expect=(200, 201, 204)) -> urllib3.BaseHTTPResponse:
        h = {"Accept": "*/*"}
        if auth:
            h.update(urllib3.make_headers(basic_auth=f"{auth[0]}:{auth[1]}"))
        if json_body is not None:
            body = json.dumps(json_body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        r = self.http.request(method, self.base_url + path, body=body, headers=h)
        if expect and r.status not in expect:
            raise ApiFailure(method, path, r.status, r.data)
        return r

    def json(self, method, path, auth=None, json_body=None, **kw):
        r = self.request(method, path, auth, json_body, **kw)
        return json.loads(r.data) if r.data else None

    # --- steps
    def state(self) -> str:
        return self.json("GET", "/health/state")["state"]

    def provision(self, unlock_passphrase=UNLOCK_PASSPHRASE, admin_passphrase=ADMIN[1],
                  system_time=SYSTEM_TIME):
        self.request("POST", "/provision", json_body={
            "unlockPassphrase": unlock_passphrase, "adminPassphrase": admin_passphrase,
            "systemTime": system_time})

    def unlock(self, passphrase=UNLOCK_PASSPHRASE):
        self.request("POST", "/unlock", json_body={"passphrase": passphrase})

    def add_user(self, user_id, role, passphrase, real_name=None, admin=ADMIN):
        self.request("PUT", f"/users/{user_id}", admin, {
            "realName": real_name or user_id, "role": role, "passphrase": passphrase})

    def generate_key(self, key_id, spec: dict, admin=ADMIN):
        self.request("POST", "/keys/generate", admin, {**spec, "id": key_id})

    def import_key(self, key_id, key_type, mechanisms, private: dict, admin=ADMIN, tags=None):
        """private: raw bytes per field (primeP/primeQ/publicExponent or data)."""
        body = {"type": key_type, "mechanisms": mechanisms,
                "private": {k: base64.b64encode(v).decode() for k, v in private.items()}}
        if tags:
            body["restrictions"] = {"tags": list(tags)}
        self.request("PUT", f"/keys/{key_id}", admin, body)


def provision(base_url: str, *, fingerprint: str | None = None,
              unlock_passphrase: str = UNLOCK_PASSPHRASE, admin_passphrase: str = ADMIN[1],
              system_time: str = SYSTEM_TIME) -> NetHSM:
    """POST /provision only (device must be Unprovisioned)."""
    hsm = NetHSM(base_url, fingerprint)
    hsm.provision(unlock_passphrase, admin_passphrase, system_time)
    return hsm


def provision_standard(base_url: str, *, fingerprint: str | None = None,
                       unlock_passphrase: str = UNLOCK_PASSPHRASE, admin=ADMIN,
                       operator=OPERATOR, keys: dict | None = None) -> NetHSM:
    """Provision (if Unprovisioned; unlock if Locked), create the operator user and
    generate `keys` (default STANDARD_KEYS; pass {} for none). Existing users/keys are kept."""
    hsm = NetHSM(base_url, fingerprint)
    state = hsm.state()
    if state == "Unprovisioned":
        hsm.provision(unlock_passphrase, admin[1])
    elif state == "Locked":
        hsm.unlock(unlock_passphrase)
    if operator:
        r = hsm.request("GET", f"/users/{operator[0]}", admin, expect=None)
        if r.status == 404:
            hsm.add_user(operator[0], "Operator", operator[1], "Operator", admin)
    for key_id, spec in (STANDARD_KEYS if keys is None else keys).items():
        if hsm.request("GET", f"/keys/{key_id}", admin, expect=None).status == 404:
            hsm.generate_key(key_id, spec, admin)
    return hsm
