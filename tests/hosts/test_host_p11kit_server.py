"""`p11-kit server` runs the module out of process (in `p11-kit remote`, which speaks the RPC over
its stdin/stdout: one stray byte from the module on stdout breaks every call), and pkcs11-tool
reaches it through p11-kit-client.so: the token is listed and an ECDSA signature made through
the RPC verifies."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

from hostenv import LABEL, need
from hostenv import MODULE

CLIENT = "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so"


@pytest.fixture
def server(hosts_hsm, tmp_path):
    need("p11-kit", "pkcs11-tool")
    if not os.path.exists(CLIENT):
        pytest.skip("p11-kit-client.so not installed")
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    socket = runtime / "p11nethsm.sock"
    env = dict(hosts_hsm["env"], XDG_RUNTIME_DIR=str(runtime))
    proc = subprocess.Popen(["p11-kit", "server", "-f", "--provider", MODULE, "-n", str(socket),
                             f"pkcs11:token={LABEL}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not socket.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if not socket.exists():
        proc.kill()
        pytest.fail(f"p11-kit server did not start: {proc.stderr.read().decode()[-2000:]}")
    try:
        yield dict(env, P11_KIT_SERVER_ADDRESS=f"unix:path={socket}")
    finally:
        proc.terminate()
        proc.wait(10)


def tool(env, *args):
    r = subprocess.run(["pkcs11-tool", "--module", CLIENT, *args], env=env, capture_output=True,
                       timeout=120)
    assert r.returncode == 0, (r.stdout + r.stderr).decode()[-3000:]
    return r.stdout.decode()


def test_token_is_listed_through_the_p11kit_rpc(server):
    out = tool(server, "-L")
    assert f"token label        : {LABEL}" in out, out
    assert "Nitrokey" in out, out


def test_ecdsa_signature_through_the_p11kit_rpc_verifies(server, hosts_hsm, tmp_path):
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"through p11-kit")
    (tmp_path / "h.bin").write_bytes(digest.finalize())
    tool(server, "--login", "--pin", hosts_hsm["hsm"].operator[1], "--sign", "--id", b"p256key".hex(),
         "-m", "ECDSA", "-i", str(tmp_path / "h.bin"), "-o", str(tmp_path / "sig.bin"))
    sig = (tmp_path / "sig.bin").read_bytes()
    assert len(sig) == 64  # raw r||s, as PKCS#11 wants
    pub = serialization.load_pem_public_key(hosts_hsm["pems"]["p256key"].read_bytes())
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub.verify(der, (tmp_path / "h.bin").read_bytes(), ec.ECDSA(utils.Prehashed(hashes.SHA256())))


OTHER_MINOR_HOST = r"""
import sys
import pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

client, label, pin, pem = sys.argv[1:5]
token = pkcs11.lib(client).get_token(token_label=label)
with token.open(user_pin=pin) as s:
    key = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="p256key")
    h = hashes.Hash(hashes.SHA256())
    h.update(b"other CPython")
    digest = h.finalize()
    sig = key.sign(digest, mechanism=Mechanism.ECDSA)  # as pkcs11-tool above (ECDSA_SHA256 through p11-kit 0.24: CKR_MECHANISM_INVALID)
der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
serialization.load_pem_public_key(open(pem, "rb").read()).verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
print("ok", sys.version.split()[0])
"""


def test_python_pkcs11_of_another_cpython_uses_the_module_through_p11kit(server, hosts_hsm):
    """The README's way for a host of another CPython minor than the module's: out of process."""
    import json
    import sys

    this = f"{sys.version_info[0]}.{sys.version_info[1]}"
    matrix = os.environ.get("P11NETHSM_MATRIX_PYTHONS")
    others = {}
    if matrix and os.path.exists(matrix):
        others = {m: v for m, v in json.load(open(matrix)).items() if m != this}
    if not others:
        pytest.skip("no venv of another CPython minor here (make test builds one per minor it finds)")
    for minor, other in sorted(others.items()):
        r = subprocess.run([other["python"], "-c", OTHER_MINOR_HOST, CLIENT, LABEL, hosts_hsm["hsm"].operator[1],
                            str(hosts_hsm["pems"]["p256key"])], env=server, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0 and r.stdout.startswith(f"ok {other['version']}"), (minor, r.stdout + r.stderr)
