"""RSA: PKCS#1 v1.5 and PSS signatures on the NetHSM; X.509 (raw), PKCS#1 v1.5 and OAEP
decryption on the NetHSM; verification and encryption locally with the public key.

NetHSM input rules (nethsm-api-notes §6.1/§6.2):
- mode PKCS1 pads the given bytes as they are: CKM_SHAx_RSA_PKCS prepends the DigestInfo here;
  CKM_RSA_PKCS sends the caller's bytes (≤ k-11);
- mode PSS_<H> takes exactly the digest of H and always uses MGF1(H) with sLen = hLen: any other
  CK_RSA_PKCS_PSS_PARAMS is CKR_MECHANISM_PARAM_INVALID;
- mode OAEP_<H> uses MGF1(H) and an empty label. Other OAEP parameters (another MGF hash, a
  label) are done as RAW decryption plus OAEP decoding here when the key allows
  RSA_Decryption_RAW, else CKR_MECHANISM_PARAM_INVALID.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
from typing import Callable, Final

from p11nethsm.api.errors import BadRequest
from p11nethsm.ck.constants import CKA, CKK, CKM, CKO, CKZ
from p11nethsm.ck.errors import (
    DataInvalid,
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    KeyFunctionNotPermitted,
    MechanismParamInvalid,
)
from p11nethsm.ck.structs import CK_RSA_PKCS_OAEP_PARAMS, CK_RSA_PKCS_PSS_PARAMS
from p11nethsm.mechanisms.base import Backend, Context, Mechanism, SignContext, VerifyContext, require_key
from p11nethsm.mechanisms.digest import HASH_BY_MGF, HASHES, Hash

__all__ = ["MECHANISMS", "parse_pss_params", "parse_oaep_params", "oaep_decode"]

_RSA = (CKK.RSA,)
_PRIV = (CKO.PRIVATE_KEY,)
_PUB = (CKO.PUBLIC_KEY,)


# ------------------------------------------------------------------ parameters
def parse_pss_params(param: bytes | None) -> tuple[Hash, Hash, int]:
    """(hash, mgf hash, sLen) of a CK_RSA_PKCS_PSS_PARAMS."""
    if param is None or len(param) != ctypes.sizeof(CK_RSA_PKCS_PSS_PARAMS):
        raise MechanismParamInvalid("CK_RSA_PKCS_PSS_PARAMS required")
    p = CK_RSA_PKCS_PSS_PARAMS.from_buffer_copy(param)
    h = HASHES.get(p.hashAlg)
    if h is None:
        raise MechanismParamInvalid(f"PSS hashAlg {p.hashAlg:#x} is not supported")
    mgf = HASH_BY_MGF.get(p.mgf)
    if mgf is None:
        raise MechanismParamInvalid(f"PSS mgf {p.mgf:#x} is not supported")
    return h, mgf, p.sLen


def parse_oaep_params(param: bytes | None) -> tuple[Hash, Hash, bytes]:
    """(hash, mgf hash, label) of a CK_RSA_PKCS_OAEP_PARAMS (read during the call)."""
    if param is None or len(param) != ctypes.sizeof(CK_RSA_PKCS_OAEP_PARAMS):
        raise MechanismParamInvalid("CK_RSA_PKCS_OAEP_PARAMS required")
    p = CK_RSA_PKCS_OAEP_PARAMS.from_buffer_copy(param)
    h = HASHES.get(p.hashAlg)
    if h is None or h.mgf is None:
        raise MechanismParamInvalid(f"OAEP hashAlg {p.hashAlg:#x} is not supported")
    mgf = HASH_BY_MGF.get(p.mgf)
    if mgf is None:
        raise MechanismParamInvalid(f"OAEP mgf {p.mgf:#x} is not supported")
    label = b""
    if p.source not in (0, CKZ.DATA_SPECIFIED):
        raise MechanismParamInvalid(f"OAEP source {p.source:#x} is not supported")
    if p.ulSourceDataLen:
        if not p.pSourceData:
            raise MechanismParamInvalid("OAEP pSourceData is NULL with a non-zero length")
        label = ctypes.string_at(p.pSourceData, p.ulSourceDataLen)
    return h, mgf, label


# ------------------------------------------------------------------ helpers
def _k(obj) -> int:
    return obj.key.modulus_bytes


def _mgf1(hash_: Hash, seed: bytes, length: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < length:
        out += hashlib.new(hash_.name, seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return bytes(out[:length])


def oaep_decode(em: bytes, k: int, hash_: Hash, mgf: Hash, label: bytes) -> bytes:
    """EME-OAEP decoding (RFC 8017 §7.1.2 step 3) of the k-byte raw decryption result."""
    hlen = hash_.size
    if len(em) != k or k < 2 * hlen + 2:
        raise EncryptedDataInvalid("OAEP decoding failed")
    lhash = hashlib.new(hash_.name, label).digest()
    y, masked_seed, masked_db = em[0], em[1:1 + hlen], em[1 + hlen:]
    seed = bytes(a ^ b for a, b in zip(masked_seed, _mgf1(mgf, masked_db, hlen)))
    db = bytes(a ^ b for a, b in zip(masked_db, _mgf1(mgf, seed, k - hlen - 1)))
    good = hmac.compare_digest(db[:hlen], lhash) & (y == 0)
    rest = db[hlen:]
    idx = rest.find(b"\x01")
    if not good or idx < 0 or rest[:idx].strip(b"\x00"):
        raise EncryptedDataInvalid("OAEP decoding failed")
    return rest[idx + 1:]


# ------------------------------------------------------------------ mechanisms
class RsaPkcs(Mechanism):
    """CKM_RSA_PKCS: raw PKCS#1 v1.5 sign (caller gives DigestInfo), decrypt, local encrypt."""

    def sign_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, "RSA_Signature_PKCS1")
        k = _k(obj)

        def prepare(data: bytes) -> bytes:
            if len(data) > k - 11:
                raise DataLenRange(f"CKM_RSA_PKCS signs at most k-11 = {k - 11} bytes, got {len(data)}")
            return data

        return SignContext(obj, backend, "PKCS1", None, prepare, k)

    def verify_init(self, obj, param):
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()

        def check(data: bytes, sig: bytes) -> None:
            from cryptography.exceptions import InvalidSignature
            from cryptography.hazmat.primitives.asymmetric import padding

            if pub.recover_data_from_signature(sig, padding.PKCS1v15(), None) != data:
                raise InvalidSignature()

        return VerifyContext(None, check, _k(obj))

    def decrypt_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.DECRYPT, self.ckm, "RSA_Decryption_PKCS1")
        k = _k(obj)

        def check(data: bytes) -> None:
            if len(data) != k:
                raise EncryptedDataLenRange(f"CKM_RSA_PKCS decrypts exactly k = {k} bytes, got {len(data)}")

        return RsaDecryptContext(obj, backend, "PKCS1", check, k - 11, exact=False)

    def encrypt_init(self, obj, param, backend):
        require_key(obj, _PUB, _RSA, CKA.ENCRYPT, self.ckm)
        pub = obj.key.public_key()
        k = _k(obj)

        def enc(data: bytes) -> bytes:
            from cryptography.hazmat.primitives.asymmetric import padding

            if len(data) > k - 11:
                raise DataLenRange(f"CKM_RSA_PKCS encrypts at most k-11 = {k - 11} bytes")
            return pub.encrypt(data, padding.PKCS1v15())

        return LocalEncryptContext(enc, k)


