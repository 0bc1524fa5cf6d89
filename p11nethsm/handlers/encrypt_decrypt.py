"""Encryption and decryption (PKCS#11 3.0 §5.8, §5.9).

Decryption (RSA X.509/PKCS#1/OAEP, AES-CBC) and AES encryption go to the NetHSM; RSA encryption
is local with the public key. Multi-part AES sends the complete blocks of each Update with the
chaining value of the previous part."""

from __future__ import annotations

from p11nethsm.ck.cdata import read_mechanism
from p11nethsm.dispatch import handler
from p11nethsm.library import get_library
from p11nethsm.values import OpKind
from p11nethsm.mechanisms.backend import SlotBackend
from p11nethsm.mechanisms.protocol import key_object, run_final, run_single, run_update
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
    backend = SlotBackend(session.slot)
    ctx = mech.encrypt_init(obj, param, backend) if kind is OpKind.ENCRYPT else mech.decrypt_init(obj, param, backend)
    op.begin(ctx)


@handler
def C_EncryptInit(hSession, pMechanism, hKey):
    _init(hSession, pMechanism, hKey, OpKind.ENCRYPT)


@handler
def C_Encrypt(hSession, pData, ulDataLen, pEncryptedData, pulEncryptedDataLen):
    run_single(get_library().session(hSession).op(OpKind.ENCRYPT), pData, ulDataLen, pEncryptedData,
               pulEncryptedDataLen)


@handler
def C_EncryptUpdate(hSession, pPart, ulPartLen, pEncryptedPart, pulEncryptedPartLen):
    run_update(get_library().session(hSession).op(OpKind.ENCRYPT), pPart, ulPartLen, pEncryptedPart,
               pulEncryptedPartLen)


@handler
def C_EncryptFinal(hSession, pLastEncryptedPart, pulLastEncryptedPartLen):
    run_final(get_library().session(hSession).op(OpKind.ENCRYPT), pLastEncryptedPart, pulLastEncryptedPartLen)


@handler
def C_DecryptInit(hSession, pMechanism, hKey):
    _init(hSession, pMechanism, hKey, OpKind.DECRYPT)


@handler
def C_Decrypt(hSession, pEncryptedData, ulEncryptedDataLen, pData, pulDataLen):
    run_single(get_library().session(hSession).op(OpKind.DECRYPT), pEncryptedData, ulEncryptedDataLen, pData,
               pulDataLen)


@handler
def C_DecryptUpdate(hSession, pEncryptedPart, ulEncryptedPartLen, pPart, pulPartLen):
    run_update(get_library().session(hSession).op(OpKind.DECRYPT), pEncryptedPart, ulEncryptedPartLen, pPart,
               pulPartLen)


@handler
def C_DecryptFinal(hSession, pLastPart, pulLastPartLen):
    run_final(get_library().session(hSession).op(OpKind.DECRYPT), pLastPart, pulLastPartLen)
