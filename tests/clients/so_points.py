"""A C host (ctypes on the built .so, in its own process) checking what clients expect of
PKCS#11 objects: binary labels, key pair deletion in either order, session objects, argument
checks before state checks, C_GenerateRandom in a public session, CKM_RSA_X_509 signing.

    python so_points.py SCENARIO BASE_URL FINGERPRINT   (P11NETHSM_CONFIG_FILE set by the caller)

Prints "ok" at the end; any failed check raises. Driven by test_so_points.py."""

from __future__ import annotations

import ctypes
import os
import sys

from tests.p11calls import SO, b, ul  # run as `python -m tests.clients.so_points` from the root

from nethsm_emulator.provision import ADMIN, NetHSM  # noqa: E402
from p11nethsm.ck.constants import CKA, CKK, CKM, CKO, CKR  # noqa: E402
from p11nethsm.ck.structs import CK_MECHANISM_INFO  # noqa: E402

P256 = bytes.fromhex("06082a8648ce3d030107")
so = SO()
rest = NetHSM(sys.argv[2], sys.argv[3])


def rv(name, *args) -> CKR:
    return CKR(so(name, *args))


def expect(code: CKR, name, *args):
    got = rv(name, *args)
    assert got == code, f"{name}: {got.name}, expected {code.name}"


def key_status(key_id: str) -> int:
    return rest.request("GET", f"/keys/{key_id}", ADMIN, expect=None).status


def keypair(s, label: bytes | None = None, ck_id: bytes | None = None, token=True):
    pub = [(CKA.EC_PARAMS, P256), (CKA.TOKEN, b(True)), (CKA.VERIFY, b(True))]
    priv = [(CKA.TOKEN, b(token)), (CKA.SIGN, b(True))]
    for extra in ((CKA.LABEL, label), (CKA.ID, ck_id)):
        if extra[1] is not None:
            pub.append(extra)
            priv.append(extra)
    hpub, hpriv = ctypes.c_ulong(), ctypes.c_ulong()
    code = rv("C_GenerateKeyPair", s, so.mech(CKM.EC_KEY_PAIR_GEN), *so.template(pub), *so.template(priv),
              hpub, hpriv)
    return code, hpub.value, hpriv.value


def by_label(s, label: bytes, cls=None) -> list[int]:
    return so.find(s, ([so.cls(cls)] if cls is not None else []) + [(CKA.LABEL, label)])


# ---------------------------------------------------------------- 2. labels are bytes
def labels_firmware_with_labels():
    s = so.open()
    label = bytes(range(0xF0, 0x100))  # 16 bytes, not UTF-8
    code, hpub, hpriv = keypair(s, label=label, ck_id=b"\x01\x02")
    assert code == CKR.OK, code.name
    assert sorted(by_label(s, label)) == sorted([hpub, hpriv])
    assert so.attr(s, hpriv, CKA.LABEL) == label and so.attr(s, hpub, CKA.LABEL) == label
    stored = rest.request("GET", "/keys/0---0102", ADMIN).json()["label"]
    assert stored.startswith("b64:"), stored
    # a fresh module (no cache) reads the same bytes back from the NetHSM
    so.ok("C_Finalize", None)
    so.ok("C_Initialize", None)
    s = so.open()
    assert len(by_label(s, label)) == 2
    # text labels stay text on the NetHSM
    code, _, hpriv2 = keypair(s, label="clé ✓".encode(), ck_id=b"k2")
    assert code == CKR.OK and rest.request("GET", "/keys/k2", ADMIN).json()["label"] == "clé ✓"
    # a label too long once stored: refused (not silently dropped), nothing generated
    before = rest.request("GET", "/keys", ADMIN).json()
    code, _, _ = keypair(s, label=b"L" * 50, ck_id=b"k3")
    assert code == CKR.ATTRIBUTE_VALUE_INVALID, code.name
    assert rest.request("GET", "/keys", ADMIN).json() == before
    # C_SetAttributeValue with a binary label
    new = b"\x00\xffnew"
    so.ok("C_SetAttributeValue", s, hpriv2, *so.template([(CKA.LABEL, new)]))
    assert by_label(s, new, CKO.PRIVATE_KEY) == [hpriv2]


