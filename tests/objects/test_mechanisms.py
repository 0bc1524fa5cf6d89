import ctypes
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fakes import FakeApi, FakeSlot
from nethsm_emulator.provision import RSA_MECHS
from p11nethsm.ck.constants import CKG, CKM, CKO, CKZ
from p11nethsm.ck.errors import (
    CKRError,
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    KeyFunctionNotPermitted,
    KeyTypeInconsistent,
    MechanismInvalid,
    MechanismParamInvalid,
    SignatureInvalid,
    SignatureLenRange,
)
from p11nethsm.ck.structs import CK_EDDSA_PARAMS, CK_RSA_PKCS_OAEP_PARAMS, CK_RSA_PKCS_PSS_PARAMS
from p11nethsm.mechanisms import registry
from p11nethsm.mechanisms.aes import pad
from p11nethsm.mechanisms.backend import SlotBackend
from p11nethsm.mechanisms.digest import HASHES
from p11nethsm.objects.model import key_from_json, objects_for_key

H = {CKM.SHA_1: hashes.SHA1, CKM.SHA224: hashes.SHA224, CKM.SHA256: hashes.SHA256, CKM.SHA384: hashes.SHA384,
     CKM.SHA512: hashes.SHA512, CKM.SHA3_224: hashes.SHA3_224, CKM.SHA3_256: hashes.SHA3_256,
     CKM.SHA3_384: hashes.SHA3_384, CKM.SHA3_512: hashes.SHA3_512}
MGF = {CKM.SHA_1: CKG.MGF1_SHA1, CKM.SHA224: CKG.MGF1_SHA224, CKM.SHA256: CKG.MGF1_SHA256,
       CKM.SHA384: CKG.MGF1_SHA384, CKM.SHA512: CKG.MGF1_SHA512, CKM.SHA3_256: CKG.MGF1_SHA3_256}


@pytest.fixture(scope="module")
def env():
    api = FakeApi()
    api.add("rsa", "RSA", RSA_MECHS, 2048)
    api.add("rsa_pss256", "RSA", ["RSA_Signature_PSS_SHA256", "RSA_Decryption_OAEP_SHA256"], 2048)
    api.add("rsa_raw", "RSA", ["RSA_Decryption_RAW"], 2048)
    for t in ("EC_P256", "EC_P384", "EC_P521", "EC_P256K1", "BrainpoolP256", "BrainpoolP384", "BrainpoolP512"):
        api.add(t, t, ["ECDSA_Signature"])
    api.add("ed", "Curve25519", ["EdDSA_Signature"])
    api.add("aes", "Generic", ["AES_Encryption_CBC", "AES_Decryption_CBC"], 256)
    api.add("aes128", "Generic", ["AES_Encryption_CBC", "AES_Decryption_CBC"], 128)
    slot = FakeSlot(api)
    return api, slot, SlotBackend(slot)


def objs(env, kid):
    api = env[0]
    info = key_from_json(kid, api.get_key(None, kid))
    return {o.kind: o for o in objects_for_key(info)}


def priv(env, kid):
    return objs(env, kid).get(CKO.PRIVATE_KEY) or objs(env, kid)[CKO.SECRET_KEY]


def pub(env, kid):
    return objs(env, kid)[CKO.PUBLIC_KEY]


def impl(ckm):
    return registry.implementation(ckm)


def sign(env, kid, ckm, data, param=None, parts=None):
    ctx = impl(ckm).sign_init(priv(env, kid), param, env[2])
    n = ctx.out_len()
    if parts:
        for p in parts:
            ctx.update(p)
        sig = ctx.final()
    else:
        sig = ctx.single(data)
    assert len(sig) == n
    return sig


def verify(env, kid, ckm, data, sig, param=None):
    ctx = impl(ckm).verify_init(pub(env, kid), param)
    ctx.update(data)
    ctx.verify(sig)


def pss(hash_ckm, mgf=None, slen=None):
    return bytes(CK_RSA_PKCS_PSS_PARAMS(hash_ckm, mgf if mgf is not None else MGF[hash_ckm],
                                         slen if slen is not None else HASHES[hash_ckm].size))


_keep = []


def oaep(hash_ckm, mgf=None, label=b""):
    buf = ctypes.create_string_buffer(label, len(label)) if label else None
    _keep.append(buf)
    p = CK_RSA_PKCS_OAEP_PARAMS(hash_ckm, mgf if mgf is not None else MGF[hash_ckm], CKZ.DATA_SPECIFIED,
                                ctypes.addressof(buf) if buf else None, len(label))
    return bytes(p)


