"""Mozilla NSS (modutil, certutil from libnss3-tools) loads the module, shows its token, finds a
certificate stored on a NetHSM key and, logging in with the operator PIN, the key it belongs
to."""

from __future__ import annotations

import datetime
import re
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hostenv import need
from hostenv import MODULE, slot_yaml, write_config

LABEL = "NssHSM"


def _certificate_for(public_pem: bytes) -> bytes:
    """A certificate whose subject key is the NetHSM key (issued by a throwaway CA)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nss host test")]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "throwaway CA")]))
            .public_key(serialization.load_pem_public_key(public_pem))
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def nss(tmp_path):
    need("modutil", "certutil")
    from nethsm_emulator.provision import STANDARD_KEYS
    from nethsm_emulator.testing import start_emulator

    with start_emulator(provisioned=True, keys={"p256key": STANDARD_KEYS["p256key"]}, throttle=False) as hsm:
        client = hsm.client()
        pem = client.request("GET", "/keys/p256key/public.pem", hsm.operator).data
        client.request("PUT", "/keys/p256key/cert", hsm.admin, body=_certificate_for(pem),
                       headers={"Content-Type": "application/octet-stream"})
        # passwords in the config: every NetHSM request needs Basic auth, so without them even the
        # (PKCS#11-public) certificates stay invisible until a login, and `certutil -L` never logs in
        conf = write_config(tmp_path / "p11nethsm.conf",
                            [slot_yaml(LABEL, hsm.url, hsm.fingerprint, passwords=True)],
                            log_file=tmp_path / "module.log")
        env = {"P11NETHSM_CONFIG_FILE": conf, "PATH": "/usr/bin:/bin"}
        db = f"sql:{tmp_path / 'nssdb'}"
        (tmp_path / "nssdb").mkdir()
        (tmp_path / "pin.txt").write_text(hsm.operator[1] + "\n")

        def run(*args):
            r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, input="\n")
            assert r.returncode == 0, f"{args}: {r.stdout}{r.stderr}"
            return r.stdout

        run("certutil", "-N", "-d", db, "--empty-password")
        run("modutil", "-force", "-dbdir", db, "-add", "p11nethsm", "-libfile", MODULE)
        yield run, db, tmp_path / "pin.txt"


def test_nss_lists_the_token(nss):
    run, db, _ = nss
    out = run("modutil", "-dbdir", db, "-list", "p11nethsm")
    assert f"Token Name: {LABEL}" in out or f"token: {LABEL}" in out, out
    assert "Nitrokey" in out, out


def test_nss_finds_the_certificate_and_its_key(nss):
    run, db, pin = nss
    certs = run("certutil", "-L", "-d", db, "-h", "all")
    assert f"{LABEL}:p256key" in certs, certs
    keys = run("certutil", "-K", "-d", db, "-h", LABEL, "-f", str(pin))
    # `< 0> ec  "<key label>"  <nickname of the certificate that goes with it>`
    assert re.search(r'^<\s*\d+>\s+ec\s+"p256key"\s+p256key\s*$', keys, re.M), keys
