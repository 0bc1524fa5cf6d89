"""ECDSA on every NetHSM curve (P-256/384/521, secp256k1, brainpoolP256/384/512r1; P-224 on old
firmware).

The NetHSM signs exactly the curve's hash length (P-256, k1, BP256: 32; P-384, BP384: 48;
P-521, BP512: 64) and returns DER; PKCS#11 wants raw r||s, each padded to the field size
(P-521: 66 + 66). Shorter input is left-padded with zeros (same integer), longer input is
truncated to its leftmost bytes, which is the ECDSA rule (leftmost order-bits) for every curve
where that length equals the order size. On P-521 the NetHSM's 64-byte input is shorter than
the 521-bit order: a longer raw CKM_ECDSA input cannot be signed as the ECDSA standard wants,
so it is refused with CKR_DATA_LEN_RANGE rather than signed wrongly (the vendor module truncates).
Verification is local with `cryptography`.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from p11nethsm.ck.constants import CKA, CKK, CKM, CKO
from p11nethsm.ck.errors import DataLenRange, DeviceError, MechanismParamInvalid
from p11nethsm.mechanisms.base import Mechanism, SignContext, VerifyContext, require_key
from p11nethsm.mechanisms.digest import HASH_BY_NAME, HASHES
from p11nethsm.mechanisms.record import EC_FLAGS, SIGN, F, Record

__all__ = ["RECORDS", "ecdsa_input", "der_to_raw", "raw_to_der"]


def ecdsa_input(data: bytes, curve) -> bytes:
    """The exact-length input the NetHSM signs for `data` (a digest) on `curve`."""
    n = curve.ecdsa_input_len
    if len(data) <= n:
        return data.rjust(n, b"\x00")
    if curve.bits > n * 8:
        raise DataLenRange(f"{curve.name}: the NetHSM signs at most {n} bytes; "
                           f"a {len(data)}-byte input cannot be signed correctly")
    return data[:n]


def der_to_raw(der: bytes, field_bytes: int) -> bytes:
    try:
        r, s = decode_dss_signature(der)
        return r.to_bytes(field_bytes, "big") + s.to_bytes(field_bytes, "big")
    except (ValueError, OverflowError) as exc:
        raise DeviceError("the NetHSM returned a malformed ECDSA signature") from exc


def raw_to_der(raw: bytes) -> bytes:
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))


_PRIV = (CKO.PRIVATE_KEY,)
_PUB = (CKO.PUBLIC_KEY,)
_EC = (CKK.EC,)


_BY_LEN = {28: HASH_BY_NAME["sha224"], 32: HASH_BY_NAME["sha256"], 48: HASH_BY_NAME["sha384"],
           64: HASH_BY_NAME["sha512"]}  # a prehashed algorithm of the input's length, for verification


def _no_param(param) -> None:
    if param:
        raise MechanismParamInvalid("ECDSA mechanisms take no parameter")


class Ecdsa(Mechanism):
    """CKM_ECDSA (data = the digest) and CKM_ECDSA_<H> (hash here): NetHSM mode ECDSA."""

    def sign_init(self, obj, param, backend):
        _no_param(param)
        require_key(obj, _PRIV, _EC, CKA.SIGN, self.ckm, *self.sign_grants)
        curve = obj.key.curve
        return SignContext(obj, backend, self.mode, self.hash, lambda d: ecdsa_input(d, curve),
                           2 * curve.field_bytes, post=lambda der: der_to_raw(der, curve.field_bytes))

    def verify_init(self, obj, param):
        _no_param(param)
        require_key(obj, _PUB, _EC, CKA.VERIFY, self.ckm)
        curve = obj.key.curve
        pub = obj.key.public_key()

        def check(digest: bytes, sig: bytes) -> None:
            msg = ecdsa_input(digest, curve)
            pub.verify(raw_to_der(sig), msg, ec.ECDSA(utils.Prehashed(_BY_LEN[len(msg)].crypto())))

        return VerifyContext(self.hash, check, 2 * curve.field_bytes)


_BITS = (224, 521)  # EC field bits


def _ecdsa(ckm: CKM, hash_ckm: CKM | None) -> Record:
    return Record(ckm, SIGN | EC_FLAGS, _BITS, Ecdsa, HASHES[hash_ckm] if hash_ckm is not None else None, "ECDSA",
                  sign=("ECDSA_Signature",))


RECORDS: Final[tuple[Record, ...]] = (
    Record(CKM.EC_KEY_PAIR_GEN, F.HW | F.GENERATE_KEY_PAIR | EC_FLAGS, _BITS, keygen="EC"),
    _ecdsa(CKM.ECDSA, None),
    _ecdsa(CKM.ECDSA_SHA1, CKM.SHA_1),
    _ecdsa(CKM.ECDSA_SHA224, CKM.SHA224),
    _ecdsa(CKM.ECDSA_SHA256, CKM.SHA256),
    _ecdsa(CKM.ECDSA_SHA384, CKM.SHA384),
    _ecdsa(CKM.ECDSA_SHA512, CKM.SHA512),
    # SHA-3: hashed here, the digest padded or truncated to the curve's input like any other
    _ecdsa(CKM.ECDSA_SHA3_224, CKM.SHA3_224),
    _ecdsa(CKM.ECDSA_SHA3_256, CKM.SHA3_256),
    _ecdsa(CKM.ECDSA_SHA3_384, CKM.SHA3_384),
    _ecdsa(CKM.ECDSA_SHA3_512, CKM.SHA3_512),
)
