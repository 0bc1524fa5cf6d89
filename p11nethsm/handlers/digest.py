"""Message digesting (PKCS#11 3.0 §5.12), local (SHA-1, SHA-2)."""

from __future__ import annotations

from p11nethsm.ck.cdata import read_mechanism
from p11nethsm.ck.constants import CKR
from p11nethsm.ck.errors import CKRError
from p11nethsm.dispatch import handler
from p11nethsm.library import get_library
from p11nethsm.values import OpKind
from p11nethsm.mechanisms.protocol import key_object, run_feed, run_final, run_single
from p11nethsm.mechanisms.registry import implementation


@handler
def C_DigestInit(hSession, pMechanism):
    op = get_library().session(hSession).op(OpKind.DIGEST)
    op.require_idle()  # OperationActive when one runs (checked before reading the mechanism)
    ckm, param = read_mechanism(pMechanism)
    op.begin(implementation(ckm).digest_init(param))


@handler
def C_Digest(hSession, pData, ulDataLen, pDigest, pulDigestLen):
    run_single(get_library().session(hSession).op(OpKind.DIGEST), pData, ulDataLen, pDigest, pulDigestLen)


@handler
def C_DigestUpdate(hSession, pPart, ulPartLen):
    run_feed(get_library().session(hSession).op(OpKind.DIGEST), pPart, ulPartLen)


@handler
def C_DigestKey(hSession, hKey):
    session = get_library().session(hSession)
    op = session.op(OpKind.DIGEST)
    op.context  # OperationNotInitialized when none
    key_object(session, hKey)
    op.abort()
    raise CKRError("NetHSM keys are never revealed, so they cannot be digested", rv=CKR.KEY_INDIGESTIBLE)


@handler
def C_DigestFinal(hSession, pDigest, pulDigestLen):
    run_final(get_library().session(hSession).op(OpKind.DIGEST), pDigest, pulDigestLen)