class RsaX509(Mechanism):
    """CKM_RSA_X_509: raw RSA decryption on the NetHSM (mode RAW), raw encryption locally.

    Raw signing is the same private-key operation (m^d mod n): it goes through RAW decryption,
    so it needs a key that allows RSA_Decryption_RAW (the NetHSM has no raw signature mode).
    The input is taken as a big-endian integer of at most k bytes (spec: left-padded with
    zeros) and must be below the modulus; verification is local."""

    def sign_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, "RSA_Decryption_RAW")
        k = _k(obj)
        n = obj.key.modulus

        def check(data: bytes) -> None:
            if len(data) > k:
                raise DataLenRange(f"CKM_RSA_X_509 signs at most k = {k} bytes, got {len(data)}")
            if int.from_bytes(data, "big") >= n:
                raise DataInvalid("the input is not below the modulus")

        def post(out: bytes) -> bytes:
            return out.rjust(k, b"\x00")[-k:]

        return RawSignContext(obj, backend, "RAW", check, k, exact=True,
                              post=post, pad=lambda d: d.rjust(k, b"\x00"))

    def verify_init(self, obj, param):
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        key = obj.key
        k = _k(obj)

        def check(data: bytes, sig: bytes) -> None:
            from cryptography.exceptions import InvalidSignature

            s = int.from_bytes(sig, "big")
            if len(sig) != k or s >= key.modulus:
                raise InvalidSignature()
            if pow(s, key.public_exponent, key.modulus) != int.from_bytes(data, "big") or len(data) > k:
                raise InvalidSignature()

        return VerifyContext(None, check, k)

    def decrypt_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.DECRYPT, self.ckm, "RSA_Decryption_RAW")
        k = _k(obj)
        n = obj.key.modulus

        def check(data: bytes) -> None:
            if len(data) > k:
                raise EncryptedDataLenRange(f"CKM_RSA_X_509 decrypts at most k = {k} bytes")
            if int.from_bytes(data, "big") >= n:
                raise EncryptedDataInvalid("the ciphertext is not below the modulus")

        def post(out: bytes) -> bytes:
            return out.rjust(k, b"\x00")[-k:]

        return RsaDecryptContext(obj, backend, "RAW", check, k, exact=True, post=post)

    def encrypt_init(self, obj, param, backend):
        require_key(obj, _PUB, _RSA, CKA.ENCRYPT, self.ckm)
        key = obj.key
        k = _k(obj)

        def enc(data: bytes) -> bytes:
            if len(data) > k:
                raise DataLenRange(f"CKM_RSA_X_509 encrypts at most k = {k} bytes")
            m = int.from_bytes(data, "big")
            if m >= key.modulus:
                raise DataInvalid("the input is not below the modulus")
            return pow(m, key.public_exponent, key.modulus).to_bytes(k, "big")

        return LocalEncryptContext(enc, k)