def labels_firmware_without_labels():
    s = so.open()
    label = bytes(range(0xE0, 0xF4))  # 20 random-looking bytes, no CKA_ID: the label names the key
    code, hpub, hpriv = keypair(s, label=label)
    assert code == CKR.OK, code.name
    assert key_status("0---" + label.hex().upper()) == 200
    assert sorted(by_label(s, label)) == sorted([hpub, hpriv])
    assert so.attr(s, hpriv, CKA.LABEL) == label
    # CKA_ID plus another label: this firmware cannot store it -> refused, nothing generated
    code, _, _ = keypair(s, label=b"other", ck_id=b"kid9")
    assert code == CKR.ATTRIBUTE_VALUE_INVALID, code.name
    assert key_status("kid9") == 404
    # a label that cannot even name a key (more than 62 binary bytes)
    code, _, _ = keypair(s, label=b"\xff" * 70)
    assert code == CKR.ATTRIBUTE_VALUE_INVALID, code.name


# ---------------------------------------------------------------- 3. key pairs
def keypair_delete_private_first():
    s = so.open()
    code, hpub, hpriv = keypair(s, ck_id=b"pairA")
    assert code == CKR.OK
    so.ok("C_DestroyObject", s, hpriv)
    assert key_status("pairA") == 404
    # another key appears under the same id: destroying the old public handle must not touch it
    rest.generate_key("pairA", {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]}, ADMIN)
    so.ok("C_DestroyObject", s, hpub)
    assert key_status("pairA") == 200, "the second destroy deleted the NetHSM key again"
    for h in (hpub, hpriv):
        expect(CKR.OBJECT_HANDLE_INVALID, "C_DestroyObject", s, h)
        expect(CKR.OBJECT_HANDLE_INVALID, "C_GetAttributeValue", s, h, *so.template([(CKA.ID, b"")]))
    expect(CKR.KEY_HANDLE_INVALID, "C_SignInit", s, so.mech(CKM.ECDSA), hpriv)
    expect(CKR.KEY_HANDLE_INVALID, "C_VerifyInit", s, so.mech(CKM.ECDSA), hpub)


def keypair_delete_public_first():
    s = so.open()
    code, hpub, hpriv = keypair(s, ck_id=b"pairB")
    assert code == CKR.OK
    so.ok("C_DestroyObject", s, hpub)
    assert key_status("pairB") == 200  # the private key is not lost
    assert so.find(s, [so.cls(CKO.PUBLIC_KEY), (CKA.ID, b"pairB")]) == []
    assert len(so.sign(s, hpriv, CKM.ECDSA, b"\x11" * 32)) == 64
    so.ok("C_DestroyObject", s, hpriv)
    assert key_status("pairB") == 404
    for h in (hpub, hpriv):
        expect(CKR.OBJECT_HANDLE_INVALID, "C_DestroyObject", s, h)
        expect(CKR.OBJECT_HANDLE_INVALID, "C_GetAttributeValue", s, h, *so.template([(CKA.ID, b"")]))


# ---------------------------------------------------------------- 4. session objects
def _rsa_token_keys(s):
    priv = so.key(s, b"rsakey")
    pub = so.key(s, b"rsakey", CKO.PUBLIC_KEY)
    return priv, pub, so.attr(s, pub, CKA.MODULUS), so.attr(s, pub, CKA.PUBLIC_EXPONENT)


