"""Message digesting (PKCS#11 3.0 §5.12), local (SHA-1, SHA-2)."""

from __future__ import annotations

from p11nethsm.ck.cdata import read_mechanism
from p11nethsm.ck.constants import CKR
from p11nethsm.ck.errors import CKRError
from p11nethsm.handlers import handler, operations as op
from p11nethsm.library import get_library
from p11nethsm.mechanisms.protocol import key_object
from p11nethsm.mechanisms.registry import implementation
from p11nethsm.values import OpKind

DIGEST = OpKind.DIGEST


@handler
def C_DigestInit(hSession, pMechanism):
    operation = op.op_of(hSession, DIGEST)
    operation.require_idle()  # the chart's refusal, before reading the mechanism
    ckm, param = read_mechanism(pMechanism)
    operation.begin(implementation(ckm).digest_init(param))


C_Digest = op.single("C_Digest", DIGEST)
C_DigestUpdate = op.feed("C_DigestUpdate", DIGEST)
C_DigestFinal = op.final("C_DigestFinal", DIGEST)


@handler
def C_DigestKey(hSession, hKey):
    session = get_library().session(hSession)
    operation = session.op(DIGEST)
    operation.context  # OperationNotInitialized when none
    key_object(session, hKey)
    operation.abort()
    raise CKRError("NetHSM keys are never revealed, so they cannot be digested", rv=CKR.KEY_INDIGESTIBLE)

