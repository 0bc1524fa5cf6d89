"""Signing and verification (PKCS#11 3.0 §5.13, §5.14).

Signing goes to the NetHSM (one request at C_Sign / C_SignFinal; hashing mechanisms hash here,
so C_SignUpdate costs no request); verification is local with the public key. C_SignInit /
C_VerifyInit with a NULL mechanism ends an active operation (spec 3.0)."""

from __future__ import annotations

from p11nethsm.ck.cdata import read_mechanism
from p11nethsm.dispatch import handler
from p11nethsm.library import get_library
from p11nethsm.values import OpKind
from p11nethsm.mechanisms.backend import SlotBackend
from p11nethsm.mechanisms.protocol import key_object, run_feed, run_final, run_single, run_verify
from p11nethsm.mechanisms.registry import implementation


def _init(hSession, pMechanism, hKey, kind: OpKind):
    session = get_library().session(hSession)
    op = session.op(kind)
    if not pMechanism:
        op.abort()
        return
    op.require_idle()  # OperationActive when one runs (checked before reading the mechanism)
    ckm, param = read_mechanism(pMechanism)
    mech = implementation(ckm)
    obj = key_object(session, hKey)
    if kind is OpKind.SIGN:
        ctx = mech.sign_init(obj, param, SlotBackend(session.slot))
    else:
        ctx = mech.verify_init(obj, param)
    op.begin(ctx)


@handler
def C_SignInit(hSession, pMechanism, hKey):
    _init(hSession, pMechanism, hKey, OpKind.SIGN)


@handler
def C_Sign(hSession, pData, ulDataLen, pSignature, pulSignatureLen):
    op = get_library().session(hSession).op(OpKind.SIGN)
    run_single(op, pData, ulDataLen, pSignature, pulSignatureLen)


@handler
def C_SignUpdate(hSession, pPart, ulPartLen):
    run_feed(get_library().session(hSession).op(OpKind.SIGN), pPart, ulPartLen)


@handler
def C_SignFinal(hSession, pSignature, pulSignatureLen):
    run_final(get_library().session(hSession).op(OpKind.SIGN), pSignature, pulSignatureLen)


@handler
def C_VerifyInit(hSession, pMechanism, hKey):
    _init(hSession, pMechanism, hKey, OpKind.VERIFY)


@handler
def C_Verify(hSession, pData, ulDataLen, pSignature, ulSignatureLen):
    from p11nethsm.ck.cdata import read_bytes

    op = get_library().session(hSession).op(OpKind.VERIFY)
    ctx = op.single()
    try:
        ctx.update(read_bytes(pData, ulDataLen))
    except BaseException:
        op.abort(ctx)
        raise
    run_verify(op, ctx, pSignature, ulSignatureLen)


@handler
def C_VerifyUpdate(hSession, pPart, ulPartLen):
    run_feed(get_library().session(hSession).op(OpKind.VERIFY), pPart, ulPartLen)


@handler
def C_VerifyFinal(hSession, pSignature, ulSignatureLen):
    op = get_library().session(hSession).op(OpKind.VERIFY)
    run_verify(op, op.claim(), pSignature, ulSignatureLen)
