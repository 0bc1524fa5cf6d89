"""The dispatcher's one entry-point shape: init checks, exception → CKR mapping, call logging."""

from __future__ import annotations

import ctypes
import re

import pytest
from p11nethsm.log import logger  # the module's own loguru logger (not the global one)

from p11nethsm import dispatch, logflags
from p11nethsm.api import errors as E
from p11nethsm.ck.constants import CKR
from p11nethsm.ck.errors import BY_RV, CKRError, KeyHandleInvalid
from p11nethsm.ck.functions import FUNCTIONS, INDEX
from p11nethsm.ck.structs import CK_INFO, CK_SESSION_INFO, CK_SLOT_INFO

import core_fakes
from core_fakes import BOTH_USERS_NO_PASSWORDS


def _set_handler(monkeypatch, name, fn):
    table = list(dispatch._handlers)
    table[INDEX[name]] = fn
    monkeypatch.setattr(dispatch, "_handlers", table)


@pytest.fixture
def records():
    out = []
    hid = logger.add(lambda m: out.append(m.record), level="TRACE")
    yield out
    logger.remove(hid)


def test_every_forwarded_function_before_initialize_is_not_initialized(call):
    for i, fn in enumerate(FUNCTIONS):
        if not fn.forwarded or fn.name == "C_Initialize":
            continue
        args = [0] * len(fn.args)
        assert dispatch.entry(i, *args) == CKR.CRYPTOKI_NOT_INITIALIZED, fn.name


def test_every_function_after_finalize_is_not_initialized(init):
    call = init()
    assert call("C_Finalize", None) == CKR.OK
    for i, fn in enumerate(FUNCTIONS):
        if fn.forwarded and fn.name != "C_Initialize":
            assert dispatch.entry(i, *([0] * len(fn.args))) == CKR.CRYPTOKI_NOT_INITIALIZED, fn.name


def test_unregistered_forwarded_function_is_not_supported_after_init(init, monkeypatch):
    call = init()
    _set_handler(monkeypatch, "C_SignMessage", dispatch._make_not_supported("C_SignMessage"))
    assert call("C_SignMessage", 1, 0, 0, 0, 0, 0, 0) == CKR.FUNCTION_NOT_SUPPORTED
    assert call("C_GetOperationState", 1, 0, 0) == CKR.FUNCTION_NOT_SUPPORTED


def test_chapters_table_names_the_handlers_each_module_defines():
    """handlers.CHAPTERS tells the dispatcher which module to import at a function's first call."""
    import importlib

    from p11nethsm import handlers

    seen: list[str] = []
    for chapter, names in handlers.CHAPTERS.items():
        module = importlib.import_module(f"p11nethsm.handlers.{chapter}")
        defined = {n for n, v in vars(module).items() if n in INDEX and handlers.REGISTERED.get(n) is v}
        assert defined == set(names), chapter
        seen += names
    assert len(seen) == len(set(seen))
    assert all(FUNCTIONS[INDEX[n]].forwarded for n in seen)


def test_a_handler_is_imported_at_first_call_and_then_called_directly(init):
    call = init()
    assert dispatch.registered("C_GetSlotList") and not dispatch.registered("C_SignMessage")
    assert call("C_GetSlotList", 0, None, ctypes.c_ulong()) == CKR.OK
    from p11nethsm.handlers import slot_token

    assert dispatch._handlers[INDEX["C_GetSlotList"]] is slot_token.C_GetSlotList


def test_ckrerror_maps_to_its_rv(init, monkeypatch):
    call = init()

    def C_DigestKey(hSession, hKey):
        raise KeyHandleInvalid("nope")

    _set_handler(monkeypatch, "C_DigestKey", C_DigestKey)
    assert call("C_DigestKey", 1, 2) == CKR.KEY_HANDLE_INVALID


def test_ckrerror_with_explicit_rv(init, monkeypatch):
    call = init()
    _set_handler(monkeypatch, "C_DigestKey", lambda h, k: (_ for _ in ()).throw(CKRError("x", rv=CKR.KEY_CHANGED)))
    assert call("C_DigestKey", 1, 2) == CKR.KEY_CHANGED


def test_unexpected_exception_is_general_error_with_traceback(init, monkeypatch, records):
    call = init()

    def C_DigestKey(hSession, hKey):
        raise ZeroDivisionError("boom")

    _set_handler(monkeypatch, "C_DigestKey", C_DigestKey)
    assert call("C_DigestKey", 1, 2) == CKR.GENERAL_ERROR
    errs = [r for r in records if r["level"].name == "ERROR"]
    assert errs and errs[0]["exception"] is not None and "C_DigestKey" in errs[0]["message"]


