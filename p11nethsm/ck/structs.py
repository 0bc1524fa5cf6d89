"""ctypes structures for the PKCS#11 types the module reads or writes.

Native (unpacked) alignment matches gcc on Linux/macOS (CK_ULONG = unsigned long). Windows
would need `_pack_ = 1`; not supported. Sizes on LP64 (checked by tests/core/test_structs.py):
CK_INFO 88, CK_SLOT_INFO 112, CK_TOKEN_INFO 208, CK_MECHANISM_INFO 24, CK_SESSION_INFO 32,
CK_ATTRIBUTE 24, CK_MECHANISM 24, CK_C_INITIALIZE_ARGS 48.
"""

from __future__ import annotations

import ctypes
from ctypes import POINTER, Structure, c_ubyte, c_ulong, c_void_p

CK_ULONG = c_ulong
CK_BYTE = c_ubyte
CK_BBOOL = c_ubyte
CK_FLAGS = c_ulong
CK_SLOT_ID = c_ulong
CK_SESSION_HANDLE = c_ulong
CK_OBJECT_HANDLE = c_ulong
CK_MECHANISM_TYPE = c_ulong
CK_ATTRIBUTE_TYPE = c_ulong
CK_STATE = c_ulong
CK_RV = c_ulong
CK_VOID_PTR = c_void_p

ULONG_SIZE = ctypes.sizeof(CK_ULONG)


class CK_VERSION(Structure):
    _fields_ = [("major", CK_BYTE), ("minor", CK_BYTE)]


class CK_INFO(Structure):
    _fields_ = [
        ("cryptokiVersion", CK_VERSION),
        ("manufacturerID", CK_BYTE * 32),
        ("flags", CK_FLAGS),
        ("libraryDescription", CK_BYTE * 32),
        ("libraryVersion", CK_VERSION),
    ]


class CK_SLOT_INFO(Structure):
    _fields_ = [
        ("slotDescription", CK_BYTE * 64),
        ("manufacturerID", CK_BYTE * 32),
        ("flags", CK_FLAGS),
        ("hardwareVersion", CK_VERSION),
        ("firmwareVersion", CK_VERSION),
    ]


class CK_TOKEN_INFO(Structure):
    _fields_ = [
        ("label", CK_BYTE * 32),
        ("manufacturerID", CK_BYTE * 32),
        ("model", CK_BYTE * 16),
        ("serialNumber", CK_BYTE * 16),
        ("flags", CK_FLAGS),
        ("ulMaxSessionCount", CK_ULONG),
        ("ulSessionCount", CK_ULONG),
        ("ulMaxRwSessionCount", CK_ULONG),
        ("ulRwSessionCount", CK_ULONG),
        ("ulMaxPinLen", CK_ULONG),
        ("ulMinPinLen", CK_ULONG),
        ("ulTotalPublicMemory", CK_ULONG),
        ("ulFreePublicMemory", CK_ULONG),
        ("ulTotalPrivateMemory", CK_ULONG),
        ("ulFreePrivateMemory", CK_ULONG),
        ("hardwareVersion", CK_VERSION),
        ("firmwareVersion", CK_VERSION),
        ("utcTime", CK_BYTE * 16),
    ]


class CK_SESSION_INFO(Structure):
    _fields_ = [
        ("slotID", CK_SLOT_ID),
        ("state", CK_STATE),
        ("flags", CK_FLAGS),
        ("ulDeviceError", CK_ULONG),
    ]


class CK_MECHANISM_INFO(Structure):
    _fields_ = [
        ("ulMinKeySize", CK_ULONG),
        ("ulMaxKeySize", CK_ULONG),
        ("flags", CK_FLAGS),
    ]


class CK_ATTRIBUTE(Structure):
    _fields_ = [
        ("type", CK_ATTRIBUTE_TYPE),
        ("pValue", CK_VOID_PTR),
        ("ulValueLen", CK_ULONG),
    ]


class CK_MECHANISM(Structure):
    _fields_ = [
        ("mechanism", CK_MECHANISM_TYPE),
        ("pParameter", CK_VOID_PTR),
        ("ulParameterLen", CK_ULONG),
    ]


class CK_C_INITIALIZE_ARGS(Structure):
    _fields_ = [
        ("CreateMutex", CK_VOID_PTR),
        ("DestroyMutex", CK_VOID_PTR),
        ("LockMutex", CK_VOID_PTR),
        ("UnlockMutex", CK_VOID_PTR),
        ("flags", CK_FLAGS),
        ("pReserved", CK_VOID_PTR),
    ]


class CK_RSA_PKCS_PSS_PARAMS(Structure):
    _fields_ = [
        ("hashAlg", CK_MECHANISM_TYPE),
        ("mgf", CK_ULONG),
        ("sLen", CK_ULONG),
    ]


class CK_RSA_PKCS_OAEP_PARAMS(Structure):
    _fields_ = [
        ("hashAlg", CK_MECHANISM_TYPE),
        ("mgf", CK_ULONG),
        ("source", CK_ULONG),
        ("pSourceData", CK_VOID_PTR),
        ("ulSourceDataLen", CK_ULONG),
    ]


class CK_EDDSA_PARAMS(Structure):
    _fields_ = [
        ("phFlag", CK_BBOOL),
        ("ulContextDataLen", CK_ULONG),
        ("pContextData", CK_VOID_PTR),
    ]


class CK_GCM_PARAMS(Structure):
    _fields_ = [
        ("pIv", CK_VOID_PTR),
        ("ulIvLen", CK_ULONG),
        ("ulIvBits", CK_ULONG),
        ("pAAD", CK_VOID_PTR),
        ("ulAADLen", CK_ULONG),
        ("ulTagBits", CK_ULONG),
    ]


class CK_ECDH1_DERIVE_PARAMS(Structure):
    _fields_ = [
        ("kdf", CK_ULONG),
        ("ulSharedDataLen", CK_ULONG),
        ("pSharedData", CK_VOID_PTR),
        ("ulPublicDataLen", CK_ULONG),
        ("pPublicData", CK_VOID_PTR),
    ]


CK_ATTRIBUTE_PTR = POINTER(CK_ATTRIBUTE)
CK_MECHANISM_PTR = POINTER(CK_MECHANISM)

ATTRIBUTE_SIZE = ctypes.sizeof(CK_ATTRIBUTE)
