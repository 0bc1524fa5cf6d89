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

# imported with the module (first ECDSA use), not per signature
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from p11nethsm.ck.constants import CKA, CKK, CKM, CKO
from p11nethsm.ck.errors import DataLenRange, DeviceError, MechanismParamInvalid
from p11nethsm.mechanisms.base import Mechanism, SignContext, VerifyContext, require_key
from p11nethsm.mechanisms.digest import HASHES

__all__ = ["MECHANISMS", "ecdsa_input", "der_to_raw", "raw_to_der"]


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


class Ecdsa(Mechanism):
    def __init__(self, ckm: int, hash_ckm: int | None):
        super().__init__(ckm)
        self.hash = HASHES[hash_ckm] if hash_ckm is not None else None

    def sign_init(self, obj, param, backend):
        if param:
            raise MechanismParamInvalid("ECDSA mechanisms take no parameter")
        require_key(obj, _PRIV, _EC, CKA.SIGN, self.ckm, "ECDSA_Signature")
        curve = obj.key.curve
        return SignContext(obj, backend, "ECDSA", self.hash, lambda d: ecdsa_input(d, curve),
                           2 * curve.field_bytes, post=lambda der: der_to_raw(der, curve.field_bytes))

    def verify_init(self, obj, param):
        if param:
            raise MechanismParamInvalid("ECDSA mechanisms take no parameter")
        require_key(obj, _PUB, _EC, CKA.VERIFY, self.ckm)
        curve = obj.key.curve
        pub = obj.key.public_key()

        def check(digest: bytes, sig: bytes) -> None:
            from cryptography.hazmat.primitives.asymmetric import ec, utils

            msg = ecdsa_input(digest, curve)
            h = {28: "sha224", 32: "sha256", 48: "sha384", 64: "sha512"}[len(msg)]
            algo = next(x for x in HASHES.values() if x.name == h).crypto()
            pub.verify(raw_to_der(sig), msg, ec.ECDSA(utils.Prehashed(algo)))

        return VerifyContext(self.hash, check, 2 * curve.field_bytes)


MECHANISMS: Final[dict[int, Mechanism]] = {
    int(CKM.ECDSA): Ecdsa(CKM.ECDSA, None),
    int(CKM.ECDSA_SHA1): Ecdsa(CKM.ECDSA_SHA1, CKM.SHA_1),
    int(CKM.ECDSA_SHA224): Ecdsa(CKM.ECDSA_SHA224, CKM.SHA224),
    int(CKM.ECDSA_SHA256): Ecdsa(CKM.ECDSA_SHA256, CKM.SHA256),
    int(CKM.ECDSA_SHA384): Ecdsa(CKM.ECDSA_SHA384, CKM.SHA384),
    int(CKM.ECDSA_SHA512): Ecdsa(CKM.ECDSA_SHA512, CKM.SHA512),
}
