"""The one table of PKCS#11 functions (facts from the PKCS#11 2.40 / 3.0 specification).

Order is the exact member order of CK_FUNCTION_LIST_3_0: the 68 functions of
CK_FUNCTION_LIST (v2.40) first, then the 24 functions added by v3.0.

Consumers:
- libshim/gen.py generates the C prototypes, the forwarding stubs and both
  function-list structs from this table;
- p11nethsm.dispatch maps the index passed by the shim to a handler.

Every forwarded stub calls ``p11nethsm.dispatch.entry(index, *args)`` where
``index`` is the position in FUNCTIONS and every argument is an unsigned
64-bit int (pointers as addresses, CK_BBOOL as 0/1).
"""

from __future__ import annotations

from collections import namedtuple

# C types that are CK_ULONG-sized scalars (all typedef'd to CK_ULONG).
ULONG_TYPES = frozenset(
    {
        "CK_ULONG",
        "CK_RV",
        "CK_FLAGS",
        "CK_SLOT_ID",
        "CK_SESSION_HANDLE",
        "CK_OBJECT_HANDLE",
        "CK_MECHANISM_TYPE",
        "CK_USER_TYPE",
        "CK_STATE",
        "CK_NOTIFICATION",
    }
)
# Byte-sized scalars.
BYTE_TYPES = frozenset({"CK_BBOOL", "CK_BYTE", "CK_CHAR", "CK_UTF8CHAR"})
# Function-pointer types (passed as addresses).
FUNCPTR_TYPES = frozenset({"CK_NOTIFY"})


# collections.namedtuple, not dataclasses or typing.NamedTuple: importing those is a large part
# of the module's start-up time.
class Arg(namedtuple("Arg", ["ctype", "name"])):
    """ctype: str, e.g. "CK_SLOT_ID", "CK_ULONG_PTR", "CK_BBOOL", "CK_VOID_PTR"; name: str."""

    __slots__ = ()

    @property
    def is_pointer(self) -> bool:
        """True if the argument is an address (data or function pointer)."""
        return self.ctype.endswith("_PTR") or self.ctype in FUNCPTR_TYPES


class Function(namedtuple("Function", ["name", "args", "since", "forwarded"])):
    """name: str; args: tuple[Arg, ...]; since: "2.40" or "3.0"; forwarded: bool (False: the shim
    answers it)."""

    __slots__ = ()


def _parse(spec: str) -> tuple[Arg, ...]:
    if not spec.strip():
        return ()
    out = []
    for part in spec.split(","):
        ctype, name = part.split()
        out.append(Arg(ctype, name))
    return tuple(out)


_S = "CK_SESSION_HANDLE hSession"