class RsaPkcsOaep(Mechanism):
    """CKM_RSA_PKCS_OAEP: NetHSM OAEP_<H> decryption, local encryption."""

    def decrypt_init(self, obj, param, backend):
        h, mgf, label = parse_oaep_params(param)
        native = f"RSA_Decryption_OAEP_{h.nethsm}"
        require_key(obj, _PRIV, _RSA, CKA.DECRYPT, self.ckm)
        key = obj.key
        k = _k(obj)

        def check(data: bytes) -> None:
            if len(data) != k:
                raise EncryptedDataLenRange(f"CKM_RSA_PKCS_OAEP decrypts exactly k = {k} bytes")

        bound = k - 2 * h.size - 2
        if mgf is h and not label and key.has(native):
            return RsaDecryptContext(obj, backend, f"OAEP_{h.nethsm}", check, bound, exact=False)
        if key.has("RSA_Decryption_RAW"):
            # Parameters the NetHSM's OAEP does not take: raw decryption + OAEP decoding here.
            def post(out: bytes) -> bytes:
                return oaep_decode(out.rjust(k, b"\x00")[-k:], k, h, mgf, label)

            return RsaDecryptContext(obj, backend, "RAW", check, bound, exact=False, post=post)
        if mgf is not h or label:
            raise MechanismParamInvalid("the NetHSM does OAEP only with MGF1 of the same hash and an empty label")
        raise KeyFunctionNotPermitted(f"the NetHSM key does not allow {native}")

    def encrypt_init(self, obj, param, backend):
        h, mgf, label = parse_oaep_params(param)
        require_key(obj, _PUB, _RSA, CKA.ENCRYPT, self.ckm)
        pub = obj.key.public_key()
        k = _k(obj)

        def enc(data: bytes) -> bytes:
            from cryptography.hazmat.primitives.asymmetric import padding

            if len(data) > k - 2 * h.size - 2:
                raise DataLenRange(f"OAEP encrypts at most {k - 2 * h.size - 2} bytes with this key")
            return pub.encrypt(data, padding.OAEP(mgf=padding.MGF1(mgf.crypto()), algorithm=h.crypto(),
                                                  label=label or None))

        return LocalEncryptContext(enc, k)


class RsaHashPkcs(Mechanism):
    """CKM_SHAx_RSA_PKCS: hash here, prepend the DigestInfo, NetHSM mode PKCS1."""

    def __init__(self, ckm: int, hash_ckm: int):
        super().__init__(ckm)
        self.hash = HASHES[hash_ckm]

    def sign_init(self, obj, param, backend):
        if param:
            raise MechanismParamInvalid("this mechanism takes no parameter")
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, "RSA_Signature_PKCS1")
        h = self.hash
        k = _k(obj)
        if k - 11 < len(h.digest_info) + h.size:
            raise DataLenRange("the key is too short for this hash")
        return SignContext(obj, backend, "PKCS1", h, lambda d: h.digest_info + d, k)

    def verify_init(self, obj, param):
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()
        h = self.hash

        def check(digest: bytes, sig: bytes) -> None:
            from cryptography.hazmat.primitives.asymmetric import padding, utils

            pub.verify(sig, digest, padding.PKCS1v15(), utils.Prehashed(h.crypto()))

        return VerifyContext(h, check, _k(obj))