def session_objects():
    rw = so.open()
    s = so.open(rw=False)  # read-only: session objects may still be created
    priv, _, n, e = _rsa_token_keys(s)
    h = ctypes.c_ulong()
    so.ok("C_CreateObject", s, *so.template([so.cls(CKO.PUBLIC_KEY), (CKA.KEY_TYPE, ul(CKK.RSA)),
                                             (CKA.TOKEN, b(False)), (CKA.LABEL, b"session rsa"),
                                             (CKA.MODULUS, n), (CKA.PUBLIC_EXPONENT, e)]), h)
    spub = h.value
    assert so.attr(s, spub, CKA.TOKEN) == b"\x00" and so.attr(s, spub, CKA.MODULUS) == n
    sig = so.sign(s, priv, CKM.SHA256_RSA_PKCS, b"message")
    so.ok("C_VerifyInit", s, so.mech(CKM.SHA256_RSA_PKCS), spub)
    so.ok("C_Verify", s, b"message", 7, sig, len(sig))
    so.ok("C_VerifyInit", s, so.mech(CKM.SHA256_RSA_PKCS), spub)
    expect(CKR.SIGNATURE_INVALID, "C_Verify", s, b"massage", 7, sig, len(sig))
    so.ok("C_EncryptInit", s, so.mech(CKM.RSA_PKCS), spub)
    ct = so.out("C_Encrypt", s, b"secret", 6)
    so.ok("C_DecryptInit", s, so.mech(CKM.RSA_PKCS), priv)
    assert so.out("C_Decrypt", s, ct, len(ct)) == b"secret"
    # an EC session public key from the token key's point
    ecpub = so.key(s, b"p256key", CKO.PUBLIC_KEY)
    so.ok("C_CreateObject", s, *so.template([so.cls(CKO.PUBLIC_KEY), (CKA.KEY_TYPE, ul(CKK.EC)),
                                             (CKA.EC_PARAMS, P256), (CKA.EC_POINT, so.attr(s, ecpub, CKA.EC_POINT))]), h)
    sec = h.value  # no CKA_TOKEN: the spec's default is a session object
    sig = so.sign(s, so.key(s, b"p256key"), CKM.ECDSA, b"\x22" * 32)
    so.ok("C_VerifyInit", s, so.mech(CKM.ECDSA), sec)
    so.ok("C_Verify", s, b"\x22" * 32, 32, sig, len(sig))
    # data and certificate objects
    so.ok("C_CreateObject", s, *so.template([so.cls(CKO.DATA), (CKA.TOKEN, b(False)), (CKA.LABEL, b"d"),
                                             (CKA.APPLICATION, b"app"), (CKA.VALUE, b"\x00data\xff")]), h)
    data = h.value
    assert so.attr(s, data, CKA.VALUE) == b"\x00data\xff"
    found = so.find(rw, [(CKA.TOKEN, b(False))])  # every session of the process sees them
    assert sorted(found) == sorted([spub, sec, data]), found
    assert spub not in so.find(s, [(CKA.TOKEN, b(True))])
    # session private and secret keys: one code, never CKR_SESSION_READ_ONLY
    for tpl in ([so.cls(CKO.PRIVATE_KEY), (CKA.TOKEN, b(False)), (CKA.KEY_TYPE, ul(CKK.EC)),
                 (CKA.EC_PARAMS, P256), (CKA.VALUE, b"\x01" * 32)],
                [so.cls(CKO.SECRET_KEY), (CKA.TOKEN, b(False)), (CKA.KEY_TYPE, ul(CKK.AES)), (CKA.VALUE, b"k" * 16)]):
        expect(CKR.ATTRIBUTE_VALUE_INVALID, "C_CreateObject", s, *so.template(tpl), h)
    for sess in (s, rw):
        code, _, _ = keypair(sess, ck_id=b"sesskey", token=False)
        assert code == CKR.ATTRIBUTE_VALUE_INVALID, code.name
        expect(CKR.ATTRIBUTE_VALUE_INVALID, "C_GenerateKey", sess, so.mech(CKM.AES_KEY_GEN),
               *so.template([(CKA.TOKEN, b(False)), (CKA.VALUE_LEN, ul(32))]), h)
    # a session object is destroyed with its session, and by C_DestroyObject
    so.ok("C_DestroyObject", rw, data)
    expect(CKR.OBJECT_HANDLE_INVALID, "C_GetAttributeValue", rw, data, *so.template([(CKA.VALUE, b"")]))
    so.ok("C_CloseSession", s)
    assert so.find(rw, [(CKA.TOKEN, b(False))]) == []
    expect(CKR.KEY_HANDLE_INVALID, "C_VerifyInit", rw, so.mech(CKM.ECDSA), sec)
    # and at C_Finalize
    so.ok("C_CreateObject", rw, *so.template([so.cls(CKO.DATA), (CKA.VALUE, b"x")]), h)
    so.ok("C_Finalize", None)
    so.ok("C_Initialize", None)
    assert so.find(so.open(), [(CKA.TOKEN, b(False))]) == []


