"""Real PKCS#11 clients (pkcs11-tool, p11tool, openssl + libp11 engine, Java) driving the built
module against an in-process emulator. Skipped when the .so or a client is missing."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from nethsm_emulator.provision import RSA_MECHS, STANDARD_KEYS
from nethsm_emulator.testing import start_emulator

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "p11nethsm" / "libnethsm_pkcs11.so"
ADMIN = ("admin", "Administrator")
OPERATOR = ("operator", "opPassphrase")


def need(*tools):
    if not MODULE.exists():
        pytest.skip(f"{MODULE} not built")
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} not installed")


def self_signed(private_key, cn: str, hash_alg=None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .sign(private_key, hash_alg or hashes.SHA256()))


@dataclass
class Env:
    hsm: object
    workdir: Path
    conf: Path
    aes_key: bytes

    @property
    def env(self) -> dict:
        e = dict(os.environ)
        e["P11NETHSM_CONFIG_FILE"] = str(self.conf)
        e["GNUTLS_PIN"] = OPERATOR[1]
        return e

    def run(self, *args, check=True, input=None, timeout=120) -> subprocess.CompletedProcess:
        r = subprocess.run([str(a) for a in args], env=self.env, cwd=self.workdir, capture_output=True,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{args[0]} failed ({r.returncode}):\n{r.stdout.decode(errors='replace')[-3000:]}\n"
                                 f"{r.stderr.decode(errors='replace')[-3000:]}")
        return r

    def tool(self, *args, **kw):
        return self.run("pkcs11-tool", "--module", MODULE, *args, **kw)

    def rest(self, method, path, auth=ADMIN, **kw):
        return self.hsm.client().request(method, path, auth, **kw)

    def public_pem(self, key_id: str) -> Path:
        p = self.workdir / f"{key_id}.pub.pem"
        p.write_bytes(self.rest("GET", f"/keys/{key_id}/public.pem", OPERATOR).data)
        return p


def write_conf(path: Path, hsm, log: Path, extra: str = "") -> Path:
    path.write_text(f"""
log_level: Debug
log_file: {log}
{extra}
slots:
  - label: NetHSM-emu
    operator:
      username: {OPERATOR[0]}
      password: {OPERATOR[1]}
    administrator:
      username: {ADMIN[0]}
      password: {ADMIN[1]}
    instances:
      - url: {hsm.url}
        sha256_fingerprints: ["{hsm.fingerprint}"]
""")
    return path


def add_key_with_cert(hsm, key_id: str, private_key, key_type: str, mechanisms: list[str]):
    """Import `private_key` under key_id and store a self-signed PEM certificate on it."""
    c = hsm.client()
    if isinstance(private_key, rsa.RSAPrivateKey):
        n = private_key.private_numbers()
        priv = {"primeP": n.p.to_bytes((n.p.bit_length() + 7) // 8, "big"),
                "primeQ": n.q.to_bytes((n.q.bit_length() + 7) // 8, "big"), "publicExponent": b"\x01\x00\x01"}
    else:
        size = (private_key.curve.key_size + 7) // 8
        priv = {"data": private_key.private_numbers().private_value.to_bytes(size, "big")}
    c.import_key(key_id, key_type, mechanisms, priv, ADMIN)
    cert = self_signed(private_key, key_id).public_bytes(serialization.Encoding.PEM)
    c.request("PUT", f"/keys/{key_id}/cert", ADMIN, body=cert, headers={"Content-Type": "application/octet-stream"})


@pytest.fixture(scope="session")
def clients(tmp_path_factory):
    need()
    work = tmp_path_factory.mktemp("clients")
    aes = os.urandom(32)
    with start_emulator(provisioned=True, keys=STANDARD_KEYS, throttle=False) as hsm:
        c = hsm.client()
        c.import_key("aesknown", "Generic", ["AES_Encryption_CBC", "AES_Decryption_CBC"], {"data": aes}, ADMIN)
        add_key_with_cert(hsm, "javarsa", rsa.generate_private_key(65537, 2048), "RSA", RSA_MECHS)
        add_key_with_cert(hsm, "javaec", ec.generate_private_key(ec.SECP256R1()), "EC_P256", ["ECDSA_Signature"])
        conf = write_conf(work / "p11nethsm.conf", hsm, work / "module.log")
        yield Env(hsm, work, conf, aes)


@pytest.fixture(scope="session")
def rsa_ec_only(tmp_path_factory):
    """A NetHSM with RSA/EC keys only (libp11 0.4.12 gives up on a token holding an Ed25519 key)."""
    need()
    work = tmp_path_factory.mktemp("libp11")
    keys = {k: v for k, v in STANDARD_KEYS.items() if k in ("rsakey", "p256key", "p384key")}
    with start_emulator(provisioned=True, keys=keys, throttle=False) as hsm:
        conf = write_conf(work / "p11nethsm.conf", hsm, work / "module.log")
        yield Env(hsm, work, conf, b"")