def public(env, kid):
    return env[0].keys[kid].key.private.public_key()


# ---------------------------------------------------------------- registry
def test_registry_lists_every_family_and_flags():
    mechs = registry.mechanism_list()
    assert CKM.SHA256_RSA_PKCS_PSS in mechs and CKM.EDDSA in mechs and CKM.SHA512 in mechs
    assert len(mechs) == len(set(mechs))
    info = registry.mechanism_info(CKM.RSA_PKCS_OAEP)
    assert info.flags & registry.F.DECRYPT and not info.flags & registry.F.SIGN
    assert registry.mechanism_info(CKM.SHA256).flags == registry.F.DIGEST
    assert registry.mechanism_info(CKM.AES_CBC).max_key == 32  # bytes
    assert registry.mechanism_info(CKM.ECDSA).flags & registry.F.HW
    for m in mechs:
        if registry.MECHANISMS[m].impl is not None:
            impl(m)
    with pytest.raises(MechanismInvalid):
        registry.mechanism_info(0x9999)
    with pytest.raises(MechanismInvalid):
        registry.implementation(CKM.RSA_PKCS_KEY_PAIR_GEN)


def test_base_operations_default_to_mechanism_invalid(env):
    with pytest.raises(MechanismInvalid):
        impl(CKM.SHA256).sign_init(priv(env, "rsa"), None, env[2])
    with pytest.raises(MechanismInvalid):
        impl(CKM.EDDSA).decrypt_init(priv(env, "ed"), None, env[2])
    with pytest.raises(MechanismInvalid):
        impl(CKM.ECDSA).digest_init(None)


# ---------------------------------------------------------------- RSA sign
@pytest.mark.parametrize("ckm,h", [(CKM.SHA1_RSA_PKCS, CKM.SHA_1), (CKM.SHA224_RSA_PKCS, CKM.SHA224),
                                   (CKM.SHA256_RSA_PKCS, CKM.SHA256), (CKM.SHA384_RSA_PKCS, CKM.SHA384),
                                   (CKM.SHA512_RSA_PKCS, CKM.SHA512),
                                   (CKM.SHA3_224_RSA_PKCS, CKM.SHA3_224), (CKM.SHA3_256_RSA_PKCS, CKM.SHA3_256),
                                   (CKM.SHA3_384_RSA_PKCS, CKM.SHA3_384), (CKM.SHA3_512_RSA_PKCS, CKM.SHA3_512)])
def test_sha_rsa_pkcs_signatures_verify_with_openssl(env, ckm, h):
    data = os.urandom(1000)
    sig = sign(env, "rsa", ckm, data)
    public(env, "rsa").verify(sig, data, padding.PKCS1v15(), H[h]())
    verify(env, "rsa", ckm, data, sig)
    sig2 = sign(env, "rsa", ckm, None, parts=[data[:10], b"", data[10:]])
    assert sig2 == sig  # PKCS#1 v1.5 is deterministic: multi-part hashes the same


def test_rsa_pkcs_signs_the_given_digest_info(env):
    digest = hashes.Hash(hashes.SHA256())
    digest.update(b"hello")
    d = digest.finalize()
    sig = sign(env, "rsa", CKM.RSA_PKCS, HASHES[CKM.SHA256].digest_info + d)
    public(env, "rsa").verify(sig, b"hello", padding.PKCS1v15(), hashes.SHA256())
    verify(env, "rsa", CKM.RSA_PKCS, HASHES[CKM.SHA256].digest_info + d, sig)
    sig = sign(env, "rsa", CKM.RSA_PKCS, b"raw bytes, not a DigestInfo")
    verify(env, "rsa", CKM.RSA_PKCS, b"raw bytes, not a DigestInfo", sig)
    with pytest.raises(SignatureInvalid):
        verify(env, "rsa", CKM.RSA_PKCS, b"other", sig)


def test_rsa_pkcs_input_too_long_is_data_len_range_before_network(env):
    api = env[0]
    api.reset()
    with pytest.raises(DataLenRange):
        sign(env, "rsa", CKM.RSA_PKCS, b"x" * 246)
    assert api.crypto_calls == 0


