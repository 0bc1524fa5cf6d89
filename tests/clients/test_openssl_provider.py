"""OpenSSL 3 with pkcs11-provider (Debian: bookworm-backports), the main OpenSSL path: store
listing by pkcs11: URI, signatures verified by plain openssl, certificates, TLS servers whose key
is on the token, and key generation through the provider. Firmware with key labels (the
provider names generated keys by label with a random CKA_ID)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from clientenv import ADMIN, MODULE, OPERATOR, Env, add_key_with_cert, need, write_conf
from nethsm_emulator.provision import STANDARD_KEYS
from nethsm_emulator.testing import start_emulator

PROVIDER = Path("/usr/lib/x86_64-linux-gnu/ossl-modules/pkcs11.so")
TOKEN = "pkcs11:token=NetHSM-emu"


@pytest.fixture(scope="module")
def prov(tmp_path_factory):
    need("openssl")
    if not PROVIDER.exists():
        pytest.skip("pkcs11-provider not installed (make deps installs it from bookworm-backports)")
    work = tmp_path_factory.mktemp("provider")
    keys = {k: STANDARD_KEYS[k] for k in ("rsakey", "p256key", "p384key", "edkey")}
    with start_emulator(provisioned=True, keys=keys, throttle=False, labels=True) as hsm:
        add_key_with_cert(hsm, "withcert", ec.generate_private_key(ec.SECP256R1()), "EC_P256", ["ECDSA_Signature"])
        conf = write_conf(work / "p11nethsm.conf", hsm, work / "module.log")
        cnf = work / "openssl-provider.cnf"
        cnf.write_text(f"""openssl_conf = openssl_init
