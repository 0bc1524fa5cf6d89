"""EdDSA (pure Ed25519): the NetHSM signs the raw message (mode EdDSA), 64-byte signatures.
CK_EDDSA_PARAMS asking for Ed25519ph or a context is CKR_MECHANISM_PARAM_INVALID; a
parameter for plain Ed25519 (phFlag FALSE, no context) is accepted."""

from __future__ import annotations

import ctypes
from typing import Final

from p11nethsm.ck.constants import CKA, CKK, CKM, CKO
from p11nethsm.ck.errors import MechanismParamInvalid
from p11nethsm.ck.structs import CK_EDDSA_PARAMS
from p11nethsm.mechanisms.base import Mechanism, SignContext, VerifyContext, require_key
from p11nethsm.mechanisms.record import SIGN, F, Record

__all__ = ["RECORDS"]

SIGNATURE_LEN = 64


def _check_params(param: bytes | None) -> None:
    if not param:
        return
    if len(param) != ctypes.sizeof(CK_EDDSA_PARAMS):
        raise MechanismParamInvalid("bad CK_EDDSA_PARAMS")
    p = CK_EDDSA_PARAMS.from_buffer_copy(param)
    if p.phFlag or p.ulContextDataLen:
        raise MechanismParamInvalid("the NetHSM does pure Ed25519 only (no prehash, no context)")


class EdDsa(Mechanism):
    def sign_init(self, obj, param, backend):
        _check_params(param)
        require_key(obj, (CKO.PRIVATE_KEY,), (CKK.EC_EDWARDS,), CKA.SIGN, self.ckm, *self.sign_grants)
        return SignContext(obj, backend, self.mode, None, lambda d: d, SIGNATURE_LEN)

    def verify_init(self, obj, param):
        _check_params(param)
        require_key(obj, (CKO.PUBLIC_KEY,), (CKK.EC_EDWARDS,), CKA.VERIFY, self.ckm)
        pub = obj.key.public_key()
        return VerifyContext(None, lambda data, sig: pub.verify(sig, data), SIGNATURE_LEN)


_BITS = (255, 255)

RECORDS: Final[tuple[Record, ...]] = (
    Record(CKM.EC_EDWARDS_KEY_PAIR_GEN, F.HW | F.GENERATE_KEY_PAIR | F.EC_OID | F.EC_CURVENAME, _BITS,
           keygen="Curve25519"),
    Record(CKM.EDDSA, SIGN, _BITS, EdDsa, mode="EdDSA", sign=("EdDSA_Signature",)),
)