# name, "ctype name, ctype name, ..."
_V240 = (
    ("C_Initialize", "CK_VOID_PTR pInitArgs"),
    ("C_Finalize", "CK_VOID_PTR pReserved"),
    ("C_GetInfo", "CK_INFO_PTR pInfo"),
    ("C_GetFunctionList", "CK_FUNCTION_LIST_PTR_PTR ppFunctionList"),
    ("C_GetSlotList", "CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount"),
    ("C_GetSlotInfo", "CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo"),
    ("C_GetTokenInfo", "CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo"),
    ("C_GetMechanismList", "CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList, CK_ULONG_PTR pulCount"),
    ("C_GetMechanismInfo", "CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo"),
    ("C_InitToken", "CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel"),
    ("C_InitPIN", f"{_S}, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen"),
    ("C_SetPIN", f"{_S}, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen, CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen"),
    ("C_OpenSession", "CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession"),
    ("C_CloseSession", _S),
    ("C_CloseAllSessions", "CK_SLOT_ID slotID"),
    ("C_GetSessionInfo", f"{_S}, CK_SESSION_INFO_PTR pInfo"),
    ("C_GetOperationState", f"{_S}, CK_BYTE_PTR pOperationState, CK_ULONG_PTR pulOperationStateLen"),
    ("C_SetOperationState", f"{_S}, CK_BYTE_PTR pOperationState, CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey, CK_OBJECT_HANDLE hAuthenticationKey"),
    ("C_Login", f"{_S}, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen"),
    ("C_Logout", _S),
    ("C_CreateObject", f"{_S}, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phObject"),
    ("C_CopyObject", f"{_S}, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject"),
    ("C_DestroyObject", f"{_S}, CK_OBJECT_HANDLE hObject"),
    ("C_GetObjectSize", f"{_S}, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize"),
    ("C_GetAttributeValue", f"{_S}, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount"),
    ("C_SetAttributeValue", f"{_S}, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount"),
    ("C_FindObjectsInit", f"{_S}, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount"),
    ("C_FindObjects", f"{_S}, CK_OBJECT_HANDLE_PTR phObject, CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount"),
    ("C_FindObjectsFinal", _S),
    ("C_EncryptInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_Encrypt", f"{_S}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen"),
    ("C_EncryptUpdate", f"{_S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen"),
    ("C_EncryptFinal", f"{_S}, CK_BYTE_PTR pLastEncryptedPart, CK_ULONG_PTR pulLastEncryptedPartLen"),
    ("C_DecryptInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_Decrypt", f"{_S}, CK_BYTE_PTR pEncryptedData, CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen"),
    ("C_DecryptUpdate", f"{_S}, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen"),
    ("C_DecryptFinal", f"{_S}, CK_BYTE_PTR pLastPart, CK_ULONG_PTR pulLastPartLen"),
    ("C_DigestInit", f"{_S}, CK_MECHANISM_PTR pMechanism"),
    ("C_Digest", f"{_S}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen"),
    ("C_DigestUpdate", f"{_S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen"),
    ("C_DigestKey", f"{_S}, CK_OBJECT_HANDLE hKey"),
    ("C_DigestFinal", f"{_S}, CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen"),
    ("C_SignInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_Sign", f"{_S}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen"),
    ("C_SignUpdate", f"{_S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen"),
    ("C_SignFinal", f"{_S}, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen"),
    ("C_SignRecoverInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_SignRecover", f"{_S}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen"),
    ("C_VerifyInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_Verify", f"{_S}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen"),
    ("C_VerifyUpdate", f"{_S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen"),
    ("C_VerifyFinal", f"{_S}, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen"),
    ("C_VerifyRecoverInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_VerifyRecover", f"{_S}, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen, CK_BYTE_PTR pData, CK_ULONG_PTR pulDataLen"),
    ("C_DigestEncryptUpdate", f"{_S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen"),
    ("C_DecryptDigestUpdate", f"{_S}, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen"),
    ("C_SignEncryptUpdate", f"{_S}, CK_BYTE_PTR pPart, CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart, CK_ULONG_PTR pulEncryptedPartLen"),
    ("C_DecryptVerifyUpdate", f"{_S}, CK_BYTE_PTR pEncryptedPart, CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart, CK_ULONG_PTR pulPartLen"),
    ("C_GenerateKey", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey"),
    ("C_GenerateKeyPair", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount, CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount, CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey"),
    ("C_WrapKey", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey, CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen"),
    ("C_UnwrapKey", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey"),
    ("C_DeriveKey", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey"),
    ("C_SeedRandom", f"{_S}, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen"),
    ("C_GenerateRandom", f"{_S}, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen"),
    ("C_GetFunctionStatus", _S),
    ("C_CancelFunction", _S),
    ("C_WaitForSlotEvent", "CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved"),
)

_P = "CK_VOID_PTR pParameter, CK_ULONG ulParameterLen"
_AD = "CK_BYTE_PTR pAssociatedData, CK_ULONG ulAssociatedDataLen"

_V30 = (
    ("C_GetInterfaceList", "CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount"),
    ("C_GetInterface", "CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags"),
    ("C_LoginUser", f"{_S}, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen"),
    ("C_SessionCancel", f"{_S}, CK_FLAGS flags"),
    ("C_MessageEncryptInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_EncryptMessage", f"{_S}, {_P}, {_AD}, CK_BYTE_PTR pPlaintext, CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext, CK_ULONG_PTR pulCiphertextLen"),
    ("C_EncryptMessageBegin", f"{_S}, {_P}, {_AD}"),
    ("C_EncryptMessageNext", f"{_S}, {_P}, CK_BYTE_PTR pPlaintextPart, CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart, CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags"),
    ("C_MessageEncryptFinal", _S),
    ("C_MessageDecryptInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_DecryptMessage", f"{_S}, {_P}, {_AD}, CK_BYTE_PTR pCiphertext, CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext, CK_ULONG_PTR pulPlaintextLen"),
    ("C_DecryptMessageBegin", f"{_S}, {_P}, {_AD}"),
    ("C_DecryptMessageNext", f"{_S}, {_P}, CK_BYTE_PTR pCiphertextPart, CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart, CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags"),
    ("C_MessageDecryptFinal", _S),
    ("C_MessageSignInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_SignMessage", f"{_S}, {_P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen"),
    ("C_SignMessageBegin", f"{_S}, {_P}"),
    ("C_SignMessageNext", f"{_S}, {_P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen"),
    ("C_MessageSignFinal", _S),
    ("C_MessageVerifyInit", f"{_S}, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey"),
    ("C_VerifyMessage", f"{_S}, {_P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen"),
    ("C_VerifyMessageBegin", f"{_S}, {_P}"),
    ("C_VerifyMessageNext", f"{_S}, {_P}, CK_BYTE_PTR pData, CK_ULONG ulDataLen, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen"),
    ("C_MessageVerifyFinal", _S),
)

# Answered in C from static tables; never forwarded to Python.
NOT_FORWARDED = frozenset({"C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"})

FUNCTIONS: tuple[Function, ...] = tuple(
    Function(name, _parse(spec), since, name not in NOT_FORWARDED)
    for since, table in (("2.40", _V240), ("3.0", _V30))
    for name, spec in table
)

INDEX: dict[str, int] = {f.name: i for i, f in enumerate(FUNCTIONS)}

# Number of members of CK_FUNCTION_LIST (v2.40); FUNCTIONS[:N_V240] is that list.
N_V240 = len(_V240)

assert N_V240 == 68 and len(FUNCTIONS) == 92 and len(INDEX) == 92
