"""The one table of mechanisms: CKM -> CK_MECHANISM_INFO data + the family module that
implements it (style-anchors §5.8). C_GetMechanismList lists this table.

Key sizes follow the spec's units per mechanism: RSA modulus bits, EC field bits, AES key
bytes, generic secret bits. CKF_HW marks what the NetHSM performs (sign, decrypt, AES, key
generation); verify, RSA encrypt and digests are done locally with `cryptography`/hashlib and
carry no CKF_HW (pkcs11-tool --test only signs with CKF_HW mechanisms).

Family modules are imported on first use (`implementation()`), never at C_Initialize.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

from p11nethsm.ck.constants import CKM, MechanismFlag
from p11nethsm.ck.errors import MechanismInvalid

__all__ = ["MechInfo", "MECHANISMS", "mechanism_info", "mechanism_list", "implementation"]

F = MechanismFlag
_EC_FLAGS = F.EC_F_P | F.EC_OID | F.EC_UNCOMPRESS
_SIGN = F.HW | F.SIGN | F.VERIFY
_RSA = (1024, 8192)
_EC = (224, 521)
_ED = (255, 255)
_AES = (16, 32)


@dataclass(frozen=True)
class MechInfo:
    ckm: CKM
    family: str | None  # module p11nethsm.mechanisms.<family>; None: key generation (keymgmt)
    min_key: int
    max_key: int
    flags: MechanismFlag


def _t(*rows) -> dict[int, MechInfo]:
    return {int(r[0]): MechInfo(r[0], r[1], r[2][0], r[2][1], r[3]) for r in rows}


MECHANISMS: Final[dict[int, MechInfo]] = _t(
    # RSA
    (CKM.RSA_PKCS_KEY_PAIR_GEN, None, _RSA, F.HW | F.GENERATE_KEY_PAIR),
    (CKM.RSA_PKCS, "rsa", _RSA, _SIGN | F.DECRYPT | F.ENCRYPT),
    (CKM.RSA_X_509, "rsa", _RSA, _SIGN | F.DECRYPT | F.ENCRYPT),  # sign: RAW decryption
    (CKM.RSA_PKCS_OAEP, "rsa", _RSA, F.HW | F.DECRYPT | F.ENCRYPT),
    (CKM.SHA1_RSA_PKCS, "rsa", _RSA, _SIGN),
    (CKM.SHA224_RSA_PKCS, "rsa", _RSA, _SIGN),
    (CKM.SHA256_RSA_PKCS, "rsa", _RSA, _SIGN),
    (CKM.SHA384_RSA_PKCS, "rsa", _RSA, _SIGN),
    (CKM.SHA512_RSA_PKCS, "rsa", _RSA, _SIGN),
    (CKM.RSA_PKCS_PSS, "rsa", _RSA, _SIGN),
    (CKM.SHA1_RSA_PKCS_PSS, "rsa", _RSA, _SIGN),
    (CKM.SHA224_RSA_PKCS_PSS, "rsa", _RSA, _SIGN),
    (CKM.SHA256_RSA_PKCS_PSS, "rsa", _RSA, _SIGN),
    (CKM.SHA384_RSA_PKCS_PSS, "rsa", _RSA, _SIGN),
    (CKM.SHA512_RSA_PKCS_PSS, "rsa", _RSA, _SIGN),
    # EC
    (CKM.EC_KEY_PAIR_GEN, None, _EC, F.HW | F.GENERATE_KEY_PAIR | _EC_FLAGS),
    (CKM.ECDSA, "ecdsa", _EC, _SIGN | _EC_FLAGS),
    (CKM.ECDSA_SHA1, "ecdsa", _EC, _SIGN | _EC_FLAGS),
    (CKM.ECDSA_SHA224, "ecdsa", _EC, _SIGN | _EC_FLAGS),
    (CKM.ECDSA_SHA256, "ecdsa", _EC, _SIGN | _EC_FLAGS),
    (CKM.ECDSA_SHA384, "ecdsa", _EC, _SIGN | _EC_FLAGS),
    (CKM.ECDSA_SHA512, "ecdsa", _EC, _SIGN | _EC_FLAGS),
    # EdDSA
    (CKM.EC_EDWARDS_KEY_PAIR_GEN, None, _ED, F.HW | F.GENERATE_KEY_PAIR | F.EC_OID | F.EC_CURVENAME),
    (CKM.EDDSA, "eddsa", _ED, _SIGN),
    # AES / generic secrets
    (CKM.AES_KEY_GEN, None, _AES, F.HW | F.GENERATE),
    (CKM.GENERIC_SECRET_KEY_GEN, None, (128, 8192), F.HW | F.GENERATE),
    (CKM.AES_CBC, "aes", _AES, F.HW | F.ENCRYPT | F.DECRYPT),
    (CKM.AES_CBC_PAD, "aes", _AES, F.HW | F.ENCRYPT | F.DECRYPT),
    # Digests (local)
    (CKM.SHA_1, "digest", (0, 0), F.DIGEST),
    (CKM.SHA224, "digest", (0, 0), F.DIGEST),
    (CKM.SHA256, "digest", (0, 0), F.DIGEST),
    (CKM.SHA384, "digest", (0, 0), F.DIGEST),
    (CKM.SHA512, "digest", (0, 0), F.DIGEST),
)


def mechanism_list() -> list[int]:
    """C_GetMechanismList."""
    return list(MECHANISMS)


def mechanism_info(ckm: int) -> MechInfo:
    """C_GetMechanismInfo (MechanismInvalid for a mechanism not in the table)."""
    try:
        return MECHANISMS[ckm]
    except KeyError:
        raise MechanismInvalid(f"mechanism {ckm:#x} is not supported") from None


def implementation(ckm: int):
    """The Mechanism object of `ckm` (MechanismInvalid if unknown or a key generation one)."""
    mech = _IMPLEMENTATIONS.get(ckm)
    if mech is not None:  # every *Init asks: one dict lookup, not an import_module call
        return mech
    info = mechanism_info(ckm)
    if info.family is None:
        raise MechanismInvalid(f"{info.ckm.name} is a key generation mechanism")
    module = importlib.import_module(f"p11nethsm.mechanisms.{info.family}")
    mech = _IMPLEMENTATIONS[ckm] = module.MECHANISMS[ckm]
    return mech


_IMPLEMENTATIONS: dict = {}  # CKM -> Mechanism, filled on first use (family modules load lazily)