@pytest.mark.parametrize(
    ("exc", "rv"),
    [
        (E.Unauthorized, CKR.USER_NOT_LOGGED_IN),
        (E.Forbidden, CKR.USER_NOT_LOGGED_IN),
        (E.NotFound, CKR.OBJECT_HANDLE_INVALID),
        (E.TooManyRequests, CKR.PIN_LOCKED),
        (E.ServerError, CKR.DEVICE_ERROR),
        (E.TransportError, CKR.DEVICE_ERROR),
        (E.BadRequest, CKR.FUNCTION_FAILED),
    ],
)
def test_nethsm_error_maps_through_ckr_for_and_is_logged(init, monkeypatch, records, exc, rv):
    call = init()

    def C_DigestKey(hSession, hKey):
        raise exc("x", instance="https://h:1/api/v1", method="POST", path="/keys/k/sign", status=exc.status)

    _set_handler(monkeypatch, "C_DigestKey", C_DigestKey)
    assert call("C_DigestKey", 1, 2) == rv
    line = next(r["message"] for r in records if r["level"].name == "WARNING" and r["name"] == "p11nethsm.handlers.failures")
    assert "POST https://h:1/api/v1/keys/k/sign" in line and "C_DigestKey" in line


def test_412_on_open_session_is_device_removed_and_token_goes_absent(init, monkeypatch):
    call = init()
    h = call.open()

    def C_DigestKey(hSession, hKey):
        raise E.PreconditionFailed("locked", instance="https://h", method="POST", path="/keys/k/sign")

    _set_handler(monkeypatch, "C_DigestKey", C_DigestKey)
    assert call("C_DigestKey", h, 2) == CKR.DEVICE_REMOVED
    from p11nethsm.library import get_library

    assert get_library().slot(0).token.state_id == "absent"


def test_412_without_session_is_token_not_present(init, monkeypatch):
    call = init()

    def C_GetSlotInfo(slotID, pInfo):
        raise E.PreconditionFailed("locked", instance="https://h", method="GET", path="/x")

    _set_handler(monkeypatch, "C_GetSlotInfo", C_GetSlotInfo)
    assert call("C_GetSlotInfo", 0, CK_SLOT_INFO()) == CKR.TOKEN_NOT_PRESENT
    from p11nethsm.library import get_library

    assert get_library().slot(0).token.state_id == "absent"
    assert call("C_DigestKey", 999, 1) in (CKR.FUNCTION_NOT_SUPPORTED, CKR.SESSION_HANDLE_INVALID)


def test_412_on_unknown_session_handle_is_token_not_present(init, monkeypatch):
    call = init()
    _set_handler(monkeypatch, "C_DigestKey",
                 lambda h, k: (_ for _ in ()).throw(E.PreconditionFailed("locked")))
    assert call("C_DigestKey", 12345, 2) == CKR.TOKEN_NOT_PRESENT


def test_debug_logs_each_call_with_ckr_name_and_pin_length_only(init, records):
    call = init("log_level: Debug\nlog_file: '-'\n" + BOTH_USERS_NO_PASSWORDS)
    assert logflags.DEBUG
    h = call.open()
    call.login(h, 1, "not-the-passphrase")
    msgs = [r["message"] for r in records if r["name"] == "p11nethsm.dispatch"]
    login = next(m for m in msgs if m.startswith("C_Login("))
    assert "ulPinLen=18" in login and "CKR_PIN_INCORRECT" in login
    assert not any("not-the-passphrase" in r["message"] for r in records)
    assert any(re.match(r"C_OpenSession\(.*\) = CKR_OK \[\d+\.\d ms\]$", m) for m in msgs)


def test_no_call_log_line_when_debug_is_off(init, records):
    call = init("log_level: Info\nlog_file: '-'\n" + BOTH_USERS_NO_PASSWORDS)
    assert not logflags.DEBUG
    call("C_GetInfo", CK_INFO())
    assert not [r for r in records if r["name"] == "p11nethsm.dispatch"]


def test_handler_decorator_rejects_wrong_names_and_arities():
    def C_NotAFunction():
        pass

    with pytest.raises(ValueError):
        dispatch.handler(C_NotAFunction)

    def C_GetInfo(a, b):
        pass

    with pytest.raises(ValueError):
        dispatch.handler(C_GetInfo)

    def C_GetFunctionList(pp):
        pass

    with pytest.raises(ValueError):
        dispatch.handler(C_GetFunctionList)


def test_every_ckr_error_class_is_reachable_by_rv():
    for rv, cls in BY_RV.items():
        assert cls.rv == rv


def test_session_info_answers_from_memory(init):
    """The per-call floor of C_GetSessionInfo is measured by `make bench` (P4); here only what makes
    it cheap is checked: the answer comes from memory, no NetHSM call for any of many calls."""
    call = init()
    h = call.open()
    info = CK_SESSION_INFO()
    addr = ctypes.addressof(info)
    idx = INDEX["C_GetSessionInfo"]
    entry = dispatch.entry
    before = len(core_fakes.cluster("LocalHSM").calls)
    for _ in range(1000):
        assert entry(idx, h, addr) == CKR.OK
    assert info.slotID == 0 and info.flags & 0x4
    assert len(core_fakes.cluster("LocalHSM").calls) == before


def test_fork_child_starts_uninitialized(init):
    import os

    call = init()
    call.open()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            rv = call("C_GetInfo", CK_INFO())
            os.write(w, str(rv).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = os.read(r, 100)
    os.waitpid(pid, 0)
    assert int(data) == CKR.CRYPTOKI_NOT_INITIALIZED
    assert call("C_GetInfo", CK_INFO()) == CKR.OK  # the parent is untouched


_ = core_fakes
