"""RSA: PKCS#1 v1.5 and PSS signatures on the NetHSM; X.509 (raw), PKCS#1 v1.5 and OAEP
decryption on the NetHSM; verification and encryption locally with the public key.

NetHSM input rules (docs/nethsm-behaviour.md §6.1/§6.2):
- mode PKCS1 pads the given bytes as they are: CKM_<H>_RSA_PKCS (SHA-1, SHA-2, SHA-3) hashes and
  prepends the DigestInfo here;
  CKM_RSA_PKCS sends the caller's bytes (≤ k-11);
- mode PSS_<H> takes exactly the digest of H and always uses MGF1(H) with sLen = hLen: any other
  CK_RSA_PKCS_PSS_PARAMS is CKR_MECHANISM_PARAM_INVALID;
- mode OAEP_<H> uses MGF1(H) and an empty label. Other OAEP parameters (another MGF hash, a
  label) are done as RAW decryption plus OAEP decoding here when the key allows
  RSA_Decryption_RAW, else CKR_MECHANISM_PARAM_INVALID.

The NetHSM has no PSS mode for SHA-3, so there is no CKM_SHA3_*_RSA_PKCS_PSS (docs/ARCHITECTURE.md,
"Add a mechanism", shows the record that would add one).
"""

from __future__ import annotations

from typing import Callable, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, utils

from p11nethsm.ck.constants import CKA, CKK, CKM, CKO
from p11nethsm.ck.errors import (
    DataInvalid,
    DataLenRange,
    EncryptedDataInvalid,
    EncryptedDataLenRange,
    KeyFunctionNotPermitted,
    MechanismParamInvalid,
)
from p11nethsm.mechanisms.base import Mechanism, SignContext, VerifyContext, require_key
from p11nethsm.mechanisms.digest import HASHES, Hash
from p11nethsm.mechanisms.record import SIGN, F, Record
from p11nethsm.mechanisms.rsa_ops import (
    LocalEncryptContext,
    RawSignContext,
    RsaDecryptContext,
    oaep_decode,
    parse_oaep_params,
    parse_pss_params,
)

__all__ = ["RECORDS"]

_RSA = (CKK.RSA,)
_PRIV = (CKO.PRIVATE_KEY,)
_PUB = (CKO.PUBLIC_KEY,)


# ------------------------------------------------------------------ helpers
def _k(obj) -> int:
    return obj.key.modulus_bytes


def _raw_input(obj, too_long, not_below, what: str) -> Callable[[bytes], None]:
    """The input check of a raw RSA operation: at most k bytes, as an integer below the modulus."""
    k, n = _k(obj), obj.key.modulus

    def check(data: bytes) -> None:
        if len(data) > k:
            raise too_long(f"CKM_RSA_X_509 {what} at most k = {k} bytes, got {len(data)}")
        if int.from_bytes(data, "big") >= n:
            raise not_below("the input is not below the modulus")

    return check


def _exact_k(k: int, what: str) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        if len(data) != k:
            raise EncryptedDataLenRange(f"{what} decrypts exactly k = {k} bytes, got {len(data)}")

    return check


def _left_pad(k: int) -> Callable[[bytes], bytes]:
    return lambda out: out.rjust(k, b"\x00")[-k:]


# ------------------------------------------------------------------ mechanisms
class RsaPkcs(Mechanism):
    """CKM_RSA_PKCS: raw PKCS#1 v1.5 sign (caller gives DigestInfo), decrypt, local encrypt."""

    def sign_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, *self.sign_grants)
        k = _k(obj)

        def prepare(data: bytes) -> bytes:
            if len(data) > k - 11:
                raise DataLenRange(f"CKM_RSA_PKCS signs at most k-11 = {k - 11} bytes, got {len(data)}")
            return data

        return SignContext(obj, backend, self.mode, None, prepare, k)

    def verify_init(self, obj, param):
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()

        def check(data: bytes, sig: bytes) -> None:
            if pub.recover_data_from_signature(sig, padding.PKCS1v15(), None) != data:
                raise InvalidSignature()

        return VerifyContext(None, check, _k(obj))

    def decrypt_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.DECRYPT, self.ckm, *self.decrypt_grants)
        k = _k(obj)
        return RsaDecryptContext(obj, backend, self.mode, _exact_k(k, "CKM_RSA_PKCS"), k - 11, exact=False)

    def encrypt_init(self, obj, param, backend):
        require_key(obj, _PUB, _RSA, CKA.ENCRYPT, self.ckm)
        pub = obj.key.public_key()
        k = _k(obj)

        def enc(data: bytes) -> bytes:
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
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, *self.sign_grants)
        k = _k(obj)
        return RawSignContext(obj, backend, self.mode, _raw_input(obj, DataLenRange, DataInvalid, "signs"), k,
                              exact=True, post=_left_pad(k), pad=lambda d: d.rjust(k, b"\x00"))

    def verify_init(self, obj, param):
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        key = obj.key
        k = _k(obj)

        def check(data: bytes, sig: bytes) -> None:
            s = int.from_bytes(sig, "big")
            if len(sig) != k or s >= key.modulus:
                raise InvalidSignature()
            if pow(s, key.public_exponent, key.modulus) != int.from_bytes(data, "big") or len(data) > k:
                raise InvalidSignature()

        return VerifyContext(None, check, k)

    def decrypt_init(self, obj, param, backend):
        require_key(obj, _PRIV, _RSA, CKA.DECRYPT, self.ckm, *self.decrypt_grants)
        k = _k(obj)
        check = _raw_input(obj, EncryptedDataLenRange, EncryptedDataInvalid, "decrypts")
        return RsaDecryptContext(obj, backend, self.mode, check, k, exact=True, post=_left_pad(k))

    def encrypt_init(self, obj, param, backend):
        require_key(obj, _PUB, _RSA, CKA.ENCRYPT, self.ckm)
        key = obj.key
        k = _k(obj)
        check = _raw_input(obj, DataLenRange, DataInvalid, "encrypts")

        def enc(data: bytes) -> bytes:
            check(data)
            return pow(int.from_bytes(data, "big"), key.public_exponent, key.modulus).to_bytes(k, "big")

        return LocalEncryptContext(enc, k)