@pytest.mark.parametrize("h", [CKM.SHA_1, CKM.SHA224, CKM.SHA256, CKM.SHA384, CKM.SHA512])
def test_pss_signatures_verify_with_openssl(env, h):
    data = b"message" * 50
    hashed = {CKM.SHA_1: CKM.SHA1_RSA_PKCS_PSS, CKM.SHA224: CKM.SHA224_RSA_PKCS_PSS,
              CKM.SHA256: CKM.SHA256_RSA_PKCS_PSS, CKM.SHA384: CKM.SHA384_RSA_PKCS_PSS,
              CKM.SHA512: CKM.SHA512_RSA_PKCS_PSS}[h]
    sig = sign(env, "rsa", hashed, data, pss(h))
    public(env, "rsa").verify(sig, data, padding.PSS(padding.MGF1(H[h]()), HASHES[h].size), H[h]())
    verify(env, "rsa", hashed, data, sig, pss(h))
    digest = hashes.Hash(H[h]())
    digest.update(data)
    d = digest.finalize()
    sig = sign(env, "rsa", CKM.RSA_PKCS_PSS, d, pss(h))
    public(env, "rsa").verify(sig, data, padding.PSS(padding.MGF1(H[h]()), HASHES[h].size), H[h]())
    verify(env, "rsa", CKM.RSA_PKCS_PSS, d, sig, pss(h))


def test_pss_with_sha3_is_refused_for_signing_and_verified_locally(env):
    """The NetHSM has no PSS_SHA3 mode: signing says so before any NetHSM call; verifying is local."""
    api = env[0]
    calls = api.crypto_calls
    digest = hashes.Hash(hashes.SHA3_256())
    digest.update(b"m")
    d = digest.finalize()
    with pytest.raises(MechanismParamInvalid):
        sign(env, "rsa", CKM.RSA_PKCS_PSS, d, pss(CKM.SHA3_256))
    assert api.crypto_calls == calls
    sig = api.keys["rsa"].key.private.sign(b"m", padding.PSS(padding.MGF1(hashes.SHA3_256()), 32), hashes.SHA3_256())
    verify(env, "rsa", CKM.RSA_PKCS_PSS, d, sig, pss(CKM.SHA3_256))


def test_oaep_with_sha3_is_mechanism_param_invalid(env):
    """No NetHSM OAEP mode and no OAEP-SHA3 in OpenSSL's RSA (cryptography refuses it): refused
    as an unsupported hashAlg/mgf, before any NetHSM call, as before SHA-3 was known."""
    calls = env[0].crypto_calls
    for param in (oaep(CKM.SHA3_256), oaep(CKM.SHA256, mgf=CKG.MGF1_SHA3_256)):
        with pytest.raises(MechanismParamInvalid):
            impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa"), param, env[2])
        with pytest.raises(MechanismParamInvalid):
            impl(CKM.RSA_PKCS_OAEP).encrypt_init(pub(env, "rsa"), param, env[2])
    assert env[0].crypto_calls == calls


@pytest.mark.parametrize("param", [
    None, b"", pss(CKM.SHA256, mgf=CKG.MGF1_SHA1), pss(CKM.SHA256, slen=0), pss(CKM.SHA256, slen=64),
    bytes(CK_RSA_PKCS_PSS_PARAMS(CKM.MD5, CKG.MGF1_SHA1, 16)), bytes(CK_RSA_PKCS_PSS_PARAMS(0x999, 1, 20)),
])
def test_pss_params_the_nethsm_cannot_do_are_param_invalid(env, param):
    with pytest.raises(MechanismParamInvalid):
        impl(CKM.RSA_PKCS_PSS).sign_init(priv(env, "rsa"), param, env[2])


def test_hashed_pss_needs_matching_hash_alg(env):
    with pytest.raises(MechanismParamInvalid):
        impl(CKM.SHA256_RSA_PKCS_PSS).sign_init(priv(env, "rsa"), pss(CKM.SHA384), env[2])


def test_pss_data_must_be_the_digest_length(env):
    ctx = impl(CKM.RSA_PKCS_PSS).sign_init(priv(env, "rsa"), pss(CKM.SHA256), env[2])
    with pytest.raises(DataLenRange):
        ctx.single(b"x" * 31)


def test_local_pss_verify_accepts_other_salt_lengths(env):
    data = b"abc"
    key = env[0].keys["rsa"].key.private
    sig = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA1()), 0), hashes.SHA256())
    verify(env, "rsa", CKM.SHA256_RSA_PKCS_PSS, data, sig, pss(CKM.SHA256, mgf=CKG.MGF1_SHA1, slen=0))


