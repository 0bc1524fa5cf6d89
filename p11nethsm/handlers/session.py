"""Session management (PKCS#11 3.0 §5.6): open/close, session info, login/logout, C_SetPIN.

Login is per token and shared by every session of the application (§6.7). CKU_USER is the NetHSM
operator, CKU_SO the administrator; a user type whose user is not in the slot's config gives
CKR_USER_TYPE_INVALID, as does CKU_CONTEXT_SPECIFIC (no key needs CKA_ALWAYS_AUTHENTICATE).

C_Login checks the PIN against the NetHSM (`GET /users/{username}` with Basic auth) before the
token's login state changes: 401 → CKR_PIN_INCORRECT, 429 → CKR_PIN_LOCKED, and the state is left
as it was. A NetHSM passphrase is 10..200 bytes of UTF-8, so a PIN outside that range, or not
UTF-8, can never be right: CKR_PIN_INCORRECT at once, without a request (which would also count
against the NetHSM's failed-login throttle).

With the user's password in the config, sessions work without C_Login (the session state already
reads USER functions). C_Login is still allowed (`pkcs11-tool -l -p PIN` works): the PIN is
verified like above and is used instead of the configured password until C_Logout or the last
session closes. An empty PIN (ulPinLen 0) logs in with the configured password (verified too), for
applications that always call C_Login; without a configured password it is CKR_PIN_INCORRECT.
"""

from __future__ import annotations

import ctypes

from p11nethsm.log import logger

from p11nethsm.api.client import Credentials
from p11nethsm.api.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from p11nethsm.ck.cdata import read_bytes, write_ulong
from p11nethsm.ck.constants import CKU, SessionFlag
from p11nethsm.ck.errors import (
    ArgumentsBad,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    SessionParallelNotSupported,
    SessionReadOnly,
    SessionReadWriteSoExists,
    TokenNotPresent,
    UserNotLoggedIn,
    UserTypeInvalid,
)
from p11nethsm.ck.structs import CK_SESSION_INFO
from p11nethsm.handlers import handler
from p11nethsm.handlers import wiring  # noqa: F401  (a slot's client and store)
from p11nethsm.library import Slot, get_library
from p11nethsm.sessions import Session
from p11nethsm.values import Role

MIN_PIN_LEN = 10
MAX_PIN_LEN = 200

_SERIAL = int(SessionFlag.SERIAL_SESSION)
_RW = int(SessionFlag.RW_SESSION)
_ROLE_OF_USER_TYPE = {int(CKU.USER): Role.OPERATOR, int(CKU.SO): Role.ADMINISTRATOR}


@handler
def C_OpenSession(slotID, flags, pApplication, Notify, phSession):
    lib = get_library()
    slot = lib.slot(slotID)
    if not phSession:
        raise ArgumentsBad("phSession is NULL")
    if not flags & _SERIAL:
        raise SessionParallelNotSupported("CKF_SERIAL_SESSION must be set")
    if not slot.token_present():
        raise TokenNotPresent(f"{slot.name}: cluster state {slot.token.last_state}")
    rw = bool(flags & _RW)
    with slot.login.lock:
        if not rw and slot.login.role is Role.ADMINISTRATOR:
            raise SessionReadWriteSoExists("the SO is logged in: only R/W sessions can be opened")
        session = lib.open_session(slot, rw=rw, flags=flags)
    write_ulong(phSession, session.handle)


@handler
def C_CloseSession(hSession):
    get_library().close_session(hSession)


@handler
def C_CloseAllSessions(slotID):
    lib = get_library()
    lib.close_all_sessions(lib.slot(slotID))


# CK_SESSION_INFO is four CK_ULONGs (slotID, state, flags, ulDeviceError); one slice assignment
# is the cheapest write from Python (this is the per-call floor benchmark).
_SESSION_INFO_WORDS = (ctypes.c_ulong * 4).from_address
assert ctypes.sizeof(CK_SESSION_INFO) == ctypes.sizeof(ctypes.c_ulong * 4)


@handler
def C_GetSessionInfo(hSession, pInfo):
    session = get_library().session(hSession)
    if not pInfo:
        raise ArgumentsBad("pInfo is NULL")
    rw = session.rw
    _SESSION_INFO_WORDS(pInfo)[:] = (session.slot.slot_id, session.state, _SERIAL | _RW if rw else _SERIAL, 0)


def _role_for(slot: Slot, user_type: int) -> Role:
    role = _ROLE_OF_USER_TYPE.get(user_type)
    if role is None:
        raise UserTypeInvalid(f"user type {user_type} is not supported (CKU_USER, CKU_SO)")
    if slot.user(role) is None:
        raise UserTypeInvalid(f"{slot.name}: no {role.value} is configured for this slot")
    return role