class RsaPkcsOaep(Mechanism):
    """CKM_RSA_PKCS_OAEP: NetHSM OAEP_<H> decryption, local encryption."""

    def decrypt_init(self, obj, param, backend):
        h, mgf, label = parse_oaep_params(param)
        native = f"RSA_Decryption_OAEP_{h.nethsm}" if h.nethsm else None
        require_key(obj, _PRIV, _RSA, CKA.DECRYPT, self.ckm)
        key = obj.key
        k = _k(obj)
        check = _exact_k(k, "CKM_RSA_PKCS_OAEP")
        bound = k - 2 * h.size - 2
        if mgf is h and not label and native is not None and key.has(native):
            return RsaDecryptContext(obj, backend, f"OAEP_{h.nethsm}", check, bound, exact=False)
        if key.has("RSA_Decryption_RAW"):
            # Parameters the NetHSM's OAEP does not take: raw decryption + OAEP decoding here.
            def post(out: bytes) -> bytes:
                return oaep_decode(out.rjust(k, b"\x00")[-k:], k, h, mgf, label)

            return RsaDecryptContext(obj, backend, "RAW", check, bound, exact=False, post=post)
        if mgf is not h or label or native is None:
            raise MechanismParamInvalid("the NetHSM does OAEP only with SHA-1/SHA-2, MGF1 of the same hash and "
                                        "an empty label")
        raise KeyFunctionNotPermitted(f"the NetHSM key does not allow {native}")

    def encrypt_init(self, obj, param, backend):
        h, mgf, label = parse_oaep_params(param)
        require_key(obj, _PUB, _RSA, CKA.ENCRYPT, self.ckm)
        pub = obj.key.public_key()
        k = _k(obj)

        def enc(data: bytes) -> bytes:
            if len(data) > k - 2 * h.size - 2:
                raise DataLenRange(f"OAEP encrypts at most {k - 2 * h.size - 2} bytes with this key")
            return pub.encrypt(data, padding.OAEP(mgf=padding.MGF1(mgf.crypto()), algorithm=h.crypto(),
                                                  label=label or None))

        return LocalEncryptContext(enc, k)


class RsaHashPkcs(Mechanism):
    """CKM_<H>_RSA_PKCS: hash here, prepend the DigestInfo, NetHSM mode PKCS1."""

    def sign_init(self, obj, param, backend):
        if param:
            raise MechanismParamInvalid("this mechanism takes no parameter")
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, *self.sign_grants)
        h = self.hash
        k = _k(obj)
        if k - 11 < len(h.digest_info) + h.size:
            raise DataLenRange("the key is too short for this hash")
        return SignContext(obj, backend, self.mode, h, lambda d: h.digest_info + d, k)

    def verify_init(self, obj, param):
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()
        algorithm = utils.Prehashed(self.hash.crypto())

        def check(digest: bytes, sig: bytes) -> None:
            pub.verify(sig, digest, padding.PKCS1v15(), algorithm)

        return VerifyContext(self.hash, check, _k(obj))