def test_key_restrictions(env):
    # PSS-SHA256-only key: SHA384 PSS not permitted, PKCS1 not in allowed mechanisms
    with pytest.raises(KeyFunctionNotPermitted):
        impl(CKM.RSA_PKCS_PSS).sign_init(priv(env, "rsa_pss256"), pss(CKM.SHA384), env[2])
    with pytest.raises(MechanismInvalid):
        impl(CKM.SHA256_RSA_PKCS).sign_init(priv(env, "rsa_pss256"), None, env[2])
    with pytest.raises(KeyFunctionNotPermitted):  # CKA_SIGN false
        impl(CKM.SHA256_RSA_PKCS).sign_init(priv(env, "rsa_raw"), None, env[2])
    with pytest.raises(KeyTypeInconsistent):
        impl(CKM.ECDSA).sign_init(priv(env, "rsa"), None, env[2])
    with pytest.raises(KeyTypeInconsistent):  # sign with a public key
        impl(CKM.SHA256_RSA_PKCS).sign_init(pub(env, "rsa"), None, env[2])


# ---------------------------------------------------------------- ECDSA / EdDSA
CURVES = {"EC_P256": (32, 32), "EC_P384": (48, 48), "EC_P521": (66, 64), "EC_P256K1": (32, 32),
          "BrainpoolP256": (32, 32), "BrainpoolP384": (48, 48), "BrainpoolP512": (64, 64)}


@pytest.mark.parametrize("kid", sorted(CURVES))
@pytest.mark.parametrize("ckm,h", [(CKM.ECDSA_SHA1, hashes.SHA1), (CKM.ECDSA_SHA224, hashes.SHA224),
                                   (CKM.ECDSA_SHA256, hashes.SHA256), (CKM.ECDSA_SHA384, hashes.SHA384),
                                   (CKM.ECDSA_SHA512, hashes.SHA512),
                                   (CKM.ECDSA_SHA3_224, hashes.SHA3_224), (CKM.ECDSA_SHA3_256, hashes.SHA3_256),
                                   (CKM.ECDSA_SHA3_384, hashes.SHA3_384), (CKM.ECDSA_SHA3_512, hashes.SHA3_512)])
def test_ecdsa_sha_raw_signatures_verify_with_openssl(env, kid, ckm, h):
    field, _ = CURVES[kid]
    data = os.urandom(300)
    sig = sign(env, kid, ckm, data)
    assert len(sig) == 2 * field
    der = utils.encode_dss_signature(int.from_bytes(sig[:field], "big"), int.from_bytes(sig[field:], "big"))
    public(env, kid).verify(der, data, ec.ECDSA(h()))
    verify(env, kid, ckm, data, sig)


@pytest.mark.parametrize("kid", sorted(CURVES))
@pytest.mark.parametrize("n", [1, 20, 32, 48, 64, 66])
def test_ecdsa_raw_input_padding_and_truncation(env, kid, n):
    field, size = CURVES[kid]
    digest = os.urandom(n)
    if kid == "EC_P521" and n > 64:
        with pytest.raises(DataLenRange):
            sign(env, kid, CKM.ECDSA, digest)
        return
    sig = sign(env, kid, CKM.ECDSA, digest)
    assert len(sig) == 2 * field
    verify(env, kid, CKM.ECDSA, digest, sig)
    # an independent check: OpenSSL's ECDSA over the same integer (standard truncation rule)
    msg = digest.rjust(size, b"\0")[:size]
    halg = {32: hashes.SHA256, 48: hashes.SHA384, 64: hashes.SHA512}[size]()
    der = utils.encode_dss_signature(int.from_bytes(sig[:field], "big"), int.from_bytes(sig[field:], "big"))
    public(env, kid).verify(der, msg, ec.ECDSA(utils.Prehashed(halg)))


def test_ecdsa_bad_signature(env):
    sig = bytearray(sign(env, "EC_P256", CKM.ECDSA_SHA256, b"x"))
    sig[5] ^= 1
    with pytest.raises(SignatureInvalid):
        verify(env, "EC_P256", CKM.ECDSA_SHA256, b"x", bytes(sig))
    with pytest.raises(SignatureLenRange):
        verify(env, "EC_P256", CKM.ECDSA_SHA256, b"x", bytes(sig[:-1]))


