"""The object/mechanism handlers through p11nethsm.dispatch.entry, against the in-process
emulator with the real REST client (no .so)."""

from __future__ import annotations

import ctypes
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from nethsm_emulator.provision import RSA_MECHS
from nethsm_emulator.testing import start_emulator
from p11calls import Entry as P11, b, ul
from p11nethsm import dispatch, library, logging_setup
from p11nethsm.ck.constants import CK_UNAVAILABLE_INFORMATION, CKA, CKG, CKK, CKM, CKO, CKR, CKZ
from p11nethsm.ck.structs import CK_ATTRIBUTE, CK_RSA_PKCS_OAEP_PARAMS, CK_RSA_PKCS_PSS_PARAMS

KEYS = {
    "rsakey": {"type": "RSA", "length": 2048, "mechanisms": RSA_MECHS},
    "p256key": {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]},
    "p521key": {"type": "EC_P521", "mechanisms": ["ECDSA_Signature"]},
    "edkey": {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"]},
    "aeskey": {"type": "Generic", "length": 256, "mechanisms": ["AES_Encryption_CBC", "AES_Decryption_CBC"]},
}


@pytest.fixture(scope="module")
def hsm():
    with start_emulator(provisioned=True, keys=KEYS, throttle=False) as run:
        yield run


def config(hsm, admin_password=True, alias=False, fmt="PEM"):
    admin = f"\n      password: {hsm.admin[1]}" if admin_password else ""
    return f"""
enable_set_attribute_value: {str(alias).lower()}
slots:
  - label: emu
    certificate_format: {fmt}
    operator:
      username: {hsm.operator[0]}
      password: {hsm.operator[1]}
    administrator:
      username: {hsm.admin[0]}{admin}
    instances:
      - url: {hsm.url}
        sha256_fingerprints: ["{hsm.fingerprint}"]
"""


@pytest.fixture
def p11(hsm, write_config, monkeypatch):
    def start(**kw):
        monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(config(hsm, **kw)))
        c = P11(dispatch.entry)
        c.ok("C_Initialize", None)
        return c

    yield start
    if dispatch.is_ready():
        dispatch.entry(1, 0)
    logging_setup.reset()


def stats(lib=None):
    lib = lib or library.get_library()
    return sum(s.requests for s in lib.slots[0].api.stats.values())


def key(p, s, kid, cls):
    (h,) = p.find(s, [p.cls(cls), (CKA.ID, kid.encode())])
    return h


def pubkey(hsm, kid):
    pem = hsm.client().request("GET", f"/keys/{kid}/public.pem", hsm.operator).data
    return serialization.load_pem_public_key(pem)


def test_enumeration_and_attributes(p11, hsm):
    p = p11()
    s = p.open()
    hs = p.find(s, [])
    kinds = [CKO(int.from_bytes(p.attr(s, h, CKA.CLASS), "little")) for h in hs]
    assert kinds.count(CKO.PRIVATE_KEY) >= 4 and kinds.count(CKO.SECRET_KEY) >= 1
    h = key(p, s, "rsakey", CKO.PUBLIC_KEY)
    n = pubkey(hsm, "rsakey").public_numbers().n
    assert int.from_bytes(p.attr(s, h, CKA.MODULUS), "big") == n
    # unknown + sensitive + too small in one call: every attribute processed
    hp = key(p, s, "rsakey", CKO.PRIVATE_KEY)
    a = (CK_ATTRIBUTE * 4)()
    small = ctypes.create_string_buffer(4)
    idbuf = ctypes.create_string_buffer(64)
    a[0].type, a[0].pValue, a[0].ulValueLen = CKA.PRIVATE_EXPONENT, ctypes.addressof(idbuf), 64
    a[1].type, a[1].pValue, a[1].ulValueLen = 0x7FFF_0000, ctypes.addressof(idbuf), 64
    a[2].type, a[2].pValue, a[2].ulValueLen = CKA.MODULUS, ctypes.addressof(small), 4
    a[3].type, a[3].pValue, a[3].ulValueLen = CKA.ID, ctypes.addressof(idbuf), 64
    rv = p("C_GetAttributeValue", s, hp, a, 4)
    assert rv == CKR.ATTRIBUTE_SENSITIVE
    assert [x.ulValueLen for x in a] == [CK_UNAVAILABLE_INFORMATION] * 3 + [6]
    assert idbuf.raw[:6] == b"rsakey"
    # secret key: VALUE_LEN unknown (not generated through the module)
    ha = key(p, s, "aeskey", CKO.SECRET_KEY)
    assert int.from_bytes(p.attr(s, ha, CKA.KEY_TYPE), "little") == CKK.AES
    a = (CK_ATTRIBUTE * 1)()
    a[0].type = CKA.VALUE_LEN
    assert p("C_GetAttributeValue", s, ha, a, 1) == CKR.ATTRIBUTE_TYPE_INVALID
    size = ctypes.c_ulong()
    p.ok("C_GetObjectSize", s, hp, size)
    assert size.value == 256