[openssl_init]
providers = provider_sect
[provider_sect]
default = default_sect
pkcs11 = pkcs11_sect
[default_sect]
activate = 1
[pkcs11_sect]
module = {PROVIDER}
pkcs11-module-path = {MODULE}
activate = 1
""")
        (work / "plain.cnf").write_text("")
        (work / "data").write_bytes(b"signed through pkcs11-provider\n" * 10)
        yield Env(hsm, work, conf, b""), cnf


def ossl(prov, *args, check=True, timeout=120):
    env, cnf = prov
    e = env.env
    e["OPENSSL_CONF"] = str(cnf)
    r = subprocess.run(["openssl", *map(str, args)], env=e, cwd=env.workdir, capture_output=True, timeout=timeout)
    if check:
        assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-3000:]
    return r


def plain(prov, *args):
    """openssl without the provider (OPENSSL_CONF = an empty file)."""
    env, _ = prov
    e = env.env
    e["OPENSSL_CONF"] = str(env.workdir / "plain.cnf")
    r = subprocess.run(["openssl", *map(str, args)], env=e, cwd=env.workdir, capture_output=True, timeout=60)
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-3000:]
    return r.stdout + r.stderr


def key(obj: str, kind="private") -> str:
    return f"{TOKEN};object={obj};type={kind}"


def test_storeutl_lists_keys_and_certificates_by_label_and_by_id(prov):
    out = ossl(prov, "storeutl", TOKEN).stdout.decode()
    assert out.count("Pkey") == 5 and out.count("Public key") == 5 and out.count("Certificate") == 1, out
    by_label = ossl(prov, "storeutl", "-keys", "-text", key("p384key")).stdout.decode()
    assert "EC Private Key (384 bits)" in by_label and "Total found: 1" in by_label, by_label
    pct = "".join(f"%{c:02x}" for c in b"p384key")
    by_id = ossl(prov, "storeutl", "-keys", f"{TOKEN};id={pct};type=private").stdout.decode()
    assert "Total found: 1" in by_id
    cert = ossl(prov, "storeutl", "-certs", f"{TOKEN};object=withcert;type=cert").stdout.decode()
    assert "BEGIN CERTIFICATE" in cert and "Total found: 1" in cert


@pytest.mark.parametrize("obj,opts", [
    ("rsakey", []),
    ("rsakey", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:digest"]),
    ("p256key", []),
    ("p384key", []),
])
def test_dgst_sign_verified_by_plain_openssl(prov, obj, opts):
    env, _ = prov
    pub = env.public_pem(obj)
    ossl(prov, "dgst", "-sha256", "-sign", key(obj), *opts, "-out", f"{obj}.dgst.sig", "data")
    assert "Verified OK" in plain(prov, "dgst", "-sha256", "-verify", pub, *opts, "-signature",
                                  f"{obj}.dgst.sig", "data").decode()


@pytest.mark.parametrize("obj,opts", [
    ("rsakey", ["-pkeyopt", "digest:sha384"]),
    ("rsakey", ["-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "digest:sha384",
                "-pkeyopt", "rsa_pss_saltlen:digest"]),
    ("p256key", []),
    ("p384key", []),
])
def test_pkeyutl_sign_of_a_digest_verified_by_plain_openssl(prov, obj, opts):
    env, _ = prov
    import hashlib

    (env.workdir / "h384").write_bytes(hashlib.sha384(b"x").digest())
    pub = env.public_pem(obj)
    ossl(prov, "pkeyutl", "-sign", "-inkey", key(obj), *opts, "-in", "h384", "-out", f"{obj}.pk.sig")
    assert "Signature Verified Successfully" in plain(prov, "pkeyutl", "-verify", "-pubin", "-inkey", pub, *opts,
                                                      "-in", "h384", "-sigfile", f"{obj}.pk.sig").decode()


def test_ed25519_pkeyutl_sign_verified_by_plain_openssl(prov):
    env, _ = prov
    pub = env.public_pem("edkey")
    ossl(prov, "pkeyutl", "-sign", "-rawin", "-inkey", key("edkey"), "-in", "data", "-out", "ed.sig")
    assert "Signature Verified Successfully" in plain(prov, "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin",
                                                      "-in", "data", "-sigfile", "ed.sig").decode()


def test_req_x509_and_x509_req_sign_with_token_keys(prov):
    ossl(prov, "req", "-new", "-x509", "-key", key("rsakey"), "-subj", "/CN=token CA", "-days", "3",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
         "-out", "ca.pem")
    ossl(prov, "req", "-new", "-key", key("p256key"), "-subj", "/CN=leaf", "-out", "leaf.csr")
    assert b"verify OK" in ossl(prov, "req", "-in", "leaf.csr", "-verify", "-noout").stderr + \
        ossl(prov, "req", "-in", "leaf.csr", "-verify", "-noout").stdout
    ossl(prov, "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", key("rsakey"), "-days", "2",
         "-CAcreateserial", "-out", "leaf.pem")
    assert b"leaf.pem: OK" in plain(prov, "verify", "-CAfile", "ca.pem", "leaf.pem")


def _serve(prov, obj: str, proto: str):
    """s_server with the token key on an ephemeral port; s_client (plain openssl) verifies."""
    env, cnf = prov
    cert = f"{obj}.tls.pem"
    if not (env.workdir / cert).exists():
        ossl(prov, "req", "-new", "-x509", "-key", key(obj), "-subj", "/CN=localhost", "-days", "2",
             "-addext", "subjectAltName=IP:127.0.0.1", "-out", cert)
    e = env.env
    e["OPENSSL_CONF"] = str(cnf)
    server = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-naccept", "1", "-cert", cert,
                               "-key", key(obj), proto], env=e, cwd=env.workdir, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        port = None
        for line in server.stdout:
            m = re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        assert port, "s_server did not start"
        e["OPENSSL_CONF"] = str(env.workdir / "plain.cnf")
        client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-CAfile", cert,
                                 "-verify_return_error", "-verify_ip", "127.0.0.1", "-brief", proto],
                                input=b"", env=e, cwd=env.workdir, capture_output=True, timeout=60)
        return client
    finally:
        server.kill()
        server.wait(timeout=10)


@pytest.mark.parametrize("proto", ["-tls1_3", "-tls1_2"])
@pytest.mark.parametrize("obj,sigtype", [("rsakey", "RSA"), ("p256key", "ECDSA"), ("edkey", "Ed25519")])
def test_tls_server_key_on_token_client_verifies(prov, obj, sigtype, proto):
    r = _serve(prov, obj, proto)
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, out
    assert "Verification: OK" in out, out
    assert f"Protocol version: TLSv1.{proto[-1]}" in out, out
    # TLS 1.3 signs with RSA-PSS; 1.2 may use PKCS#1 v1.5 ("RSA")
    assert re.search(rf"Signature type: {sigtype}(-PSS)?\n", out, re.IGNORECASE), out


@pytest.mark.parametrize("alg,opts", [("EC", ["-pkeyopt", "ec_paramgen_curve:P-256"]),
                                      ("RSA", ["-pkeyopt", "rsa_keygen_bits:2048"])])
def test_genpkey_through_the_provider_then_use_by_label(prov, alg, opts):
    env, _ = prov
    label = f"gen-{alg.lower()}"
    # genpkey makes the key on the token, then fails to write it out ("Error writing key": a
    # token key has no PEM); what counts is the key, by its label
    ossl(prov, "genpkey", "-propquery", "provider=pkcs11", "-algorithm", alg, *opts,
         "-pkeyopt", f"pkcs11_uri:{TOKEN};object={label}", check=False)
    keys = env.rest("GET", "/keys").json()
    labelled = [k["id"] for k in keys if env.rest("GET", f"/keys/{k['id']}").json().get("label") == label]
    assert len(labelled) == 1, keys
    ossl(prov, "pkey", "-pubin", "-in", key(label, "public"), "-out", f"{label}.pub.pem")
    ossl(prov, "dgst", "-sha256", "-sign", key(label), "-out", f"{label}.sig", "data")
    assert b"Verified OK" in plain(prov, "dgst", "-sha256", "-verify", f"{label}.pub.pem", "-signature",
                                   f"{label}.sig", "data")
    env.rest("DELETE", f"/keys/{labelled[0]}")


def test_password_is_not_needed_in_the_uri_when_configured(prov):
    """The operator password comes from the module config: no pin-value, no prompt (stdin closed)."""
    env, _ = prov
    assert OPERATOR[1] not in key("p256key") and ADMIN[1] not in key("p256key")
    r = ossl(prov, "dgst", "-sha256", "-sign", key("p256key"), "-out", "nopin.sig", "data")
    assert r.returncode == 0
