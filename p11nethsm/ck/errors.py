"""One exception class per CKR the module raises; each carries its code as `rv`.

Handlers raise these; the dispatcher turns them into the return value. Anything else that
escapes a handler is logged with its traceback and becomes CKR_GENERAL_ERROR.
"""

from __future__ import annotations

from p11nethsm.ck.constants import CKR


class CKRError(Exception):
    """Base: a PKCS#11 function fails with `rv`."""

    rv: CKR = CKR.GENERAL_ERROR

    def __init__(self, message: str = "", *, rv: CKR | None = None):
        super().__init__(message or self.__class__.__doc__ or "")
        if rv is not None:
            self.rv = CKR(rv)


# The classes below are looked up by code (BY_RV) and by name. Docstrings give the spec's meaning.
class GeneralError(CKRError):
    """An unrecoverable error inside the module."""
    rv = CKR.GENERAL_ERROR


class HostMemory(CKRError):
    """The module could not allocate memory."""
    rv = CKR.HOST_MEMORY


class SlotIdInvalid(CKRError):
    """The slot ID does not name a slot."""
    rv = CKR.SLOT_ID_INVALID


class FunctionFailed(CKRError):
    """The requested function could not be performed."""
    rv = CKR.FUNCTION_FAILED


class ArgumentsBad(CKRError):
    """An argument is invalid (e.g. a NULL pointer where one is required)."""
    rv = CKR.ARGUMENTS_BAD


class NoEvent(CKRError):
    """No slot event occurred (C_WaitForSlotEvent with CKF_DONT_BLOCK)."""
    rv = CKR.NO_EVENT


class NeedToCreateThreads(CKRError):
    """The library needs to create threads but may not."""
    rv = CKR.NEED_TO_CREATE_THREADS


class CantLock(CKRError):
    """The requested locking type is not available."""
    rv = CKR.CANT_LOCK


class AttributeReadOnly(CKRError):
    """An attribute cannot be set or modified."""
    rv = CKR.ATTRIBUTE_READ_ONLY


class AttributeSensitive(CKRError):
    """An attribute value cannot be revealed."""
    rv = CKR.ATTRIBUTE_SENSITIVE


class AttributeTypeInvalid(CKRError):
    """An attribute type is not valid for the object."""
    rv = CKR.ATTRIBUTE_TYPE_INVALID


class AttributeValueInvalid(CKRError):
    """An attribute value in a template is invalid."""
    rv = CKR.ATTRIBUTE_VALUE_INVALID


class ActionProhibited(CKRError):
    """The action is prohibited by policy."""
    rv = CKR.ACTION_PROHIBITED


class DataInvalid(CKRError):
    """The plaintext input data is invalid."""
    rv = CKR.DATA_INVALID


class DataLenRange(CKRError):
    """The plaintext input data has a bad length."""
    rv = CKR.DATA_LEN_RANGE


class DeviceError(CKRError):
    """The device (NetHSM) or the path to it failed."""
    rv = CKR.DEVICE_ERROR


class DeviceMemory(CKRError):
    """The token has not enough memory."""
    rv = CKR.DEVICE_MEMORY


class DeviceRemoved(CKRError):
    """The token was removed during the function."""
    rv = CKR.DEVICE_REMOVED


class EncryptedDataInvalid(CKRError):
    """The ciphertext is invalid."""
    rv = CKR.ENCRYPTED_DATA_INVALID


class EncryptedDataLenRange(CKRError):
    """The ciphertext has a bad length."""
    rv = CKR.ENCRYPTED_DATA_LEN_RANGE


class FunctionCanceled(CKRError):
    """The function was canceled."""
    rv = CKR.FUNCTION_CANCELED


class FunctionNotParallel(CKRError):
    """No function executes in parallel."""
    rv = CKR.FUNCTION_NOT_PARALLEL


class FunctionNotSupported(CKRError):
    """The function is not supported by this module."""
    rv = CKR.FUNCTION_NOT_SUPPORTED


class KeyHandleInvalid(CKRError):
    """The key handle is invalid."""
    rv = CKR.KEY_HANDLE_INVALID


class KeySizeRange(CKRError):
    """The key size is outside the supported range."""
    rv = CKR.KEY_SIZE_RANGE


class KeyTypeInconsistent(CKRError):
    """The key is not of the type the mechanism needs."""
    rv = CKR.KEY_TYPE_INCONSISTENT


class KeyFunctionNotPermitted(CKRError):
    """The key's attributes do not allow this operation."""
    rv = CKR.KEY_FUNCTION_NOT_PERMITTED


class KeyUnextractable(CKRError):
    """The key cannot be extracted."""
    rv = CKR.KEY_UNEXTRACTABLE


class MechanismInvalid(CKRError):
    """The mechanism is invalid or not supported for this operation."""
    rv = CKR.MECHANISM_INVALID


class MechanismParamInvalid(CKRError):
    """The mechanism parameters are invalid."""
    rv = CKR.MECHANISM_PARAM_INVALID


class ObjectHandleInvalid(CKRError):
    """The object handle is invalid."""
    rv = CKR.OBJECT_HANDLE_INVALID


