"""The mechanism table, derived from the records of the family modules (mechanisms/record.py):
C_GetMechanismList lists it, C_GetMechanismInfo reads it, the crypto handlers take the
implementation from it. A mechanism is added in its family module only (docs/ARCHITECTURE.md,
"Add a mechanism"); nothing here names one.

The family modules (and `cryptography`) are imported with this module, at the first
C_GetMechanismList or crypto *Init, never at C_Initialize.
"""

from __future__ import annotations

from typing import Final

from p11nethsm.ck.errors import MechanismInvalid
from p11nethsm.mechanisms import aes, digest, ecdsa, eddsa, rsa
from p11nethsm.mechanisms.base import Mechanism
from p11nethsm.mechanisms.record import F, Record

__all__ = ["Record", "MECHANISMS", "RECORDS", "F", "mechanism_info", "mechanism_list", "implementation"]

FAMILIES: Final = (rsa, ecdsa, eddsa, aes, digest)  # in C_GetMechanismList order

RECORDS: Final[tuple[Record, ...]] = tuple(r for family in FAMILIES for r in family.RECORDS)
MECHANISMS: Final[dict[int, Record]] = {int(r.ckm): r for r in RECORDS}
if len(MECHANISMS) != len(RECORDS):
    raise ImportError("a mechanism is registered twice")
_IMPLEMENTATIONS: Final[dict[int, Mechanism]] = {int(r.ckm): r.impl(r) for r in RECORDS if r.impl is not None}


def mechanism_list() -> list[int]:
    """C_GetMechanismList."""
    return list(MECHANISMS)


def mechanism_info(ckm: int) -> Record:
    """C_GetMechanismInfo (MechanismInvalid for a mechanism not in the table)."""
    try:
        return MECHANISMS[ckm]
    except KeyError:
        raise MechanismInvalid(f"mechanism {ckm:#x} is not supported") from None


def implementation(ckm: int) -> Mechanism:
    """The Mechanism object of `ckm` (MechanismInvalid if unknown or a key generation one)."""
    mech = _IMPLEMENTATIONS.get(ckm)
    if mech is not None:
        return mech
    info = mechanism_info(ckm)
    raise MechanismInvalid(f"{info.ckm.name} is a key generation mechanism")