def _decode_pin(raw: bytes, *, new: bool) -> str:
    """A NetHSM passphrase: UTF-8, 10..200 bytes. Old/login PINs that cannot be one are simply
    incorrect; a new PIN outside the range is CKR_PIN_LEN_RANGE, not UTF-8 CKR_PIN_INVALID."""
    if not MIN_PIN_LEN <= len(raw) <= MAX_PIN_LEN:
        if new:
            raise PinLenRange(f"a NetHSM passphrase has {MIN_PIN_LEN}..{MAX_PIN_LEN} bytes, got {len(raw)}")
        raise PinIncorrect(f"a NetHSM passphrase has {MIN_PIN_LEN}..{MAX_PIN_LEN} bytes, got {len(raw)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if new:
            raise PinInvalid("the PIN is not valid UTF-8") from None
        raise PinIncorrect("the PIN is not valid UTF-8") from None


def _verify(slot: Slot, role: Role, pin: str) -> None:
    """GET /users/{username} with the PIN; raise the PIN's CKR on 401/429."""
    username = slot.user(role).username
    try:
        answer = slot.api.get_user(Credentials(username, pin), username)
    except Unauthorized:
        raise PinIncorrect(f"{slot.name}: the NetHSM rejected the passphrase of '{username}'") from None
    except TooManyRequests:
        raise PinLocked(f"{slot.name}: the NetHSM throttles logins of '{username}' (too many failures)") from None
    except Forbidden as exc:  # authenticated (401 would come first), only not allowed to read it
        logger.warning("{}: '{}' authenticated but may not read its user ({})", slot.name, username, exc.describe())
        return
    role_name = answer.get("role") if isinstance(answer, dict) else None
    expected = "Operator" if role is Role.OPERATOR else "Administrator"
    if role_name is not None and role_name != expected:
        logger.warning("{}: the {} user '{}' has the NetHSM role {}, expected {}", slot.name, role.value,
                       username, role_name, expected)


@handler
def C_Login(hSession, userType, pPin, ulPinLen):
    session = get_library().session(hSession)
    slot = session.slot
    role = _role_for(slot, userType)
    if not pPin:
        raise ArgumentsBad("pPin is NULL (no protected authentication path)")
    raw = read_bytes(pPin, ulPinLen)
    with slot.login.lock:
        ro_sessions = sum(1 for s in slot.sessions() if not s.rw)
        slot.login.precheck(role, ro_sessions=ro_sessions)
        if not raw:
            user = slot.user(role)
            if not user.has_password:
                raise PinIncorrect(f"{slot.name}: empty PIN and no password configured for '{user.username}'")
            pin = user.password
        else:
            pin = _decode_pin(raw, new=False)
        _verify(slot, role, pin)  # network I/O before the transition: a failure changes nothing
        slot.login.login(role, pin, session=hSession, ro_sessions=ro_sessions)
    logger.info("{}: {} logged in (session {})", slot.name, role.value, hSession)


@handler
def C_Logout(hSession):
    session = get_library().session(hSession)
    slot = session.slot
    slot.login.logout(session=hSession)
    logger.info("{}: logged out (session {})", slot.name, hSession)


def _setpin_role(session: Session) -> Role:
    """§5.6 C_SetPIN: the logged-in user's PIN, else the normal user's (here: the session's
    effective user, which is the administrator on an administrator-only slot)."""
    slot = session.slot
    if slot.login.role is not None:
        return slot.login.role
    if slot.user(Role.OPERATOR) is not None:
        return Role.OPERATOR
    return Role.ADMINISTRATOR


@handler
def C_SetPIN(hSession, pOldPin, ulOldLen, pNewPin, ulNewLen):
    session = get_library().session(hSession)
    if not session.rw:
        raise SessionReadOnly("C_SetPIN needs a R/W session")
    if not pOldPin or not pNewPin:
        raise ArgumentsBad("pOldPin or pNewPin is NULL")
    slot = session.slot
    role = _setpin_role(session)
    user = slot.user(role)
    if user is None:
        raise UserNotLoggedIn(f"{slot.name}: no {role.value} is configured for this slot")
    new = _decode_pin(read_bytes(pNewPin, ulNewLen), new=True)
    old = _decode_pin(read_bytes(pOldPin, ulOldLen), new=False)
    try:
        slot.api.set_passphrase(Credentials(user.username, old), user.username, new)
    except Unauthorized:
        raise PinIncorrect(f"{slot.name}: the NetHSM rejected the old passphrase of '{user.username}'") from None
    except TooManyRequests:
        raise PinLocked(f"{slot.name}: the NetHSM throttles logins of '{user.username}'") from None
    except BadRequest as exc:
        raise PinInvalid(f"{slot.name}: the NetHSM refused the new passphrase ({exc.describe()})") from None
    slot.login.replace_pin(role, new)
    logger.info("{}: passphrase of the {} '{}' changed (session {})", slot.name, role.value, user.username, hSession)
    if user.has_password and user.password != new:
        logger.warning("{}: the configured password of '{}' is now outdated; update {}", slot.name,
                       user.username, slot.config.source or "the configuration")

