"""The C functions of the crypto operations, built once for sign/verify/encrypt/decrypt/digest.

Each family module (sign_verify, encrypt_decrypt, digest) is a table of `init`, `single`,
`update`, `feed` and `final` entries: the call shapes are the same, only the operation kind and
the mechanism's init differ. The output protocol itself is p11nethsm.mechanisms.protocol; the
CKR preconditions (OPERATION_ACTIVE, OPERATION_NOT_INITIALIZED, SESSION_CLOSED) come from the
operation chart (p11nethsm.state.operation).
"""

from __future__ import annotations

from collections.abc import Callable

from p11nethsm.ck.cdata import read_bytes, read_mechanism
from p11nethsm.handlers import handler
from p11nethsm.library import get_library
from p11nethsm.mechanisms.protocol import key_object, run_feed, run_final, run_single, run_update, run_verify
from p11nethsm.mechanisms.registry import implementation
from p11nethsm.values import OpKind

__all__ = ["init", "single", "update", "feed", "final", "verify_single", "verify_final", "op_of"]


def op_of(hSession: int, kind: OpKind):
    return get_library().session(hSession).op(kind)


def _named(name: str, fn: Callable[..., None]) -> Callable[..., None]:
    fn.__name__ = fn.__qualname__ = name
    return handler(fn)


def init(name: str, kind: OpKind, start: Callable) -> Callable[..., None]:
    """C_*Init(hSession, pMechanism, hKey): a NULL mechanism ends the running operation; else
    `start(mech, key object, param, session)` makes the context."""

    def c_init(hSession, pMechanism, hKey):
        session = get_library().session(hSession)
        op = session.op(kind)
        if not pMechanism:
            op.abort()
            return
        op.require_idle()  # the chart's refusal, before reading the mechanism
        ckm, param = read_mechanism(pMechanism)
        mech = implementation(ckm)
        op.begin(start(mech, key_object(session, hKey), param, session))

    return _named(name, c_init)


def single(name: str, kind: OpKind) -> Callable[..., None]:
    """C_Sign / C_Encrypt / C_Decrypt / C_Digest(hSession, pIn, ulInLen, pOut, pulOutLen)."""
    return _named(name, lambda hSession, pIn, ulInLen, pOut, pulOutLen: run_single(
        op_of(hSession, kind), pIn, ulInLen, pOut, pulOutLen))


def update(name: str, kind: OpKind) -> Callable[..., None]:
    """C_EncryptUpdate / C_DecryptUpdate(hSession, pIn, ulInLen, pOut, pulOutLen)."""
    return _named(name, lambda hSession, pIn, ulInLen, pOut, pulOutLen: run_update(
        op_of(hSession, kind), pIn, ulInLen, pOut, pulOutLen))


def feed(name: str, kind: OpKind) -> Callable[..., None]:
    """C_SignUpdate / C_VerifyUpdate / C_DigestUpdate(hSession, pPart, ulPartLen)."""
    return _named(name, lambda hSession, pPart, ulPartLen: run_feed(op_of(hSession, kind), pPart, ulPartLen))


def final(name: str, kind: OpKind) -> Callable[..., None]:
    """C_SignFinal / C_EncryptFinal / C_DecryptFinal / C_DigestFinal(hSession, pOut, pulOutLen)."""
    return _named(name, lambda hSession, pOut, pulOutLen: run_final(op_of(hSession, kind), pOut, pulOutLen))


def _verify_single(hSession, pData, ulDataLen, pSignature, ulSignatureLen):
    op = op_of(hSession, OpKind.VERIFY)
    ctx = op.single()
    try:
        ctx.update(read_bytes(pData, ulDataLen))
    except BaseException:
        op.abort(ctx)
        raise
    run_verify(op, ctx, pSignature, ulSignatureLen)


def _verify_final(hSession, pSignature, ulSignatureLen):
    op = op_of(hSession, OpKind.VERIFY)
    run_verify(op, op.claim(), pSignature, ulSignatureLen)


def verify_single(name: str) -> Callable[..., None]:
    return _named(name, _verify_single)


def verify_final(name: str) -> Callable[..., None]:
    return _named(name, _verify_final)
