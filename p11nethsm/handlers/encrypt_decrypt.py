"""Encryption and decryption (PKCS#11 3.0 §5.8, §5.9).

Decryption (RSA X.509/PKCS#1/OAEP, AES-CBC) and AES encryption go to the NetHSM; RSA encryption
is local with the public key. Multi-part AES sends the complete blocks of each Update with the
chaining value of the previous part."""

from __future__ import annotations

from p11nethsm.handlers import operations as op
from p11nethsm.mechanisms.backend import SlotBackend
from p11nethsm.values import OpKind

ENCRYPT, DECRYPT = OpKind.ENCRYPT, OpKind.DECRYPT

C_EncryptInit = op.init("C_EncryptInit", ENCRYPT, lambda mech, key, param, session: mech.encrypt_init(
    key, param, SlotBackend(session.slot)))
C_Encrypt = op.single("C_Encrypt", ENCRYPT)
C_EncryptUpdate = op.update("C_EncryptUpdate", ENCRYPT)
C_EncryptFinal = op.final("C_EncryptFinal", ENCRYPT)

C_DecryptInit = op.init("C_DecryptInit", DECRYPT, lambda mech, key, param, session: mech.decrypt_init(
    key, param, SlotBackend(session.slot)))
C_Decrypt = op.single("C_Decrypt", DECRYPT)
C_DecryptUpdate = op.update("C_DecryptUpdate", DECRYPT)
C_DecryptFinal = op.final("C_DecryptFinal", DECRYPT)
