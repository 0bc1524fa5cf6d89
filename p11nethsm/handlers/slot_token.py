"""Slot and token management (PKCS#11 3.0 §5.5).

- One slot per configured slot (ids 0..n-1). The token is present iff the slot's cluster answers
  `GET /health/state` with "Operational" (p11nethsm.state.token; answers are reused for 1 s).
- CK_SLOT_INFO / CK_TOKEN_INFO come from `GET /info` (vendor, product; cached per slot once read)
  and the config (label, description, users).
- Serial number: the NetHSM `deviceId` from `GET /system/info` when the administrator's password
  is in the config (that call needs an administrator); otherwise a stable value derived from the
  slot: the first 16 upper-case hex digits of SHA-256("p11nethsm-serial\\n" + label + "\\n" +
  the sorted instance URLs, one per line). It does not change when a PIN is given to C_Login.
- CKF_LOGIN_REQUIRED iff the slot's default user (operator, else administrator) has no password in
  the config. PIN lengths are the NetHSM passphrase limits, 10..200 bytes.
- C_InitToken / C_InitPIN: CKR_FUNCTION_NOT_SUPPORTED (a NetHSM is provisioned over its REST API).
"""

from __future__ import annotations

import hashlib

from p11nethsm.log import logger

from p11nethsm.api.client import Credentials
from p11nethsm.api.errors import NetHSMError
from p11nethsm.ck.cdata import blank_padded, output_ulongs, write_struct, write_ulong
from p11nethsm.ck.constants import CK_EFFECTIVELY_INFINITE, CK_UNAVAILABLE_INFORMATION, SlotFlag, TokenFlag, WaitFlag
from p11nethsm.ck.errors import (
    ArgumentsBad,
    CryptokiNotInitialized,
    FunctionNotSupported,
    NoEvent,
    TokenNotPresent,
)
from p11nethsm.ck.structs import CK_MECHANISM_INFO, CK_SLOT_INFO, CK_TOKEN_INFO
from p11nethsm.handlers import handler
from p11nethsm.handlers import wiring  # noqa: F401  (a slot's client and store)
from p11nethsm.library import Slot, get_library
from p11nethsm.mechanisms.registry import mechanism_info, mechanism_list
from p11nethsm.values import Role

MIN_PIN_LEN = 10
MAX_PIN_LEN = 200
DEFAULT_VENDOR = "Nitrokey GmbH"
DEFAULT_PRODUCT = "NetHSM"
WAIT_POLL_SECONDS = 1.0


def derived_serial(slot: Slot) -> str:
    text = "p11nethsm-serial\n" + slot.config.label + "\n" + "\n".join(sorted(i.url for i in slot.config.instances))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16].upper()


def _info(slot: Slot) -> dict:
    """GET /info, cached once it answered (vendor and product do not change)."""
    info = slot.cache.get("info")
    if info is None:
        try:
            info = slot.api.info()
        except NetHSMError as exc:
            logger.debug("{}: /info failed: {}", slot.name, exc.describe())
            return {}
        slot.cache["info"] = info
    return info


def _system_info(slot: Slot) -> dict:
    """GET /system/info with the configured administrator password, else {} (cached)."""
    if "system_info" in slot.cache:
        return slot.cache["system_info"]
    admin = slot.user(Role.ADMINISTRATOR)
    if admin is None or not admin.has_password:
        slot.cache["system_info"] = {}
        return {}
    try:
        info = slot.api.system_info(Credentials(admin.username, admin.password))
    except NetHSMError as exc:
        logger.warning("{}: /system/info failed, serial number derived from the config: {}",
                       slot.name, exc.describe())
        return {}
    device_id = info.get("deviceId")
    if not isinstance(device_id, str) or not device_id:
        logger.warning("{}: /system/info has no usable deviceId ({}), serial number derived from the config",
                       slot.name, type(device_id).__name__)
    slot.cache["system_info"] = info
    return info


def _version(text) -> tuple[int, int]:
    if not isinstance(text, str):
        return 0, 0
    parts = text.split(".")
    try:
        major = int(parts[0])
        minor = int("".join(c for c in parts[1] if c.isdigit()) or 0) if len(parts) > 1 else 0
    except ValueError:
        return 0, 0
    return major & 0xFF, minor & 0xFF


def serial_number(slot: Slot) -> str:
    device_id = _system_info(slot).get("deviceId")
    if isinstance(device_id, str) and device_id:
        return device_id[:16]
    return derived_serial(slot)


@handler
def C_GetSlotList(tokenPresent, pSlotList, pulCount):
    if not pulCount:
        raise ArgumentsBad("pulCount is NULL")
    lib = get_library()
    if tokenPresent:
        ids = [s.slot_id for s in lib.slots if s.token_present()]
    else:
        ids = [s.slot_id for s in lib.slots]
    output_ulongs(pSlotList, pulCount, ids)


