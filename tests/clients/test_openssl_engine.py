"""The libp11 OpenSSL engine (libengine-pkcs11-openssl): sign with RSA/EC keys and make a CSR.
Uses a NetHSM without Ed25519 keys: libp11 0.4.12 gives up on a token that holds one."""

from pathlib import Path

import pytest

from clientenv import MODULE, need

ENGINE = Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so")


@pytest.fixture(scope="module")
def engine_env(rsa_ec_only):
    need("openssl")
    if not ENGINE.exists():
        pytest.skip("libengine-pkcs11-openssl not installed")
    cnf = rsa_ec_only.workdir / "openssl-engine.cnf"
    cnf.write_text(f"""openssl_conf = openssl_init
[openssl_init]
engines = engine_section
[engine_section]
pkcs11 = pkcs11_section
[pkcs11_section]
engine_id = pkcs11
dynamic_path = {ENGINE}
MODULE_PATH = {MODULE}
init = 0
""")
    return rsa_ec_only, cnf


def run(env, cnf, *args):
    e = env.env
    e["OPENSSL_CONF"] = str(cnf)
    import subprocess

    r = subprocess.run(["openssl", *args], env=e, cwd=env.workdir, capture_output=True, timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    return r


@pytest.mark.parametrize("obj", ["rsakey", "p256key"])
def test_csr_verifies(engine_env, obj):
    env, cnf = engine_env
    run(env, cnf, "req", "-new", "-engine", "pkcs11", "-keyform", "engine",
        "-key", f"pkcs11:token=NetHSM-emu;object={obj};type=private;pin-value=opPassphrase",
        "-subj", f"/CN={obj}", "-out", f"{obj}.csr")
    r = run(env, cnf, "req", "-in", f"{obj}.csr", "-verify", "-noout")
    assert b"verify OK" in r.stdout + r.stderr


def test_pkeyutl_sign(engine_env):
    env, cnf = engine_env
    import hashlib

    (env.workdir / "h.bin").write_bytes(hashlib.sha256(b"x").digest())
    run(env, cnf, "pkeyutl", "-engine", "pkcs11", "-keyform", "engine", "-sign",
        "-inkey", "pkcs11:token=NetHSM-emu;object=p256key;type=private;pin-value=opPassphrase",
        "-in", "h.bin", "-out", "sig.bin")
    pub = env.public_pem("p256key")
    import subprocess

    r = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-in", "h.bin",
                        "-sigfile", "sig.bin"], cwd=env.workdir, capture_output=True)
    assert b"Verified Successfully" in r.stdout, r.stdout + r.stderr