def test_second_enumeration_costs_one_request(p11):
    p = p11()
    s = p.open()
    first = p.find(s, [p.cls(CKO.PRIVATE_KEY)])
    before = stats()
    assert p.find(s, [p.cls(CKO.PRIVATE_KEY)]) == first
    assert stats() - before == 1


@pytest.mark.parametrize("ckm,h", [(CKM.SHA256_RSA_PKCS, hashes.SHA256), (CKM.SHA1_RSA_PKCS, hashes.SHA1),
                                   (CKM.SHA512_RSA_PKCS, hashes.SHA512)])
def test_rsa_pkcs_sign(p11, hsm, ckm, h):
    p = p11()
    s = p.open()
    sig = p.sign(s, key(p, s, "rsakey", CKO.PRIVATE_KEY), ckm, b"data")
    pubkey(hsm, "rsakey").verify(sig, b"data", padding.PKCS1v15(), h())


def test_pss_sign_and_local_verify(p11, hsm):
    p = p11()
    s = p.open()
    param = bytes(CK_RSA_PKCS_PSS_PARAMS(CKM.SHA256, CKG.MGF1_SHA256, 32))
    sig = p.sign(s, key(p, s, "rsakey", CKO.PRIVATE_KEY), CKM.SHA256_RSA_PKCS_PSS, b"data", param)
    pubkey(hsm, "rsakey").verify(sig, b"data", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    hpub = key(p, s, "rsakey", CKO.PUBLIC_KEY)
    p.ok("C_VerifyInit", s, p.mech(CKM.SHA256_RSA_PKCS_PSS, param), hpub)
    p.ok("C_Verify", s, b"data", 4, sig, len(sig))
    p.ok("C_VerifyInit", s, p.mech(CKM.SHA256_RSA_PKCS_PSS, param), hpub)
    assert p("C_Verify", s, b"datx", 4, sig, len(sig)) == CKR.SIGNATURE_INVALID
    bad = bytes(CK_RSA_PKCS_PSS_PARAMS(CKM.SHA256, CKG.MGF1_SHA256, 20))
    assert p("C_SignInit", s, p.mech(CKM.SHA256_RSA_PKCS_PSS, bad), key(p, s, "rsakey", CKO.PRIVATE_KEY)) \
        == CKR.MECHANISM_PARAM_INVALID


def test_ecdsa_p521_raw_signature_is_132_bytes(p11, hsm):
    p = p11()
    s = p.open()
    sig = p.sign(s, key(p, s, "p521key", CKO.PRIVATE_KEY), CKM.ECDSA_SHA512, b"data")
    assert len(sig) == 132
    der = utils.encode_dss_signature(int.from_bytes(sig[:66], "big"), int.from_bytes(sig[66:], "big"))
    pubkey(hsm, "p521key").verify(der, b"data", ec.ECDSA(hashes.SHA512()))


def test_size_query_and_retry_sign_once(p11, hsm):
    p = p11()
    s = p.open()
    h = key(p, s, "edkey", CKO.PRIVATE_KEY)
    p.ok("C_SignInit", s, p.mech(CKM.EDDSA), h)
    n = ctypes.c_ulong()
    before = stats()
    p.ok("C_Sign", s, b"msg", 3, None, n)
    assert n.value == 64 and stats() == before  # answered from the key, no request
    small = ctypes.create_string_buffer(10)
    n.value = 10
    assert p("C_Sign", s, b"msg", 3, small, n) == CKR.BUFFER_TOO_SMALL and n.value == 64
    assert stats() == before  # exact size known: refused before signing
    buf = ctypes.create_string_buffer(64)
    p.ok("C_Sign", s, b"msg", 3, buf, n)
    assert stats() == before + 1
    pubkey(hsm, "edkey").verify(buf.raw, b"msg")
    assert p("C_Sign", s, b"msg", 3, buf, n) == CKR.OPERATION_NOT_INITIALIZED


def test_operation_lifecycle(p11):
    p = p11()
    s = p.open()
    h = key(p, s, "p256key", CKO.PRIVATE_KEY)
    p.ok("C_SignInit", s, p.mech(CKM.ECDSA_SHA256), h)
    assert p("C_SignInit", s, p.mech(CKM.ECDSA_SHA256), h) == CKR.OPERATION_ACTIVE
    p.ok("C_SignUpdate", s, b"ab", 2)
    assert p("C_Sign", s, b"x", 1, None, ctypes.c_ulong()) == CKR.OPERATION_ACTIVE
    sig = p.out("C_SignFinal", s)
    assert len(sig) == 64
    assert p("C_SignUpdate", s, b"ab", 2) == CKR.OPERATION_NOT_INITIALIZED
    # an error ends the operation
    p.ok("C_SignInit", s, p.mech(CKM.ECDSA), h)
    buf = ctypes.create_string_buffer(200)
    n = ctypes.c_ulong(200)
    assert p("C_Sign", s, None, 5, buf, n) == CKR.ARGUMENTS_BAD
    assert p("C_Sign", s, b"x", 1, buf, n) == CKR.OPERATION_NOT_INITIALIZED
    assert p("C_SignInit", s, p.mech(CKM.RSA_PKCS), h) == CKR.KEY_TYPE_INCONSISTENT
    assert p("C_SignInit", s, p.mech(CKM.ECDSA), 99999) == CKR.KEY_HANDLE_INVALID
    assert p("C_SignInit", s, p.mech(0x4242), h) == CKR.MECHANISM_INVALID


def test_rsa_decrypt_modes(p11, hsm):
    p = p11()
    s = p.open()
    h = key(p, s, "rsakey", CKO.PRIVATE_KEY)
    pub = pubkey(hsm, "rsakey")
    ct = pub.encrypt(b"secret", padding.PKCS1v15())
    p.ok("C_DecryptInit", s, p.mech(CKM.RSA_PKCS), h)
    assert p.out("C_Decrypt", s, ct, len(ct)) == b"secret"
    ct = pub.encrypt(b"secret", padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    param = bytes(CK_RSA_PKCS_OAEP_PARAMS(CKM.SHA256, CKG.MGF1_SHA256, CKZ.DATA_SPECIFIED, None, 0))
    p.ok("C_DecryptInit", s, p.mech(CKM.RSA_PKCS_OAEP, param), h)
    before = stats()
    assert p.out("C_Decrypt", s, ct, len(ct)) == b"secret"
    assert stats() == before + 1  # size query from the key, one decrypt
    m = os.urandom(255)
    ct = pow(int.from_bytes(m, "big"), 65537, pub.public_numbers().n).to_bytes(256, "big")
    p.ok("C_DecryptInit", s, p.mech(CKM.RSA_X_509), h)
    assert p.out("C_Decrypt", s, ct, len(ct)).lstrip(b"\0") == m.lstrip(b"\0")


def test_decrypt_buffer_too_small_retry_does_not_decrypt_twice(p11, hsm):
    p = p11()
    s = p.open()
    h = key(p, s, "rsakey", CKO.PRIVATE_KEY)
    ct = pubkey(hsm, "rsakey").encrypt(b"0123456789", padding.PKCS1v15())
    p.ok("C_DecryptInit", s, p.mech(CKM.RSA_PKCS), h)
    n = ctypes.c_ulong(5)
    buf = ctypes.create_string_buffer(300)
    before = stats()
    assert p("C_Decrypt", s, ct, len(ct), buf, n) == CKR.BUFFER_TOO_SMALL and n.value == 10
    p.ok("C_Decrypt", s, ct, len(ct), buf, n)
    assert buf.raw[:10] == b"0123456789" and stats() == before + 1


def test_aes_multipart_and_random_and_digest(p11, hsm):
    p = p11()
    s = p.open()
    h = key(p, s, "aeskey", CKO.SECRET_KEY)
    iv = os.urandom(16)
    data = os.urandom(80)
    p.ok("C_EncryptInit", s, p.mech(CKM.AES_CBC_PAD, iv), h)
    ct = p.out("C_EncryptUpdate", s, data[:33], 33) + p.out("C_EncryptUpdate", s, data[33:], 47)
    ct += p.out("C_EncryptFinal", s)
    assert len(ct) == 96
    p.ok("C_DecryptInit", s, p.mech(CKM.AES_CBC_PAD, iv), h)
    assert p.out("C_Decrypt", s, ct, len(ct)) == data
    rnd = ctypes.create_string_buffer(3000)
    p.ok("C_GenerateRandom", s, rnd, 3000)
    assert len(set(rnd.raw)) > 200
    assert p("C_SeedRandom", s, b"x", 1) == CKR.RANDOM_SEED_NOT_SUPPORTED
    p.ok("C_DigestInit", s, p.mech(CKM.SHA256))
    d = p.out("C_Digest", s, b"abc", 3)
    assert d.hex().startswith("ba7816bf")


def test_generate_import_cert_rename_destroy(p11, hsm):
    p = p11()
    s = p.open()
    client = hsm.client()
    # RSA key pair with CKA_ID from the private template, usage: sign only
    pub_t = p.template([(CKA.MODULUS_BITS, ul(2048)), (CKA.VERIFY, b(True)), (CKA.TOKEN, b(True))])
    priv_t = p.template([(CKA.ID, b"\x01\x02"), (CKA.SIGN, b(True)), (CKA.DECRYPT, b(False))])
    hpub, hpriv = ctypes.c_ulong(), ctypes.c_ulong()
    p.ok("C_GenerateKeyPair", s, p.mech(CKM.RSA_PKCS_KEY_PAIR_GEN), *pub_t, *priv_t, hpub, hpriv)
    j = client.request("GET", "/keys/0---0102", hsm.admin).json()
    assert j["type"] == "RSA" and not any(m.startswith("RSA_Decryption") for m in j["mechanisms"])
    assert p.attr(s, hpriv.value, CKA.ID) == b"\x01\x02"
    # EC key pair by CKA_EC_PARAMS
    pub_t = p.template([(CKA.EC_PARAMS, bytes.fromhex("06052b81040022")), (CKA.LABEL, b"ecgen")])
    priv_t = p.template([])
    p.ok("C_GenerateKeyPair", s, p.mech(CKM.EC_KEY_PAIR_GEN), *pub_t, *priv_t, hpub, hpriv)
    assert client.request("GET", "/keys/ecgen", hsm.admin).json()["type"] == "EC_P384"
    # AES from CKA_VALUE_LEN in bytes
    hk = ctypes.c_ulong()
    t = p.template([(CKA.VALUE_LEN, ul(24)), (CKA.ID, b"aes192")])
    p.ok("C_GenerateKey", s, p.mech(CKM.AES_KEY_GEN), *t, hk)
    assert int.from_bytes(p.attr(s, hk.value, CKA.VALUE_LEN), "little") == 24
    # session objects refused
    t = p.template([(CKA.VALUE_LEN, ul(16)), (CKA.TOKEN, b(False))])
    assert p("C_GenerateKey", s, p.mech(CKM.AES_KEY_GEN), *t, hk) == CKR.ATTRIBUTE_VALUE_INVALID
    # import an EC private key, then a certificate on it
    k = ec.generate_private_key(ec.SECP256R1())
    t = p.template([p.cls(CKO.PRIVATE_KEY), (CKA.KEY_TYPE, ul(CKK.EC)), (CKA.ID, b"imported"),
                    (CKA.EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")),
                    (CKA.VALUE, k.private_numbers().private_value.to_bytes(32, "big")), (CKA.SIGN, b(True))])
    hobj = ctypes.c_ulong()
    p.ok("C_CreateObject", s, *t, hobj)
    sig = p.sign(s, hobj.value, CKM.ECDSA_SHA256, b"x")
    k.public_key().verify(utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                          b"x", ec.ECDSA(hashes.SHA256()))
    from test_model import self_signed

    der = self_signed(k).public_bytes(serialization.Encoding.DER)
    t = p.template([p.cls(CKO.CERTIFICATE), (CKA.ID, b"imported"), (CKA.VALUE, der)])
    hc = ctypes.c_ulong()
    p.ok("C_CreateObject", s, *t, hc)
    stored = client.request("GET", "/keys/imported/cert", hsm.admin).data
    assert stored.startswith(b"-----BEGIN CERTIFICATE")
    assert p.find(s, [p.cls(CKO.CERTIFICATE), (CKA.ID, b"imported")]) == [hc.value]
    # public token key alone: a clear refusal (without CKA_TOKEN it would be a session object)
    t = p.template([p.cls(CKO.PUBLIC_KEY), (CKA.TOKEN, b"\x01"), (CKA.KEY_TYPE, ul(CKK.EC))])
    assert p("C_CreateObject", s, *t, hobj) == CKR.ATTRIBUTE_VALUE_INVALID
    # rename by CKA_ID (NetHSM move): handles stay
    t = p.template([(CKA.ID, b"renamed")])
    p.ok("C_SetAttributeValue", s, hc.value, *t)
    assert client.request("GET", "/keys/renamed", hsm.admin).status == 200
    assert p.attr(s, hc.value, CKA.ID) == b"renamed"
    # destroy: the public object alone is hidden (the NetHSM key stays), cert and key deleted
    hpubs = p.find(s, [p.cls(CKO.PUBLIC_KEY), (CKA.ID, b"renamed")])
    p.ok("C_DestroyObject", s, hpubs[0])
    assert client.request("GET", "/keys/renamed", hsm.admin, expect=None).status == 200
    assert p.find(s, [p.cls(CKO.PUBLIC_KEY), (CKA.ID, b"renamed")]) == []
    p.ok("C_DestroyObject", s, hc.value)
    assert client.request("GET", "/keys/renamed/cert", hsm.admin, expect=None).status == 404
    hpriv2 = p.find(s, [p.cls(CKO.PRIVATE_KEY), (CKA.ID, b"renamed")])
    p.ok("C_DestroyObject", s, hpriv2[0])
    assert client.request("GET", "/keys/renamed", hsm.admin, expect=None).status == 404
    assert p("C_GetAttributeValue", s, hpubs[0], p.template([(CKA.ID, b"")])[0], 1) == CKR.OBJECT_HANDLE_INVALID
    for kid in ("0---0102", "ecgen", "aes192"):
        client.request("DELETE", f"/keys/{kid}", hsm.admin)


def test_key_management_without_admin_password_needs_so_login(p11, hsm):
    p = p11(admin_password=False)
    s = p.open()
    hk = ctypes.c_ulong()
    t = p.template([(CKA.VALUE_LEN, ul(16)), (CKA.ID, b"nologin")])
    assert p("C_GenerateKey", s, p.mech(CKM.AES_KEY_GEN), *t, hk) == CKR.USER_NOT_LOGGED_IN
    ro = p.open(rw=False)
    assert p("C_GenerateKey", ro, p.mech(CKM.AES_KEY_GEN), *t, hk) == CKR.SESSION_READ_ONLY


def test_alias_mode_certificate_lands_on_the_real_key(p11, hsm):
    p = p11(alias=True)
    s = p.open()
    k = ec.generate_private_key(ec.SECP256R1())
    t = p.template([p.cls(CKO.PRIVATE_KEY), (CKA.KEY_TYPE, ul(CKK.EC)),
                    (CKA.EC_PARAMS, bytes.fromhex("06082a8648ce3d030107")),
                    (CKA.VALUE, k.private_numbers().private_value.to_bytes(32, "big"))])
    h = ctypes.c_ulong()
    p.ok("C_CreateObject", s, *t, h)
    real = p.attr(s, h.value, CKA.ID).decode()
    p.ok("C_SetAttributeValue", s, h.value, *p.template([(CKA.ID, b"myalias")]))
    from test_model import self_signed

    der = self_signed(k).public_bytes(serialization.Encoding.DER)
    p.ok("C_CreateObject", s, *p.template([p.cls(CKO.CERTIFICATE), (CKA.ID, b"myalias"), (CKA.VALUE, der)]), h)
    assert hsm.client().request("GET", f"/keys/{real}/cert", hsm.admin).status == 200
    hsm.client().request("DELETE", f"/keys/{real}", hsm.admin)


def _label_rename_session(p11, hsm, kid):
    hsm.client().json("POST", "/keys/generate", hsm.admin,
                      {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "id": kid})
    p = p11()
    s = p.open()
    (h,) = p.find(s, [p.cls(CKO.PRIVATE_KEY), (CKA.ID, kid.encode())])
    return p, s, h


def test_set_label_without_firmware_labels_renames_the_key(p11, hsm):
    """v4.0 firmware has no key labels: CKA_LABEL reads as the id, so setting it moves the key."""
    p, s, h = _label_rename_session(p11, hsm, "lbl40")
    p.ok("C_SetAttributeValue", s, h, *p.template([(CKA.LABEL, b"lbl40moved")]))
    assert p.attr(s, h, CKA.ID) == b"lbl40moved" and p.attr(s, h, CKA.LABEL) == b"lbl40moved"
    client = hsm.client()
    assert client.request("GET", "/keys/lbl40", hsm.admin, expect=None).status == 404
    client.request("DELETE", "/keys/lbl40moved", hsm.admin)


def test_set_label_with_firmware_labels_sets_the_label_and_keeps_the_id(p11, write_config, monkeypatch):
    """Firmware with key labels (`--labels`, the main-branch API): CKA_LABEL is the NetHSM label."""
    # (the p11 fixture is there for its teardown, which finalizes the module)
    with start_emulator(provisioned=True, keys={}, throttle=False, labels=True) as lhsm:
        monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(config(lhsm)))
        p, s, h = _label_rename_session(_initialized, lhsm, "lblkey")
        p.ok("C_SetAttributeValue", s, h, *p.template([(CKA.LABEL, "Signing key 2026".encode())]))
        assert p.attr(s, h, CKA.ID) == b"lblkey"
        assert p.attr(s, h, CKA.LABEL) == "Signing key 2026".encode()
        assert lhsm.client().json("GET", "/keys/lblkey", lhsm.admin)["label"] == "Signing key 2026"
        # NetHSM labels are at most 32 bytes: a clear CKR, nothing changed
        rv = p("C_SetAttributeValue", s, h, *p.template([(CKA.LABEL, b"x" * 33)]))
        assert rv == CKR.ATTRIBUTE_VALUE_INVALID
        assert p.attr(s, h, CKA.LABEL) == "Signing key 2026".encode()
        p.ok("C_Finalize", None)


def _initialized():
    c = P11(dispatch.entry)
    c.ok("C_Initialize", None)
    return c