class RsaPss(Mechanism):
    """CKM_RSA_PKCS_PSS (data = the digest) and CKM_<H>_RSA_PKCS_PSS (hash here)."""

    def _params(self, param) -> tuple[Hash, Hash, int]:
        h, mgf, slen = parse_pss_params(param)
        if self.hash is not None and h is not self.hash:
            raise MechanismParamInvalid(f"hashAlg must be {self.hash.name} for this mechanism")
        return h, mgf, slen

    def sign_init(self, obj, param, backend):
        h, mgf, slen = self._params(param)
        if h.nethsm is None:
            raise MechanismParamInvalid(f"the NetHSM has no PSS mode for {h.name}")
        if mgf is not h:
            raise MechanismParamInvalid(f"the NetHSM does PSS with MGF1-{h.name} only")
        if slen != h.size:
            raise MechanismParamInvalid(f"the NetHSM does PSS with sLen = {h.size} (hash length) only")
        require_key(obj, _PRIV, _RSA, CKA.SIGN, self.ckm, f"RSA_Signature_PSS_{h.nethsm}")

        def prepare(digest: bytes) -> bytes:
            if len(digest) != h.size:
                raise DataLenRange(f"CKM_RSA_PKCS_PSS signs a {h.size}-byte {h.name} digest, got {len(digest)}")
            return digest

        return SignContext(obj, backend, f"PSS_{h.nethsm}", self.hash, prepare, _k(obj))

    def verify_init(self, obj, param):
        h, mgf, slen = self._params(param)
        require_key(obj, _PUB, _RSA, CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()

        def check(digest: bytes, sig: bytes) -> None:
            if len(digest) != h.size:
                raise DataLenRange(f"a {h.size}-byte digest is expected")
            pub.verify(sig, digest, padding.PSS(mgf=padding.MGF1(mgf.crypto()), salt_length=slen),
                       utils.Prehashed(h.crypto()))

        return VerifyContext(self.hash, check, _k(obj))


# ------------------------------------------------------------------ records
_BITS = (1024, 8192)
_NATIVE = [h for h in HASHES.values() if h.nethsm and h.mgf]  # NetHSM PSS_/OAEP_ modes PKCS#11 can ask for


def _hash_pkcs(ckm: CKM, hash_ckm: CKM) -> Record:
    return Record(ckm, SIGN, _BITS, RsaHashPkcs, HASHES[hash_ckm], "PKCS1", sign=("RSA_Signature_PKCS1",))


def _hash_pss(ckm: CKM, hash_ckm: CKM) -> Record:
    h = HASHES[hash_ckm]
    return Record(ckm, SIGN, _BITS, RsaPss, h, f"PSS_{h.nethsm}", sign=(f"RSA_Signature_PSS_{h.nethsm}",))


RECORDS: Final[tuple[Record, ...]] = (
    Record(CKM.RSA_PKCS_KEY_PAIR_GEN, F.HW | F.GENERATE_KEY_PAIR, _BITS, keygen="RSA"),
    Record(CKM.RSA_PKCS, SIGN | F.DECRYPT | F.ENCRYPT, _BITS, RsaPkcs, mode="PKCS1",
           sign=("RSA_Signature_PKCS1",), decrypt=("RSA_Decryption_PKCS1",)),
    # signing is a RAW decryption (the NetHSM has no raw signature mode)
    Record(CKM.RSA_X_509, SIGN | F.DECRYPT | F.ENCRYPT, _BITS, RsaX509, mode="RAW",
           sign=("RSA_Decryption_RAW",), decrypt=("RSA_Decryption_RAW",)),
    Record(CKM.RSA_PKCS_OAEP, F.HW | F.DECRYPT | F.ENCRYPT, _BITS, RsaPkcsOaep,
           decrypt=tuple(f"RSA_Decryption_OAEP_{h.nethsm}" for h in _NATIVE)),
    _hash_pkcs(CKM.SHA1_RSA_PKCS, CKM.SHA_1),
    _hash_pkcs(CKM.SHA224_RSA_PKCS, CKM.SHA224),
    _hash_pkcs(CKM.SHA256_RSA_PKCS, CKM.SHA256),
    _hash_pkcs(CKM.SHA384_RSA_PKCS, CKM.SHA384),
    _hash_pkcs(CKM.SHA512_RSA_PKCS, CKM.SHA512),
    Record(CKM.RSA_PKCS_PSS, SIGN, _BITS, RsaPss, sign=tuple(f"RSA_Signature_PSS_{h.nethsm}" for h in _NATIVE)),
    _hash_pss(CKM.SHA1_RSA_PKCS_PSS, CKM.SHA_1),
    _hash_pss(CKM.SHA224_RSA_PKCS_PSS, CKM.SHA224),
    _hash_pss(CKM.SHA256_RSA_PKCS_PSS, CKM.SHA256),
    _hash_pss(CKM.SHA384_RSA_PKCS_PSS, CKM.SHA384),
    _hash_pss(CKM.SHA512_RSA_PKCS_PSS, CKM.SHA512),
    # SHA-3: hashed here, DigestInfo built here, NetHSM mode PKCS1 (no NetHSM PSS mode for SHA-3)
    _hash_pkcs(CKM.SHA3_224_RSA_PKCS, CKM.SHA3_224),
    _hash_pkcs(CKM.SHA3_256_RSA_PKCS, CKM.SHA3_256),
    _hash_pkcs(CKM.SHA3_384_RSA_PKCS, CKM.SHA3_384),
    _hash_pkcs(CKM.SHA3_512_RSA_PKCS, CKM.SHA3_512),
)
