"""GnuTLS as users run it: `p11tool --generate-privkey` as SO makes a key pair on the NetHSM,
then `certtool --generate-self-signed` signs a certificate with the new key's pkcs11: URIs.
p11tool always gives the key a label and a CKA_ID, so this needs firmware with key labels
(NetHSM 5.0); on older firmware the module refuses the label (test_so_points.py)."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from clientenv import ADMIN, MODULE, Env, need, write_conf
from nethsm_emulator.testing import start_emulator

TOKEN = "pkcs11:token=NetHSM-emu"


@pytest.fixture(scope="module")
def gnutls(tmp_path_factory):
    need("p11tool", "certtool")
    work = tmp_path_factory.mktemp("gnutls")
    with start_emulator(provisioned=True, keys={}, throttle=False, labels=True) as hsm:
        yield Env(hsm, work, write_conf(work / "p11nethsm.conf", hsm, work / "module.log"), b"")


@pytest.mark.parametrize("algo,extra", [("ECDSA", ["--curve", "secp384r1"]), ("RSA", ["--bits", "2048"])])
def test_p11tool_generate_privkey_then_certtool_self_signed(gnutls, algo, extra):
    env = gnutls
    label = f"gnutls-{algo.lower()}"
    e = env.env
    e["GNUTLS_SO_PIN"] = ADMIN[1]
    import subprocess

    r = subprocess.run(["p11tool", "--provider", str(MODULE), "--so-login", "--generate-privkey", algo, *extra,
                        "--label", label, "--outfile", f"{label}.pub.pem", TOKEN], env=e, cwd=env.workdir,
                       capture_output=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    (env.workdir / f"{label}.tmpl").write_text(f'cn = "{label}"\nexpiration_days = 2\nca\ncert_signing_key\n')
    env.run("certtool", "--provider", MODULE, "--generate-self-signed",
            "--load-privkey", f"{TOKEN};object={label};type=private",
            "--load-pubkey", f"{TOKEN};object={label};type=public",
            "--template", f"{label}.tmpl", "--outfile", f"{label}.crt")
    out = env.run("certtool", "--verify", "--load-ca-certificate", f"{label}.crt",
                  "--infile", f"{label}.crt").stdout.decode()
    assert "Chain verification output: Verified" in out, out
    # the certificate is for the key p11tool made on the NetHSM
    cert = x509.load_pem_x509_certificate((env.workdir / f"{label}.crt").read_bytes())
    keys = [k["id"] for k in env.rest("GET", "/keys").json()
            if env.rest("GET", f"/keys/{k['id']}").json().get("label") == label]
    assert len(keys) == 1, keys
    on_hsm = serialization.load_pem_public_key(env.rest("GET", f"/keys/{keys[0]}/public.pem").data)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*spki) == on_hsm.public_bytes(*spki)