class OperationActive(CKRError):
    """An operation of this kind is already active in the session."""
    rv = CKR.OPERATION_ACTIVE


class OperationNotInitialized(CKRError):
    """No operation of this kind is active in the session."""
    rv = CKR.OPERATION_NOT_INITIALIZED


class PinIncorrect(CKRError):
    """The PIN does not match."""
    rv = CKR.PIN_INCORRECT


class PinInvalid(CKRError):
    """The PIN has invalid characters."""
    rv = CKR.PIN_INVALID


class PinLenRange(CKRError):
    """The PIN is too short or too long."""
    rv = CKR.PIN_LEN_RANGE


class PinLocked(CKRError):
    """The PIN is locked (here: the NetHSM throttles failed logins)."""
    rv = CKR.PIN_LOCKED


class SessionClosed(CKRError):
    """The session was closed during the function."""
    rv = CKR.SESSION_CLOSED


class SessionCount(CKRError):
    """Too many sessions are open."""
    rv = CKR.SESSION_COUNT


class SessionHandleInvalid(CKRError):
    """The session handle is invalid."""
    rv = CKR.SESSION_HANDLE_INVALID


class SessionParallelNotSupported(CKRError):
    """CKF_SERIAL_SESSION was not set."""
    rv = CKR.SESSION_PARALLEL_NOT_SUPPORTED


class SessionReadOnly(CKRError):
    """The session is read-only."""
    rv = CKR.SESSION_READ_ONLY


class SessionExists(CKRError):
    """A session with the token is open."""
    rv = CKR.SESSION_EXISTS


class SessionReadOnlyExists(CKRError):
    """A read-only session exists, so the SO cannot log in."""
    rv = CKR.SESSION_READ_ONLY_EXISTS


class SessionReadWriteSoExists(CKRError):
    """A read/write SO session exists, so no read-only session can open."""
    rv = CKR.SESSION_READ_WRITE_SO_EXISTS


class SignatureInvalid(CKRError):
    """The signature is invalid."""
    rv = CKR.SIGNATURE_INVALID


class SignatureLenRange(CKRError):
    """The signature has a bad length."""
    rv = CKR.SIGNATURE_LEN_RANGE


class TemplateIncomplete(CKRError):
    """The template lacks attributes needed to create the object."""
    rv = CKR.TEMPLATE_INCOMPLETE


class TemplateInconsistent(CKRError):
    """The template has conflicting attributes."""
    rv = CKR.TEMPLATE_INCONSISTENT


class TokenNotPresent(CKRError):
    """The token is not present (the NetHSM is not Operational or not reachable)."""
    rv = CKR.TOKEN_NOT_PRESENT


class TokenWriteProtected(CKRError):
    """The token is write-protected."""
    rv = CKR.TOKEN_WRITE_PROTECTED


class UserAlreadyLoggedIn(CKRError):
    """The user is already logged in."""
    rv = CKR.USER_ALREADY_LOGGED_IN


class UserNotLoggedIn(CKRError):
    """The function needs a logged-in user (or configured credentials)."""
    rv = CKR.USER_NOT_LOGGED_IN


class UserPinNotInitialized(CKRError):
    """The user's PIN is not initialized."""
    rv = CKR.USER_PIN_NOT_INITIALIZED


class UserTypeInvalid(CKRError):
    """The user type is not valid (or not configured for this slot)."""
    rv = CKR.USER_TYPE_INVALID


class UserAnotherAlreadyLoggedIn(CKRError):
    """Another user type is already logged in."""
    rv = CKR.USER_ANOTHER_ALREADY_LOGGED_IN


class RandomSeedNotSupported(CKRError):
    """The token's RNG does not accept seeding."""
    rv = CKR.RANDOM_SEED_NOT_SUPPORTED


class CurveNotSupported(CKRError):
    """The curve is not supported by the NetHSM."""
    rv = CKR.CURVE_NOT_SUPPORTED


class BufferTooSmall(CKRError):
    """The output buffer is too small; `required` is the size needed."""
    rv = CKR.BUFFER_TOO_SMALL

    def __init__(self, required: int, message: str = ""):
        super().__init__(message or f"buffer too small, {required} bytes needed")
        self.required = required


class CryptokiNotInitialized(CKRError):
    """C_Initialize has not been called (or C_Finalize has)."""
    rv = CKR.CRYPTOKI_NOT_INITIALIZED


class CryptokiAlreadyInitialized(CKRError):
    """C_Initialize was already called."""
    rv = CKR.CRYPTOKI_ALREADY_INITIALIZED


class PublicKeyInvalid(CKRError):
    """The public key is invalid."""
    rv = CKR.PUBLIC_KEY_INVALID


def _by_rv() -> dict[CKR, type[CKRError]]:
    table: dict[CKR, type[CKRError]] = {}
    for cls in CKRError.__subclasses__():
        table.setdefault(cls.rv, cls)
    return table


BY_RV: dict[CKR, type[CKRError]] = _by_rv()
"""rv -> the exception class for it, built from the classes (never an if-chain)."""