@handler
def C_GetSlotInfo(slotID, pInfo):
    slot = get_library().slot(slotID)
    if not pInfo:
        raise ArgumentsBad("pInfo is NULL")
    present = slot.token_present()
    info = _info(slot) if present else {}
    out = CK_SLOT_INFO()
    out.slotDescription[:] = blank_padded(slot.config.description or slot.config.label, 64)
    out.manufacturerID[:] = blank_padded(str(info.get("vendor") or DEFAULT_VENDOR), 32)
    out.flags = SlotFlag.REMOVABLE_DEVICE | SlotFlag.HW_SLOT | (SlotFlag.TOKEN_PRESENT if present else 0)
    sysinfo = slot.cache.get("system_info") or {}
    out.hardwareVersion.major, out.hardwareVersion.minor = _version(sysinfo.get("hardwareVersion"))
    out.firmwareVersion.major, out.firmwareVersion.minor = _version(sysinfo.get("softwareVersion"))
    write_struct(pInfo, out)


@handler
def C_GetTokenInfo(slotID, pInfo):
    lib = get_library()
    slot = lib.slot(slotID)
    if not pInfo:
        raise ArgumentsBad("pInfo is NULL")
    if not slot.token_present():
        raise TokenNotPresent(f"{slot.name}: cluster state {slot.token.last_state}")
    info = _info(slot)
    sysinfo = _system_info(slot)
    sessions = slot.sessions()
    out = CK_TOKEN_INFO()
    out.label[:] = blank_padded(slot.config.label, 32)
    out.manufacturerID[:] = blank_padded(str(info.get("vendor") or DEFAULT_VENDOR), 32)
    out.model[:] = blank_padded(str(info.get("product") or DEFAULT_PRODUCT), 16)
    out.serialNumber[:] = blank_padded(serial_number(slot), 16)
    flags = TokenFlag.RNG | TokenFlag.TOKEN_INITIALIZED | TokenFlag.USER_PIN_INITIALIZED
    if not slot.default_password_configured():
        flags |= TokenFlag.LOGIN_REQUIRED
    out.flags = flags
    out.ulMaxSessionCount = CK_EFFECTIVELY_INFINITE
    out.ulSessionCount = len(sessions)
    out.ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE
    out.ulRwSessionCount = sum(1 for s in sessions if s.rw)
    out.ulMaxPinLen = MAX_PIN_LEN
    out.ulMinPinLen = MIN_PIN_LEN
    out.ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION
    out.ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION
    out.ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION
    out.ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION
    out.hardwareVersion.major, out.hardwareVersion.minor = _version(sysinfo.get("hardwareVersion"))
    out.firmwareVersion.major, out.firmwareVersion.minor = _version(sysinfo.get("softwareVersion"))
    out.utcTime[:] = b" " * 16  # no CKF_CLOCK_ON_TOKEN
    write_struct(pInfo, out)


@handler
def C_GetMechanismList(slotID, pMechanismList, pulCount):
    get_library().slot(slotID)
    if not pulCount:
        raise ArgumentsBad("pulCount is NULL")
    output_ulongs(pMechanismList, pulCount, [int(m) for m in mechanism_list()])


@handler
def C_GetMechanismInfo(slotID, type, pInfo):  # noqa: A002  (the spec's argument name)
    get_library().slot(slotID)
    if not pInfo:
        raise ArgumentsBad("pInfo is NULL")
    info = mechanism_info(type)
    if hasattr(info, "min_key"):  # registry.MechInfo
        min_size, max_size, flags = info.min_key, info.max_key, info.flags
    else:  # the (min, max, flags) tuple of the original contract
        min_size, max_size, flags = info
    out = CK_MECHANISM_INFO(int(min_size), int(max_size), int(flags))
    write_struct(pInfo, out)


@handler
def C_InitToken(slotID, pPin, ulPinLen, pLabel):
    get_library().slot(slotID)
    raise FunctionNotSupported("a NetHSM is provisioned over its REST API, not with C_InitToken")


@handler
def C_InitPIN(hSession, pPin, ulPinLen):
    get_library().session(hSession)
    raise FunctionNotSupported("NetHSM users are created over the REST API, not with C_InitPIN")


@handler
def C_WaitForSlotEvent(flags, pSlot, pReserved):
    """Slot events are token insertions/removals (the cluster becoming Operational or not).

    CKF_DONT_BLOCK: poll every slot once; CKR_NO_EVENT if nothing changed. Blocking: poll every
    WAIT_POLL_SECONDS until an event, and end with CKR_CRYPTOKI_NOT_INITIALIZED as soon as
    C_Finalize is called by another thread.
    """
    if pReserved:
        raise ArgumentsBad("pReserved must be NULL")
    if not pSlot:
        raise ArgumentsBad("pSlot is NULL")
    lib = get_library()
    dont_block = bool(WaitFlag(flags) & WaitFlag.DONT_BLOCK)
    while True:
        for slot in lib.slots:
            if slot.token.take_event():
                write_ulong(pSlot, slot.slot_id)
                return
        for slot in lib.slots:
            if lib.finalized.is_set():
                raise CryptokiNotInitialized("C_Finalize was called")
            try:
                slot.token.poll()
            except Exception:
                if lib.finalized.is_set():
                    raise CryptokiNotInitialized("C_Finalize was called") from None
                raise
            if slot.token.take_event():
                write_ulong(pSlot, slot.slot_id)
                return
        if dont_block:
            raise NoEvent()
        if lib.finalized.wait(WAIT_POLL_SECONDS):
            raise CryptokiNotInitialized("C_Finalize was called")