def test_eddsa_64_byte_signatures(env):
    data = os.urandom(500)
    sig = sign(env, "ed", CKM.EDDSA, data)
    assert len(sig) == 64
    public(env, "ed").verify(sig, data)
    verify(env, "ed", CKM.EDDSA, data, sig)
    assert sign(env, "ed", CKM.EDDSA, None, parts=[data[:7], data[7:]]) == sig
    sign(env, "ed", CKM.EDDSA, b"x", bytes(CK_EDDSA_PARAMS(0, 0, None)))
    with pytest.raises(MechanismParamInvalid):
        impl(CKM.EDDSA).sign_init(priv(env, "ed"), bytes(CK_EDDSA_PARAMS(1, 0, None)), env[2])
    with pytest.raises(InvalidSignature):
        public(env, "ed").verify(sig, data + b"x")


# ---------------------------------------------------------------- RSA decrypt / encrypt
def test_rsa_pkcs_decrypt_and_local_encrypt(env):
    ct = public(env, "rsa").encrypt(b"secret", padding.PKCS1v15())
    ctx = impl(CKM.RSA_PKCS).decrypt_init(priv(env, "rsa"), None, env[2])
    assert ctx.single_len(ct) == 245 and not ctx.exact
    assert ctx.single(ct) == b"secret"
    enc = impl(CKM.RSA_PKCS).encrypt_init(pub(env, "rsa"), None, env[2]).single(b"msg")
    assert impl(CKM.RSA_PKCS).decrypt_init(priv(env, "rsa"), None, env[2]).single(enc) == b"msg"
    with pytest.raises(EncryptedDataLenRange):
        impl(CKM.RSA_PKCS).decrypt_init(priv(env, "rsa"), None, env[2]).single(ct[1:])
    with pytest.raises(EncryptedDataInvalid):
        impl(CKM.RSA_PKCS).decrypt_init(priv(env, "rsa"), None, env[2]).single(b"\x01" * 256)


def test_rsa_x509(env):
    n = public(env, "rsa").public_numbers().n
    m = b"\x00" * 200 + os.urandom(56)
    ct = impl(CKM.RSA_X_509).encrypt_init(pub(env, "rsa"), None, env[2]).single(m)
    assert len(ct) == 256
    ctx = impl(CKM.RSA_X_509).decrypt_init(priv(env, "rsa"), None, env[2])
    assert ctx.exact and ctx.single_len(ct) == 256
    assert ctx.single(ct) == m
    with pytest.raises(EncryptedDataInvalid):
        impl(CKM.RSA_X_509).decrypt_init(priv(env, "rsa"), None, env[2]).single(n.to_bytes(256, "big"))


@pytest.mark.parametrize("h", [CKM.SHA_1, CKM.SHA224, CKM.SHA256, CKM.SHA384, CKM.SHA512])
def test_oaep_decrypt_native(env, h):
    api = env[0]
    ct = public(env, "rsa").encrypt(b"hi", padding.OAEP(padding.MGF1(H[h]()), H[h](), None))
    api.reset()
    assert impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa"), oaep(h), env[2]).single(ct) == b"hi"
    assert api.log[-1][0:2] == ("POST", "/keys/{id}/decrypt")
    enc = impl(CKM.RSA_PKCS_OAEP).encrypt_init(pub(env, "rsa"), oaep(h), env[2]).single(b"yo")
    assert impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa"), oaep(h), env[2]).single(enc) == b"yo"


def test_oaep_with_label_or_other_mgf_uses_raw_when_allowed(env):
    ct = public(env, "rsa").encrypt(b"hi", padding.OAEP(padding.MGF1(hashes.SHA1()), hashes.SHA256(), b"lbl"))
    p = oaep(CKM.SHA256, mgf=CKG.MGF1_SHA1, label=b"lbl")
    assert impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa"), p, env[2]).single(ct) == b"hi"
    with pytest.raises(EncryptedDataInvalid):
        impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa"), oaep(CKM.SHA256, label=b"other"), env[2]).single(ct)
    # a key without RSA_Decryption_RAW: parameters the NetHSM cannot do are refused
    with pytest.raises(MechanismParamInvalid):
        impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa_pss256"), p, env[2])
    with pytest.raises(KeyFunctionNotPermitted):
        impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa_pss256"), oaep(CKM.SHA_1), env[2])
    with pytest.raises(MechanismParamInvalid):
        impl(CKM.RSA_PKCS_OAEP).decrypt_init(priv(env, "rsa"), None, env[2])


