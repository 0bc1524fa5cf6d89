"""NetHSM policy tables: ours, not the PKCS#11 spec's.

- KEY_TYPES: NetHSM key `type` -> PKCS#11 key type and curve;
- CURVES: every NetHSM curve with its OID, field size and the exact ECDSA input length the
  NetHSM wants (docs/nethsm-behaviour.md §6.1);
- NETHSM_MECHANISMS: NetHSM key mechanism -> the PKCS#11 mechanisms it enables (for
  CKA_ALLOWED_MECHANISMS, derived from the mechanism records of mechanisms/*) and the usage
  it gives (CKA_SIGN/DECRYPT/ENCRYPT);
- GENERATE_MECHANISMS: what a new key gets for each requested usage (derived too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from p11nethsm.ck.constants import CKA, CKK, CKM
from p11nethsm.mechanisms.registry import RECORDS

__all__ = ["Curve", "CURVES", "CURVE_BY_TYPE", "CURVE_BY_PARAMS", "KEY_TYPES", "NETHSM_MECHANISMS",
           "GENERATE_MECHANISMS", "der_oid", "der_octet_string", "der_integer", "parse_der_octet_string"]


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body.extend(reversed(chunk))
    return b"\x06" + _der_len(len(body)) + bytes(body)


def der_octet_string(data: bytes) -> bytes:
    return b"\x04" + _der_len(len(data)) + data


def der_integer(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return b"\x02" + _der_len(len(raw)) + raw


def der_printable_string(text: str) -> bytes:
    raw = text.encode("ascii")
    return b"\x13" + _der_len(len(raw)) + raw


def parse_der_octet_string(data: bytes) -> bytes | None:
    """The content of a DER OCTET STRING, or None if `data` is not exactly one."""
    if len(data) < 2 or data[0] != 0x04:
        return None
    n = data[1]
    off = 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or len(data) < 2 + k:
            return None
        n = int.from_bytes(data[2:2 + k], "big")
        off = 2 + k
    if off + n != len(data):
        return None
    return data[off:]


@dataclass(frozen=True)
class Curve:
    nethsm_type: str  # NetHSM key type
    name: str  # our name / cryptography's
    oid: str
    field_bytes: int  # size of a coordinate, of r and s, of the private scalar
    ecdsa_input_len: int  # exact digest length the NetHSM signs (0: not ECDSA)
    bits: int  # key size in bits for CK_MECHANISM_INFO
    ckk: CKK = CKK.EC

    @property
    def ec_params(self) -> bytes:
        return der_oid(self.oid)


CURVES: Final[tuple[Curve, ...]] = (
    Curve("EC_P224", "secp224r1", "1.3.132.0.33", 28, 28, 224),  # firmware <= 2.2 only
    Curve("EC_P256", "secp256r1", "1.2.840.10045.3.1.7", 32, 32, 256),
    Curve("EC_P384", "secp384r1", "1.3.132.0.34", 48, 48, 384),
    Curve("EC_P521", "secp521r1", "1.3.132.0.35", 66, 64, 521),
    Curve("EC_P256K1", "secp256k1", "1.3.132.0.10", 32, 32, 256),  # v3.0+
    Curve("BrainpoolP256", "brainpoolP256r1", "1.3.36.3.3.2.8.1.1.7", 32, 32, 256),  # v3.0+
    Curve("BrainpoolP384", "brainpoolP384r1", "1.3.36.3.3.2.8.1.1.11", 48, 48, 384),  # v3.0+
    Curve("BrainpoolP512", "brainpoolP512r1", "1.3.36.3.3.2.8.1.1.13", 64, 64, 512),  # v3.0+
    Curve("Curve25519", "ed25519", "1.3.101.112", 32, 0, 255, CKK.EC_EDWARDS),
)
CURVE_BY_TYPE: Final[dict[str, Curve]] = {c.nethsm_type: c for c in CURVES}
CURVE_BY_PARAMS: Final[dict[bytes, Curve]] = {c.ec_params: c for c in CURVES}
# CKA_EC_PARAMS may also name an Edwards curve by PrintableString (PKCS#11 3.0 §2.3.10).
CURVE_BY_PARAMS[der_printable_string("edwards25519")] = CURVE_BY_TYPE["Curve25519"]
CURVE_BY_PARAMS[der_printable_string("Ed25519")] = CURVE_BY_TYPE["Curve25519"]

KEY_TYPES: Final[dict[str, CKK]] = {
    "RSA": CKK.RSA,
    **{c.nethsm_type: c.ckk for c in CURVES},
    "Generic": CKK.GENERIC_SECRET,  # CKK_AES when it has AES mechanisms (model.py)
}

@dataclass(frozen=True)
class NetHSMMechanism:
    name: str
    ckms: tuple[CKM, ...]  # PKCS#11 mechanisms it enables (on the private/secret key)
    usage: CKA  # CKA_SIGN or CKA_DECRYPT or CKA_ENCRYPT of the private/secret key
    family: str  # the NetHSM key family that has it ("EC": every ECDSA curve)


# The NetHSM's key mechanisms (its API's KeyMechanism enum, in its order: the order key JSON
# lists them), with the usage each gives and the key family that has it. Which PKCS#11
# mechanisms each enables is not written here: it comes from the mechanism records.
_HASHES = ("MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512")
_NETHSM: Final[tuple[tuple[str, CKA, str], ...]] = (
    ("RSA_Decryption_RAW", CKA.DECRYPT, "RSA"),
    ("RSA_Decryption_PKCS1", CKA.DECRYPT, "RSA"),
    *((f"RSA_Decryption_OAEP_{h}", CKA.DECRYPT, "RSA") for h in _HASHES),
    ("RSA_Signature_PKCS1", CKA.SIGN, "RSA"),
    *((f"RSA_Signature_PSS_{h}", CKA.SIGN, "RSA") for h in _HASHES),
    ("EdDSA_Signature", CKA.SIGN, "Curve25519"),
    ("ECDSA_Signature", CKA.SIGN, "EC"),
    ("BIP340_Signature", CKA.SIGN, "EC"),  # not exposed as a PKCS#11 mechanism
    ("AES_Encryption_CBC", CKA.ENCRYPT, "Generic"),
    ("AES_Decryption_CBC", CKA.DECRYPT, "Generic"),
)


def _enabled(name: str) -> tuple[CKM, ...]:
    return tuple(r.ckm for r in RECORDS if name in r.grants)


NETHSM_MECHANISMS: Final[dict[str, NetHSMMechanism]] = {
    name: NetHSMMechanism(name, _enabled(name), usage, family) for name, usage, family in _NETHSM}


def _generated(family: str, usage: CKA) -> tuple[str, ...]:
    return tuple(m.name for m in NETHSM_MECHANISMS.values() if m.family == family and m.usage == usage and m.ckms)


# What a generated/imported key gets per usage attribute: every NetHSM mechanism of its family
# that enables a PKCS#11 mechanism (so never the MD5 ones: PKCS#11 has no MGF1-MD5; nor BIP340).
GENERATE_MECHANISMS: Final[dict[str, dict[CKA, tuple[str, ...]]]] = {
    family: {usage: names for usage in (CKA.SIGN, CKA.DECRYPT, CKA.ENCRYPT) if (names := _generated(family, usage))}
    for family in dict.fromkeys(r.keygen for r in RECORDS if r.keygen is not None)
}
