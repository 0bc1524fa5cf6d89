"""Sessions and login (§5.6) through dispatch.entry on the fake NetHSM."""

from __future__ import annotations

import ctypes

import pytest

from p11nethsm.ck.constants import CKR, CKS
from p11nethsm.ck.structs import CK_SESSION_INFO
from p11nethsm.library import get_library
from p11nethsm.values import Role

from core_fakes import BOTH_USERS_NO_PASSWORDS
from core_fakes import cluster

OP_PASSWORD_CONFIGURED = """
slots:
  - label: LocalHSM
    operator: {username: operator, password: opPassphrase}
    administrator: {username: admin}
    instances: [{url: "https://a:8443/api/v1"}]
"""
ADMIN_ONLY_CONFIGURED = """
slots:
  - label: LocalHSM
    administrator: {username: admin, password: Administrator}
    instances: [{url: "https://a:8443/api/v1"}]
"""
CKU_SO, CKU_USER, CKU_CONTEXT = 0, 1, 2


def state(call, h):
    info = CK_SESSION_INFO()
    rv = call("C_GetSessionInfo", h, info)
    assert rv == CKR.OK, CKR(rv).name
    return CKS(info.state)


# --- open / close / info ----------------------------------------------------------------------
def test_open_session_needs_serial_flag(init):
    call = init()
    h = ctypes.c_ulong()
    assert call("C_OpenSession", 0, 0x2, None, None, h) == CKR.SESSION_PARALLEL_NOT_SUPPORTED
    assert call("C_OpenSession", 0, 0x4, None, None, None) == CKR.ARGUMENTS_BAD
    assert call("C_OpenSession", 3, 0x4, None, None, h) == CKR.SLOT_ID_INVALID


def test_open_session_on_absent_token_is_token_not_present(init):
    cluster("LocalHSM").state = "Locked"
    call = init()
    assert call("C_OpenSession", 0, 0x4, None, None, ctypes.c_ulong()) == CKR.TOKEN_NOT_PRESENT


def test_session_info_flags_and_states(init):
    call = init()
    ro, rw = call.open(rw=False), call.open(rw=True)
    info = CK_SESSION_INFO()
    assert call("C_GetSessionInfo", ro, info) == CKR.OK
    assert (info.slotID, info.state, info.flags, info.ulDeviceError) == (0, CKS.RO_PUBLIC_SESSION, 0x4, 0)
    assert call("C_GetSessionInfo", rw, info) == CKR.OK
    assert (info.state, info.flags) == (CKS.RW_PUBLIC_SESSION, 0x6)
    assert call("C_GetSessionInfo", rw, None) == CKR.ARGUMENTS_BAD
    assert call("C_GetSessionInfo", 424242, info) == CKR.SESSION_HANDLE_INVALID


def test_states_follow_the_token_login(init):
    call = init()
    ro, rw = call.open(rw=False), call.open(rw=True)
    assert call.login(rw, CKU_USER, "opPassphrase") == CKR.OK
    assert (state(call, ro), state(call, rw)) == (CKS.RO_USER_FUNCTIONS, CKS.RW_USER_FUNCTIONS)
    assert call("C_Logout", ro) == CKR.OK  # logout from any session of the token
    assert (state(call, ro), state(call, rw)) == (CKS.RO_PUBLIC_SESSION, CKS.RW_PUBLIC_SESSION)
    call("C_CloseSession", ro)
    assert call.login(rw, CKU_SO, "Administrator") == CKR.OK
    assert state(call, rw) == CKS.RW_SO_FUNCTIONS


def test_configured_password_reads_as_user_functions_without_login(init):
    call = init(OP_PASSWORD_CONFIGURED)
    assert state(call, call.open(rw=False)) == CKS.RO_USER_FUNCTIONS
    assert state(call, call.open(rw=True)) == CKS.RW_USER_FUNCTIONS


def test_admin_only_configured_password_reads_as_so_on_rw(init):
    call = init(ADMIN_ONLY_CONFIGURED)
    assert state(call, call.open(rw=True)) == CKS.RW_SO_FUNCTIONS
    assert state(call, call.open(rw=False)) == CKS.RO_PUBLIC_SESSION


def test_close_session_and_close_all(init):
    call = init()
    a, b = call.open(), call.open()
    assert call("C_CloseSession", a) == CKR.OK
    assert call("C_CloseSession", a) == CKR.SESSION_HANDLE_INVALID
    assert call("C_CloseAllSessions", 0) == CKR.OK
    assert call("C_GetSessionInfo", b, CK_SESSION_INFO()) == CKR.SESSION_HANDLE_INVALID
    assert call("C_CloseAllSessions", 9) == CKR.SLOT_ID_INVALID


def test_closing_last_session_logs_out(init):
    call = init()
    a, b = call.open(), call.open()
    assert call.login(a, CKU_USER, "opPassphrase") == CKR.OK
    call("C_CloseSession", a)
    assert state(call, b) == CKS.RW_USER_FUNCTIONS  # still one session open
    call("C_CloseSession", b)
    c = call.open()
    assert state(call, c) == CKS.RW_PUBLIC_SESSION
    assert get_library().slot(0).login.pin(Role.OPERATOR) is None