def arguments_before_state():
    h1, h2 = ctypes.c_ulong(), ctypes.c_ulong()
    for sess in (so.open(rw=False), so.open()):
        expect(CKR.ARGUMENTS_BAD, "C_GenerateKey", sess, so.mech(CKM.AES_KEY_GEN), None, 2, h1)
        expect(CKR.ARGUMENTS_BAD, "C_GenerateKeyPair", sess, so.mech(CKM.EC_KEY_PAIR_GEN), None, 1,
               *so.template([(CKA.TOKEN, b(True))]), h1, h2)
        expect(CKR.ARGUMENTS_BAD, "C_GenerateKeyPair", sess, so.mech(CKM.EC_KEY_PAIR_GEN),
               *so.template([(CKA.EC_PARAMS, P256)]), None, 3, h1, h2)


def random_public_session():
    s = so.open(rw=False)
    buf = ctypes.create_string_buffer(32)
    so.ok("C_GenerateRandom", s, buf, 32)
    assert buf.raw != b"\x00" * 32


def random_without_credentials():
    s = so.open(rw=False)
    buf = ctypes.create_string_buffer(32)
    expect(CKR.FUNCTION_FAILED, "C_GenerateRandom", s, buf, 32)
    assert so.login(s, 1, b"opPassphrase") == CKR.OK
    so.ok("C_GenerateRandom", s, buf, 32)


# ---------------------------------------------------------------- CKM_RSA_X_509 signing
def rsa_x509_sign():
    info = CK_MECHANISM_INFO()
    so.ok("C_GetMechanismInfo", 0, CKM.RSA_X_509, info)
    assert info.flags & 0x800 and info.flags & 0x2000, hex(info.flags)  # CKF_SIGN, CKF_VERIFY
    s = so.open()
    priv, pub, n, e = _rsa_token_keys(s)
    assert CKM.RSA_X_509 in _mechs(so.attr(s, priv, CKA.ALLOWED_MECHANISMS))
    m = b"\x00\x01" + b"\xff" * 200 + b"\x00" + bytes(range(53))  # k = 256 bytes
    sig = so.sign(s, priv, CKM.RSA_X_509, m)
    N, E = int.from_bytes(n, "big"), int.from_bytes(e, "big")
    assert pow(int.from_bytes(sig, "big"), E, N) == int.from_bytes(m, "big")
    short = so.sign(s, priv, CKM.RSA_X_509, b"\x05" * 20)  # shorter input: left-padded with zeros
    assert pow(int.from_bytes(short, "big"), E, N) == int.from_bytes(b"\x05" * 20, "big")
    so.ok("C_VerifyInit", s, so.mech(CKM.RSA_X_509), pub)
    so.ok("C_Verify", s, m, len(m), sig, len(sig))
    # a key without RSA_Decryption_RAW cannot sign raw and does not list the mechanism
    nosig = so.key(s, b"rsanoraw")
    assert CKM.RSA_X_509 not in _mechs(so.attr(s, nosig, CKA.ALLOWED_MECHANISMS))
    expect(CKR.MECHANISM_INVALID, "C_SignInit", s, so.mech(CKM.RSA_X_509), nosig)


def _mechs(raw: bytes) -> list[int]:
    return [int.from_bytes(raw[i:i + 8], sys.byteorder) for i in range(0, len(raw), 8)]


if __name__ == "__main__":
    so.ok("C_Initialize", None)
    globals()[sys.argv[1]]()
    so.ok("C_Finalize", None)
    print("ok")
