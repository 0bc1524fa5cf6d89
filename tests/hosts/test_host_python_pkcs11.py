"""python-pkcs11 0.10.1 as the host (the venv's 3.11 python: host mode): open the token by label,
log in, list keys, sign with an EC and an RSA key and verify with cryptography, from 4 threads at
once. The login is per token (spec §6.7: a second C_Login is CKR_USER_ALREADY_LOGGED_IN, which
python-pkcs11 raises), so the main thread logs in on a session it keeps open and each of the 4
threads opens its own session, which shares that login.

`make test` runs this under every CPython minor with the module built by that minor; the host of
another minor (the other venvs of the run, $P11NETHSM_MATRIX_PYTHONS) is refused with the
module's one-CPython-per-process message and an error, not a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hostenv import LABEL
from hostenv import MODULE, PY, ROOT

SCRIPT = r"""
import sys, threading
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

module, label, ec_pem, rsa_pem = sys.argv[1:5]
ec_pub = serialization.load_pem_public_key(open(ec_pem, "rb").read())
rsa_pub = serialization.load_pem_public_key(open(rsa_pem, "rb").read())
lib = pkcs11.lib(module)
token = lib.get_token(token_label=label)
assert token.manufacturer_id.startswith("Nitrokey"), token.manufacturer_id
login = token.open(user_pin="opPassphrase")
errors, done = [], []
barrier = threading.Barrier(4)

def work(n):
    try:
        barrier.wait(30)
        with token.open() as s:
            labels = sorted(k.label for k in s.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            assert labels == ["p256key", "rsakey"], labels
            for i in range(3):
                data = f"thread {n} message {i}".encode()
                eck = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="p256key")
                raw = eck.sign(data, mechanism=Mechanism.ECDSA_SHA256)
                half = len(raw) // 2
                der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
                ec_pub.verify(der, data, ec.ECDSA(hashes.SHA256()))
                rsak = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.RSA, label="rsakey")
                sig = rsak.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
                rsa_pub.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        done.append(n)
    except Exception as exc:
        errors.append(f"thread {n}: {type(exc).__name__}: {exc}")

threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in threads: t.start()
for t in threads: t.join(120)
assert not errors, errors
assert sorted(done) == [0, 1, 2, 3], done
login.close()
print("ok", len(done), "threads x 3 EC + 3 RSA signatures verified")
"""


def test_python_pkcs11_four_threads_sign_and_verify(hosts_hsm):
    pems = hosts_hsm["pems"]
    r = subprocess.run([PY, "-c", SCRIPT, MODULE, LABEL, str(pems["p256key"]), str(pems["rsakey"])],
                       env=hosts_hsm["env"], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith("ok 4 threads"), r.stdout + r.stderr
    log = (hosts_hsm["dir"] / "module.log").read_text()
    assert "C_Login(" in log and "= CKR_OK" in log


REFUSED = r"""
import sys, pkcs11
try:
    pkcs11.lib(sys.argv[1])
except pkcs11.exceptions.PKCS11Error as exc:
    print("refused", type(exc).__name__)
else:
    print("loaded")
"""


def test_python_pkcs11_host_of_another_cpython_is_refused_clearly(hosts_hsm):
    this = f"{sys.version_info[0]}.{sys.version_info[1]}"
    matrix = os.environ.get("P11NETHSM_MATRIX_PYTHONS")
    others = {}
    if matrix and os.path.exists(matrix):
        others = {m: v for m, v in json.load(open(matrix)).items() if m != this}
    if not others:
        pytest.skip("no venv of another CPython minor here (make test builds one per minor it finds)")
    for minor, other in sorted(others.items()):
        r = subprocess.run([other["python"], "-c", REFUSED, MODULE], env=hosts_hsm["env"], capture_output=True,
                           text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0 and r.stdout.startswith("refused"), (minor, r.stdout + r.stderr)
        assert (f"this module was built for CPython {this}, but the process already runs CPython "
                f"{other['version']}") in r.stderr, (minor, r.stderr)
        assert "one CPython per process: refusing C_Initialize" in r.stderr, (minor, r.stderr)