def test_ro_session_while_so_logged_in_is_refused(init):
    call = init()
    h = call.open(rw=True)
    assert call.login(h, CKU_SO, "Administrator") == CKR.OK
    assert call("C_OpenSession", 0, 0x4, None, None, ctypes.c_ulong()) == CKR.SESSION_READ_WRITE_SO_EXISTS
    assert call.open(rw=True)


def test_session_handles_are_unique_and_stay_invalid_after_reinit(init):
    call = init()
    a = call.open()
    call("C_Finalize", None)
    call("C_Initialize", None)
    b = call.open()
    assert b != a
    assert call("C_GetSessionInfo", a, CK_SESSION_INFO()) == CKR.SESSION_HANDLE_INVALID


# --- login --------------------------------------------------------------------------------------
def test_login_user_verifies_the_pin_against_the_nethsm(init):
    call = init()
    h = call.open()
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.OK
    assert ("GET", "/users/operator", "operator") in cluster("LocalHSM").calls
    creds = get_library().slot(0).credentials(Role.OPERATOR)
    assert (creds.username, creds.password) == ("operator", "opPassphrase")


def test_wrong_pin_is_pin_incorrect_and_changes_nothing(init):
    call = init()
    h = call.open()
    assert call.login(h, CKU_USER, "wrong-passphrase") == CKR.PIN_INCORRECT
    assert state(call, h) == CKS.RW_PUBLIC_SESSION
    slot = get_library().slot(0)
    assert slot.login.state_id == "public" and slot.login.pin(Role.OPERATOR) is None
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.OK  # not poisoned


def test_short_or_long_pin_is_incorrect_without_a_request(init):
    call = init()
    h = call.open()
    n = len(cluster("LocalHSM").calls)
    assert call.login(h, CKU_USER, "1234") == CKR.PIN_INCORRECT
    assert call.login(h, CKU_USER, "x" * 201) == CKR.PIN_INCORRECT
    assert call.login(h, CKU_USER, b"\xff" * 12) == CKR.PIN_INCORRECT
    assert len(cluster("LocalHSM").calls) == n


def test_throttled_login_is_pin_locked(init):
    call = init()
    h = call.open()
    cluster("LocalHSM").throttled = True
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.PIN_LOCKED
    assert state(call, h) == CKS.RW_PUBLIC_SESSION


def test_login_twice_returns_user_already_logged_in(init):
    call = init()
    a, b = call.open(), call.open()
    assert call.login(a, CKU_USER, "opPassphrase") == CKR.OK
    n = len(cluster("LocalHSM").calls)
    assert call.login(b, CKU_USER, "opPassphrase") == CKR.USER_ALREADY_LOGGED_IN
    assert len(cluster("LocalHSM").calls) == n  # checked before any request


def test_so_login_while_user_logged_in_is_another_already_logged_in(init):
    call = init()
    h = call.open()
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.OK
    assert call.login(h, CKU_SO, "Administrator") == CKR.USER_ANOTHER_ALREADY_LOGGED_IN
    assert call("C_Logout", h) == CKR.OK
    assert call.login(h, CKU_SO, "Administrator") == CKR.OK
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.USER_ANOTHER_ALREADY_LOGGED_IN


def test_so_login_with_a_read_only_session_open_is_refused(init):
    call = init()
    h = call.open(rw=True)
    call.open(rw=False)
    assert call.login(h, CKU_SO, "Administrator") == CKR.SESSION_READ_ONLY_EXISTS


def test_user_type_not_configured_is_user_type_invalid(init):
    call = init(ADMIN_ONLY_CONFIGURED)
    h = call.open()
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.USER_TYPE_INVALID
    assert call.login(h, CKU_CONTEXT, "opPassphrase") == CKR.USER_TYPE_INVALID
    assert call.login(h, 77, "opPassphrase") == CKR.USER_TYPE_INVALID


def test_login_with_null_pin_is_arguments_bad(init):
    call = init()
    h = call.open()
    assert call("C_Login", h, CKU_USER, None, 12) == CKR.ARGUMENTS_BAD
    assert call("C_Login", 9999, CKU_USER, b"opPassphrase", 12) == CKR.SESSION_HANDLE_INVALID


def test_logout_without_login_is_user_not_logged_in(init):
    call = init()
    h = call.open()
    assert call("C_Logout", h) == CKR.USER_NOT_LOGGED_IN


def test_logout_drops_the_pin(init):
    call = init()
    h = call.open()
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.OK
    assert call("C_Logout", h) == CKR.OK
    from p11nethsm.ck.errors import UserNotLoggedIn

    with pytest.raises(UserNotLoggedIn, match="operator 'operator'.*CKU_USER"):
        get_library().slot(0).credentials(Role.OPERATOR)


