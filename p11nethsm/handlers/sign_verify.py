"""Signing and verification (PKCS#11 3.0 §5.13, §5.14).

Signing goes to the NetHSM (one request at C_Sign / C_SignFinal; hashing mechanisms hash here,
so C_SignUpdate costs no request); verification is local with the public key. C_SignInit /
C_VerifyInit with a NULL mechanism ends an active operation (spec 3.0)."""

from __future__ import annotations

from p11nethsm.handlers import operations as op
from p11nethsm.mechanisms.backend import SlotBackend
from p11nethsm.values import OpKind

SIGN, VERIFY = OpKind.SIGN, OpKind.VERIFY

C_SignInit = op.init("C_SignInit", SIGN, lambda mech, key, param, session: mech.sign_init(
    key, param, SlotBackend(session.slot)))
C_Sign = op.single("C_Sign", SIGN)
C_SignUpdate = op.feed("C_SignUpdate", SIGN)
C_SignFinal = op.final("C_SignFinal", SIGN)

C_VerifyInit = op.init("C_VerifyInit", VERIFY, lambda mech, key, param, session: mech.verify_init(key, param))
C_Verify = op.verify_single("C_Verify")
C_VerifyUpdate = op.feed("C_VerifyUpdate", VERIFY)
C_VerifyFinal = op.verify_final("C_VerifyFinal")
