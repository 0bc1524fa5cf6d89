"""Value types shared by every layer of the module (bottom layer: imports nothing of p11nethsm).

Role names a NetHSM user of a slot, OpKind an operation slot of a session. Members are
singletons compared by identity: they hash in C (Enum.__hash__ is a Python function, run on
every dict lookup of the per-call path).
"""

from __future__ import annotations

import enum

__all__ = ["Role", "OpKind"]


class Role(enum.Enum):
    """NetHSM users of a slot: CKU_USER is the operator, CKU_SO the administrator."""

    OPERATOR = "operator"
    ADMINISTRATOR = "administrator"

    __hash__ = object.__hash__


class OpKind(enum.Enum):
    """The operation slots of a session (one operation of each kind at a time)."""

    FIND = "find"
    SIGN = "sign"
    VERIFY = "verify"
    ENCRYPT = "encrypt"
    DECRYPT = "decrypt"
    DIGEST = "digest"

    __hash__ = object.__hash__
