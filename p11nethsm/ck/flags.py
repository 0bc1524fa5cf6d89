"""PKCS#11 flag words as IntFlag (facts of the PKCS#11 2.40/3.0 specification, written here by
hand), so that logs read names; re-exported by ck/constants.py."""

from enum import IntFlag

__all__ = ["CKF", "SlotFlag", "TokenFlag", "SessionFlag", "MechanismFlag", "WaitFlag"]


class CKF(IntFlag):
    """Flags. One IntFlag for all flag words: the bit values overlap between
    words, so use the word-specific aliases below where it matters."""

    # CK_INFO / CK_C_INITIALIZE_ARGS
    LIBRARY_CANT_CREATE_OS_THREADS = 0x1
    OS_LOCKING_OK = 0x2


class SlotFlag(IntFlag):
    """CK_SLOT_INFO.flags."""

    TOKEN_PRESENT = 0x1
    REMOVABLE_DEVICE = 0x2
    HW_SLOT = 0x4


class TokenFlag(IntFlag):
    """CK_TOKEN_INFO.flags."""

    RNG = 0x1
    WRITE_PROTECTED = 0x2
    LOGIN_REQUIRED = 0x4
    USER_PIN_INITIALIZED = 0x8
    RESTORE_KEY_NOT_NEEDED = 0x20
    CLOCK_ON_TOKEN = 0x40
    PROTECTED_AUTHENTICATION_PATH = 0x100
    DUAL_CRYPTO_OPERATIONS = 0x200
    TOKEN_INITIALIZED = 0x400
    SECONDARY_AUTHENTICATION = 0x800
    USER_PIN_COUNT_LOW = 0x10000
    USER_PIN_FINAL_TRY = 0x20000
    USER_PIN_LOCKED = 0x40000
    USER_PIN_TO_BE_CHANGED = 0x80000
    SO_PIN_COUNT_LOW = 0x100000
    SO_PIN_FINAL_TRY = 0x200000
    SO_PIN_LOCKED = 0x400000
    SO_PIN_TO_BE_CHANGED = 0x800000
    ERROR_STATE = 0x1000000


class SessionFlag(IntFlag):
    """CK_SESSION_INFO.flags and C_OpenSession flags."""

    RW_SESSION = 0x2
    SERIAL_SESSION = 0x4


class MechanismFlag(IntFlag):
    """CK_MECHANISM_INFO.flags."""

    HW = 0x1
    MESSAGE_ENCRYPT = 0x2
    MESSAGE_DECRYPT = 0x4
    MESSAGE_SIGN = 0x8
    MESSAGE_VERIFY = 0x10
    MULTI_MESSAGE = 0x20
    FIND_OBJECTS = 0x40
    ENCRYPT = 0x100
    DECRYPT = 0x200
    DIGEST = 0x400
    SIGN = 0x800
    SIGN_RECOVER = 0x1000
    VERIFY = 0x2000
    VERIFY_RECOVER = 0x4000
    GENERATE = 0x8000
    GENERATE_KEY_PAIR = 0x10000
    WRAP = 0x20000
    UNWRAP = 0x40000
    DERIVE = 0x80000
    EC_F_P = 0x100000
    EC_F_2M = 0x200000
    EC_ECPARAMETERS = 0x400000
    EC_OID = 0x800000
    EC_UNCOMPRESS = 0x1000000
    EC_COMPRESS = 0x2000000
    EC_CURVENAME = 0x4000000


class WaitFlag(IntFlag):
    """C_WaitForSlotEvent flags."""

    DONT_BLOCK = 0x1