def test_configured_password_login_with_a_pin_verifies_and_overrides(init):
    call = init(OP_PASSWORD_CONFIGURED)
    h = call.open()
    slot = get_library().slot(0)
    assert slot.credentials().password == "opPassphrase"  # usable without C_Login
    cluster("LocalHSM").users["operator"] = ("newPassphrase", "Operator")
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.PIN_INCORRECT
    assert call.login(h, CKU_USER, "newPassphrase") == CKR.OK
    assert slot.credentials().password == "newPassphrase"
    call("C_Logout", h)
    assert slot.credentials().password == "opPassphrase"


def test_empty_pin_logs_in_with_the_configured_password(init):
    call = init(OP_PASSWORD_CONFIGURED)
    h = call.open()
    assert call.login(h, CKU_USER, b"") == CKR.OK
    assert state(call, h) == CKS.RW_USER_FUNCTIONS
    assert call.login(h, CKU_SO, b"") == CKR.USER_ANOTHER_ALREADY_LOGGED_IN
    call("C_Logout", h)
    assert call.login(h, CKU_SO, b"") == CKR.PIN_INCORRECT  # no admin password configured


def test_412_during_login_is_device_removed(init):
    call = init()
    h = call.open()
    cluster("LocalHSM").state = "Locked"
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.DEVICE_REMOVED
    assert get_library().slot(0).token.state_id == "absent"
    assert get_library().slot(0).login.state_id == "public"


# --- credentials (seed rule) ----------------------------------------------------------------------
def test_credentials_prefer_the_operator_whatever_user_logged_in(init):
    call = init("""
slots:
  - label: LocalHSM
    operator: {username: operator, password: opPassphrase}
    administrator: {username: admin}
    instances: [{url: "https://a:8443/api/v1"}]
""")
    h = call.open()
    assert call.login(h, CKU_SO, "Administrator") == CKR.OK
    slot = get_library().slot(0)
    assert slot.credentials().username == "operator"
    assert slot.credentials(Role.ADMINISTRATOR).username == "admin"
    assert slot.credentials(Role.OPERATOR).password == "opPassphrase"


def test_credentials_fall_back_to_the_admin_for_any_user_calls(init):
    call = init()
    h = call.open()
    assert call.login(h, CKU_SO, "Administrator") == CKR.OK
    slot = get_library().slot(0)
    assert slot.credentials().username == "admin"
    from p11nethsm.ck.errors import UserNotLoggedIn

    with pytest.raises(UserNotLoggedIn, match="operator"):
        slot.credentials(Role.OPERATOR)


def test_credentials_for_an_unconfigured_user_name_it(init):
    init(ADMIN_ONLY_CONFIGURED)
    from p11nethsm.ck.errors import UserNotLoggedIn

    with pytest.raises(UserNotLoggedIn, match="operator, which is not configured"):
        get_library().slot(0).credentials(Role.OPERATOR)


def test_can_see_private(init):
    call = init()
    h = call.open()
    s = get_library().session(h)
    assert not s.can_see_private()
    call.login(h, CKU_USER, "opPassphrase")
    assert s.can_see_private()


def test_require_rw(init):
    from p11nethsm.ck.errors import SessionReadOnly

    call = init()
    with pytest.raises(SessionReadOnly):
        get_library().session(call.open(rw=False)).require_rw()
    get_library().session(call.open(rw=True)).require_rw()


# --- C_SetPIN -----------------------------------------------------------------------------------
def test_set_pin_changes_the_passphrase_of_the_logged_in_user(init):
    call = init()
    h = call.open()
    assert call.login(h, CKU_USER, "opPassphrase") == CKR.OK
    old, new = b"opPassphrase", b"brandNewPassphrase"
    assert call("C_SetPIN", h, old, len(old), new, len(new)) == CKR.OK
    assert cluster("LocalHSM").users["operator"][0] == "brandNewPassphrase"
    assert get_library().slot(0).credentials(Role.OPERATOR).password == "brandNewPassphrase"


def test_set_pin_errors(init):
    call = init()
    rw, ro = call.open(rw=True), call.open(rw=False)
    good, short, wrong = b"opPassphrase", b"short", b"wrongPassphrase"
    assert call("C_SetPIN", ro, good, len(good), good, len(good)) == CKR.SESSION_READ_ONLY
    assert call("C_SetPIN", rw, good, len(good), short, len(short)) == CKR.PIN_LEN_RANGE
    assert call("C_SetPIN", rw, wrong, len(wrong), good, len(good)) == CKR.PIN_INCORRECT
    assert call("C_SetPIN", rw, None, 0, good, len(good)) == CKR.ARGUMENTS_BAD
    bad_utf8 = b"\xff" * 12
    assert call("C_SetPIN", rw, good, len(good), bad_utf8, len(bad_utf8)) == CKR.PIN_INVALID
    assert cluster("LocalHSM").users["operator"][0] == "opPassphrase"


def test_set_pin_as_so_changes_the_admin(init):
    call = init()
    h = call.open(rw=True)
    assert call.login(h, CKU_SO, "Administrator") == CKR.OK
    old, new = b"Administrator", b"Administrator2"
    assert call("C_SetPIN", h, old, len(old), new, len(new)) == CKR.OK
    assert cluster("LocalHSM").users["admin"][0] == "Administrator2"


_ = BOTH_USERS_NO_PASSWORDS
