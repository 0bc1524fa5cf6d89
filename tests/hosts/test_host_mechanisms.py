"""python-pkcs11 as the host of the built module against the emulator (real TLS): the SHA-3
mechanisms sign on the NetHSM and their signatures verify with `cryptography`; SHA-3 digests
equal hashlib's; and C_GetMechanismList / C_GetMechanismInfo as a client sees them are exactly
the mechanism records of p11nethsm/mechanisms/*.

python-pkcs11 0.10 has no ECDSA_SHA3_* members and takes only Mechanism members: the script
makes pseudo-members with the CKM values of p11nethsm.ck.constants (python-pkcs11 passes the
member's int to C_SignInit)."""

from __future__ import annotations

import json
import subprocess

from hostenv import LABEL
from hostenv import MODULE, PY, ROOT

SHA3_SIGN = r"""
import hashlib, sys
import pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from p11nethsm.ck.constants import CKM

def M(name):
    if name in Mechanism.__members__:
        return Mechanism[name]
    m = int.__new__(Mechanism, CKM[name])
    m._name_, m._value_ = name, int(CKM[name])
    return m

module, label, ec_pem, rsa_pem = sys.argv[1:5]
ec_pub = serialization.load_pem_public_key(open(ec_pem, "rb").read())
rsa_pub = serialization.load_pem_public_key(open(rsa_pem, "rb").read())
token = pkcs11.lib(module).get_token(token_label=label)
data = b"SHA-3 through the NetHSM PKCS1 and ECDSA modes" * 7
done = []
with token.open(user_pin="opPassphrase") as s:
    rsak = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.RSA, label="rsakey")
    eck = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="p256key")
    for bits in (224, 256, 384, 512):
        algo = getattr(hashes, f"SHA3_{bits}")()
        sig = rsak.sign(data, mechanism=M(f"SHA3_{bits}_RSA_PKCS"))
        rsa_pub.verify(sig, data, padding.PKCS1v15(), algo)
        raw = eck.sign(data, mechanism=M(f"ECDSA_SHA3_{bits}"))
        half = len(raw) // 2
        der = encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
        # P-256: the SHA3-384/512 digest is truncated to the order's 256 bits, as ECDSA says,
        # which is what cryptography does with the full digest
        ec_pub.verify(der, data, ec.ECDSA(algo))
        # and the module verifies a signature cryptography made
        pub = s.get_key(object_class=ObjectClass.PUBLIC_KEY, key_type=KeyType.EC, label="p256key")
        assert pub.verify(data, raw, mechanism=M(f"ECDSA_SHA3_{bits}"))
        assert s.digest(data, mechanism=M(f"SHA3_{bits}")) == hashlib.new(f"sha3_{bits}", data).digest()
        done.append(bits)
print("ok", done)
"""

MECH_INFO = r"""
import json, sys
import pkcs11
module, label = sys.argv[1:3]
slot = pkcs11.lib(module).get_token(token_label=label).slot
out = []
for m in slot.get_mechanisms():
    i = slot.get_mechanism_info(m)
    out.append([int(m), i.min_key_length, i.max_key_length, int(i.flags)])
print(json.dumps(out))
"""


def _run(hosts_hsm, script, *args):
    return subprocess.run([PY, "-c", script, MODULE, LABEL, *args], env=hosts_hsm["env"], capture_output=True,
                          text=True, timeout=180, cwd=ROOT)


def test_sha3_rsa_pkcs_ecdsa_and_digests_through_the_module(hosts_hsm):
    pems = hosts_hsm["pems"]
    r = _run(hosts_hsm, SHA3_SIGN, str(pems["p256key"]), str(pems["rsakey"]))
    assert r.returncode == 0 and r.stdout.strip() == "ok [224, 256, 384, 512]", r.stdout + r.stderr


def test_mechanism_list_and_info_seen_by_a_client_are_the_records(hosts_hsm):
    from p11nethsm.mechanisms.registry import RECORDS

    r = _run(hosts_hsm, MECH_INFO)
    assert r.returncode == 0, r.stderr
    seen = sorted(json.loads(r.stdout))  # python-pkcs11 returns the list as a set
    assert seen == sorted([int(rec.ckm), rec.min_key, rec.max_key, int(rec.flags)] for rec in RECORDS)
    assert len(seen) == len(RECORDS)