# ---------------------------------------------------------------- AES
def aes_ref(kid, env, iv, data, decrypt=False):
    c = Cipher(algorithms.AES(env[0].keys[kid].key.private), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


@pytest.mark.parametrize("kid", ["aes", "aes128"])
def test_aes_cbc_single_and_multipart_chain_correctly(env, kid):
    iv = os.urandom(16)
    data = os.urandom(16 * 7)
    ref = aes_ref(kid, env, iv, data)
    assert impl(CKM.AES_CBC).encrypt_init(priv(env, kid), iv, env[2]).single(data) == ref
    ctx = impl(CKM.AES_CBC).encrypt_init(priv(env, kid), iv, env[2])
    out = b""
    for chunk in (data[:5], data[5:40], data[40:41], data[41:]):
        assert ctx.update_len(chunk) == (len(ctx.buf) + len(chunk)) // 16 * 16
        out += ctx.update(chunk)
    out += ctx.final()
    assert out == ref
    dctx = impl(CKM.AES_CBC).decrypt_init(priv(env, kid), iv, env[2])
    plain = dctx.update(ref[:20]) + dctx.update(ref[20:64]) + dctx.update(ref[64:]) + dctx.final()
    assert plain == data


def test_aes_cbc_pad(env):
    iv = os.urandom(16)
    for n in (0, 1, 15, 16, 17, 100):
        data = os.urandom(n)
        ref = aes_ref("aes", env, iv, pad(data))
        ctx = impl(CKM.AES_CBC_PAD).encrypt_init(priv(env, "aes"), iv, env[2])
        assert ctx.single_len(data) == len(ref)
        assert ctx.single(data) == ref
        ctx = impl(CKM.AES_CBC_PAD).encrypt_init(priv(env, "aes"), iv, env[2])
        assert ctx.update(data[:3]) + ctx.update(data[3:]) + ctx.final() == ref
        d = impl(CKM.AES_CBC_PAD).decrypt_init(priv(env, "aes"), iv, env[2])
        assert d.single(ref) == data
        d = impl(CKM.AES_CBC_PAD).decrypt_init(priv(env, "aes"), iv, env[2])
        parts = d.update(ref[:16]) + d.update(ref[16:])
        assert len(parts) == len(ref) - 16  # the last block waits for Final
        assert parts + d.final() == data


def test_aes_errors_before_network(env):
    api = env[0]
    api.reset()
    with pytest.raises(MechanismParamInvalid):
        impl(CKM.AES_CBC).encrypt_init(priv(env, "aes"), b"short", env[2])
    ctx = impl(CKM.AES_CBC).encrypt_init(priv(env, "aes"), bytes(16), env[2])
    with pytest.raises(DataLenRange):
        ctx.single(b"x" * 17)
    d = impl(CKM.AES_CBC).decrypt_init(priv(env, "aes"), bytes(16), env[2])
    with pytest.raises(EncryptedDataLenRange):
        d.single(b"x" * 17)
    d = impl(CKM.AES_CBC_PAD).decrypt_init(priv(env, "aes"), bytes(16), env[2])
    with pytest.raises(EncryptedDataLenRange):
        d.single(b"")
    assert api.crypto_calls == 0
    bad = aes_ref("aes", env, bytes(16), b"\x00" * 16)  # decrypts to a block without valid padding
    with pytest.raises(EncryptedDataInvalid):
        impl(CKM.AES_CBC_PAD).decrypt_init(priv(env, "aes"), bytes(16), env[2]).single(bad)


# ---------------------------------------------------------------- digests
@pytest.mark.parametrize("ckm", [CKM.SHA_1, CKM.SHA224, CKM.SHA256, CKM.SHA384, CKM.SHA512, CKM.SHA3_224,
                                 CKM.SHA3_256, CKM.SHA3_384, CKM.SHA3_512])
def test_digests(ckm):
    ctx = impl(ckm).digest_init(None)
    assert ctx.out_len() == HASHES[ckm].size
    ctx.update(b"ab")
    ctx.update(b"c")
    d = hashes.Hash(H[ckm]())
    d.update(b"abc")
    assert ctx.final() == d.finalize()


def test_ckr_errors_carry_their_codes():
    assert issubclass(DataLenRange, CKRError)