class RsaPss(Mechanism):
    """CKM_RSA_PKCS_PSS (data = the digest) and CKM_SHAx_RSA_PKCS_PSS (hash here)."""

    def __init__(self, ckm: int, hash_ckm: int | None = None):
        super().__init__(ckm)
        self.hash = HASHES[hash_ckm] if hash_ckm is not None else None

    def _params(self, param) -> tuple[Hash, Hash, int]:
        h, mgf, slen = parse_pss_params(param)
        if self.hash is not None and h is not self.hash:
            raise MechanismParamInvalid(f"hashAlg must be {self.hash.name} for this mechanism")
        return h, mgf, slen

    def sign_init(self, obj, param, backend):
        h, mgf, slen = self._params(param)
        if mgf is not h:
            raise MechanismParamInvalid(f"the NetHSM does PSS with MGF1-{h.name} only")
        if slen != h.size:
            raise MechanismParamInvalid(f"the NetHSM does PSS with sLen = {h.size} (hash length) only")
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, f"RSA_Signature_PSS_{h.nethsm}")
        k = _k(obj)

        def prepare(digest: bytes) -> bytes:
            if len(digest) != h.size:
                raise DataLenRange(f"CKM_RSA_PKCS_PSS signs a {h.size}-byte {h.name} digest, got {len(digest)}")
            return digest

        return SignContext(obj, backend, f"PSS_{h.nethsm}", self.hash, prepare, k)

    def verify_init(self, obj, param):
        h, mgf, slen = self._params(param)
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()

        def check(digest: bytes, sig: bytes) -> None:
            from cryptography.hazmat.primitives.asymmetric import padding, utils

            if len(digest) != h.size:
                raise DataLenRange(f"a {h.size}-byte digest is expected")
            pub.verify(sig, digest, padding.PSS(mgf=padding.MGF1(mgf.crypto()), salt_length=slen),
                       utils.Prehashed(h.crypto()))

        return VerifyContext(self.hash, check, _k(obj))


# ------------------------------------------------------------------ decrypt / encrypt contexts
class RsaDecryptContext(Context):
    """Single-part RSA decryption (updates only buffer; everything goes at Final)."""

    def __init__(self, obj, backend: Backend, mode: str, check: Callable[[bytes], None], bound: int,
                 exact: bool, post: Callable[[bytes], bytes] | None = None):
        self.key_id = obj.key_id
        self.backend = backend
        self.mode = mode
        self.check = check
        self.bound = bound
        self.exact = exact
        self.post = post
        self.buf = bytearray()

    def out_len(self) -> int:
        return self.bound

    def update(self, data: bytes) -> bytes:
        self.buf += data
        return b""

    def final(self) -> bytes:
        data = bytes(self.buf)
        self.check(data)
        try:
            out = self.backend.decrypt(self.key_id, self.mode, data)
        except BadRequest as exc:
            raise EncryptedDataInvalid(f"the NetHSM could not decrypt: {exc.server_message}") from exc
        return self.post(out) if self.post is not None else out


class RawSignContext(RsaDecryptContext):
    """CKM_RSA_X_509 signing: a RAW decryption of the (zero-padded) input."""

    def __init__(self, *args, pad: Callable[[bytes], bytes], **kw):
        super().__init__(*args, **kw)
        self.pad = pad

    def final(self) -> bytes:
        data = bytes(self.buf)
        self.check(data)
        self.buf = bytearray(self.pad(data))
        try:
            return super().final()
        except EncryptedDataInvalid as exc:
            raise DataInvalid(str(exc)) from exc


class LocalEncryptContext(Context):
    def __init__(self, enc: Callable[[bytes], bytes], k: int):
        self.enc = enc
        self.k = k
        self.buf = bytearray()

    def out_len(self) -> int:
        return self.k

    def update(self, data: bytes) -> bytes:
        self.buf += data
        return b""

    def final(self) -> bytes:
        return self.enc(bytes(self.buf))


_HASH_PKCS = {CKM.SHA1_RSA_PKCS: CKM.SHA_1, CKM.SHA224_RSA_PKCS: CKM.SHA224, CKM.SHA256_RSA_PKCS: CKM.SHA256,
              CKM.SHA384_RSA_PKCS: CKM.SHA384, CKM.SHA512_RSA_PKCS: CKM.SHA512}
_HASH_PSS = {CKM.SHA1_RSA_PKCS_PSS: CKM.SHA_1, CKM.SHA224_RSA_PKCS_PSS: CKM.SHA224,
             CKM.SHA256_RSA_PKCS_PSS: CKM.SHA256, CKM.SHA384_RSA_PKCS_PSS: CKM.SHA384,
             CKM.SHA512_RSA_PKCS_PSS: CKM.SHA512}

MECHANISMS: Final[dict[int, Mechanism]] = {
    int(CKM.RSA_PKCS): RsaPkcs(CKM.RSA_PKCS),
    int(CKM.RSA_X_509): RsaX509(CKM.RSA_X_509),
    int(CKM.RSA_PKCS_OAEP): RsaPkcsOaep(CKM.RSA_PKCS_OAEP),
    int(CKM.RSA_PKCS_PSS): RsaPss(CKM.RSA_PKCS_PSS),
    **{int(m): RsaHashPkcs(m, h) for m, h in _HASH_PKCS.items()},
    **{int(m): RsaPss(m, h) for m, h in _HASH_PSS.items()},
}
