"""The device's self-signed TLS identity (EC P-256, CN=keyfender, no SAN,
valid 1970..9999 like keyfender), persisted in the state dir."""
from __future__ import annotations

import datetime
import os
import ssl
import tempfile
import threading

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from .crypto_ops import EC_CURVES


def _self_signed(key) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keyfender")])
    algo = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc))
            .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc))
            .sign(key, algo))


def fingerprint_of(cert: x509.Certificate) -> str:
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


class TlsIdentity:
    def __init__(self, state_dir: str | None):
        self._lock = threading.Lock()
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="nethsm-emulator-tls-")
        self._key_path = os.path.join(self.state_dir, "tls-key.pem")
        self._cert_path = os.path.join(self.state_dir, "tls-cert.pem")
        if os.path.exists(self._key_path) and os.path.exists(self._cert_path):
            with open(self._key_path, "rb") as f:
                self.key = serialization.load_pem_private_key(f.read(), None)
            with open(self._cert_path, "rb") as f:
                self.cert_pem = f.read()
            self._reload()
        else:
            self.set_key(ec.generate_private_key(ec.SECP256R1()))

    def set_key(self, key, cert_pem: bytes | None = None):
        with self._lock:
            self.key = key
            self.cert_pem = cert_pem or _self_signed(key).public_bytes(serialization.Encoding.PEM)
            os.makedirs(self.state_dir, exist_ok=True)
            with open(self._key_path, "wb") as f:
                f.write(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
            with open(self._cert_path, "wb") as f:
                f.write(self.cert_pem)
            self._reload()

    def _reload(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self._cert_path, self._key_path)
        self.context = ctx
        self.fingerprint = fingerprint_of(x509.load_pem_x509_certificate(self.cert_pem))

    def generate(self, key_type: str, length: int | None):
        if key_type == "RSA":
            key = rsa.generate_private_key(65537, length or 2048)
        elif key_type == "Curve25519":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            key = ec.generate_private_key(EC_CURVES[key_type][0]())
        self.set_key(key)

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def replace_cert(self, pem: bytes):
        """PUT /config/tls/cert.pem: the certificate must match the current key."""
        cert = x509.load_pem_x509_certificate(pem)
        if cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != \
                self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ValueError("public key in certificate does not match private key")
        self.set_key(self.key, pem)
