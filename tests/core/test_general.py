"""C_Initialize / C_Finalize / C_GetInfo per spec §5.4."""

from __future__ import annotations

import ctypes
import resource
import subprocess
import sys
import time

import pytest

from p11nethsm import library
from p11nethsm.ck.constants import CKF, CKR
from p11nethsm.ck.structs import CK_C_INITIALIZE_ARGS, CK_INFO

from core_fakes import BOTH_USERS_NO_PASSWORDS

CB = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)
_cb = CB(lambda p: 0)
FN = ctypes.cast(_cb, ctypes.c_void_p).value


@pytest.fixture
def configured(write_config, monkeypatch):
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(BOTH_USERS_NO_PASSWORDS))


def _args(n_callbacks=0, flags=0, reserved=0):
    a = CK_C_INITIALIZE_ARGS()
    for i, name in enumerate(("CreateMutex", "DestroyMutex", "LockMutex", "UnlockMutex")):
        if i < n_callbacks:
            setattr(a, name, FN)
    a.flags = flags
    a.pReserved = reserved
    return a


def test_initialize_with_null_args(call, configured):
    assert call("C_Initialize", None) == CKR.OK


def test_initialize_twice_is_already_initialized(call, configured):
    assert call("C_Initialize", None) == CKR.OK
    assert call("C_Initialize", None) == CKR.CRYPTOKI_ALREADY_INITIALIZED


def test_initialize_after_finalize_works_again(call, configured):
    for _ in range(3):
        assert call("C_Initialize", None) == CKR.OK
        assert call("C_Finalize", None) == CKR.OK


@pytest.mark.parametrize("n", [1, 2, 3])
def test_some_mutex_callbacks_is_arguments_bad(call, configured, n):
    assert call("C_Initialize", _args(n, CKF.OS_LOCKING_OK)) == CKR.ARGUMENTS_BAD
    assert library.current() is None


def test_callbacks_without_os_locking_is_cant_lock(call, configured):
    assert call("C_Initialize", _args(4)) == CKR.CANT_LOCK


def test_callbacks_with_os_locking_ok_are_accepted(call, configured):
    assert call("C_Initialize", _args(4, CKF.OS_LOCKING_OK)) == CKR.OK


def test_os_locking_without_callbacks(call, configured):
    assert call("C_Initialize", _args(0, CKF.OS_LOCKING_OK)) == CKR.OK
    assert library.get_library().threads_allowed


def test_reserved_not_null_is_arguments_bad(call, configured):
    dummy = ctypes.c_ulong()
    assert call("C_Initialize", _args(reserved=ctypes.addressof(dummy))) == CKR.ARGUMENTS_BAD


def test_cant_create_threads_is_honoured(call, configured):
    assert call("C_Initialize", _args(flags=CKF.LIBRARY_CANT_CREATE_OS_THREADS)) == CKR.OK
    lib = library.get_library()
    assert not lib.threads_allowed
    assert lib.slot(0).api.threads is False


def test_disable_threads_config_is_honoured(call, write_config, monkeypatch):
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config("disable_threads: true\n" + BOTH_USERS_NO_PASSWORDS))
    assert call("C_Initialize", None) == CKR.OK
    assert not library.get_library().threads_allowed


def test_initialize_does_no_network_io(call, configured):
    assert call("C_Initialize", None) == CKR.OK
    assert library.get_library().slot(0)._api is None  # the api is built on first use only


def test_finalize_reserved_not_null_is_arguments_bad(call, configured):
    assert call("C_Initialize", None) == CKR.OK
    dummy = ctypes.c_ulong()
    assert call("C_Finalize", dummy) == CKR.ARGUMENTS_BAD
    assert call("C_Finalize", None) == CKR.OK


def test_finalize_twice_is_not_initialized(call, configured):
    assert call("C_Initialize", None) == CKR.OK
    assert call("C_Finalize", None) == CKR.OK
    assert call("C_Finalize", None) == CKR.CRYPTOKI_NOT_INITIALIZED


def test_finalize_closes_sessions_and_apis(init):
    call = init()
    h = call.open()
    api = library.get_library().slot(0).api
    assert call("C_Finalize", None) == CKR.OK
    assert api.closed
    assert call("C_Initialize", None) == CKR.OK
    from p11nethsm.ck.structs import CK_SESSION_INFO

    assert call("C_GetSessionInfo", h, CK_SESSION_INFO()) == CKR.SESSION_HANDLE_INVALID


def test_missing_config_fails_with_a_clear_log_line(call, monkeypatch, capfd):
    from p11nethsm.config import loader

    monkeypatch.setattr(loader, "search_paths", lambda env=None: ["/nonexistent/p11nethsm.conf"])
    assert call("C_Initialize", None) == CKR.FUNCTION_FAILED
    err = capfd.readouterr().err
    assert "no configuration file found" in err and "/nonexistent/p11nethsm.conf" in err
    assert library.current() is None


def test_malformed_config_logs_file_key_problem_to_stderr(call, write_config, monkeypatch, capfd):
    path = write_config("log_level: Loud\n" + BOTH_USERS_NO_PASSWORDS)
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", path)
    assert call("C_Initialize", None) == CKR.FUNCTION_FAILED
    captured = capfd.readouterr()
    assert path in captured.err and "log_level" in captured.err and "Trace, Debug" in captured.err
    assert captured.out == ""


def test_no_user_configured_refuses_to_start(call, write_config, monkeypatch, capfd):
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE",
                       write_config("slots: [{label: A, instances: [{url: 'https://a'}]}]"))
    assert call("C_Initialize", None) == CKR.FUNCTION_FAILED
    assert "no user configured" in capfd.readouterr().err


def test_unknown_key_is_logged_with_closest_match(call, write_config, monkeypatch, capfd):
    path = write_config("log_file: '-'\nlog_levle: Debug\n" + BOTH_USERS_NO_PASSWORDS)
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", path)
    assert call("C_Initialize", None) == CKR.OK
    err = capfd.readouterr().err
    assert f"{path}: unknown key 'log_levle' ignored; did you mean 'log_level'?" in err


def test_missing_or_broken_handler_modules_are_reported_at_first_use(call, write_config, monkeypatch, capfd,
                                                                     tmp_path):
    """A chapter module is imported at the first call of one of its functions. Missing, or failing
    to import: its functions answer CKR_FUNCTION_NOT_SUPPORTED, the problem is logged once (with the
    traceback for a broken one), and C_Initialize is not affected."""
    from p11nethsm import dispatch, handlers
    from p11nethsm.ck.functions import INDEX

    (tmp_path / "x_broken.py").write_text("raise RuntimeError('x_broken is broken')\n")
    monkeypatch.setattr(handlers, "__path__", [*handlers.__path__, str(tmp_path)])
    monkeypatch.setattr(handlers, "PROBLEMS", [])
    monkeypatch.setattr(handlers, "_imported", dict(handlers._imported))
    monkeypatch.setitem(handlers.CHAPTERS, "x_missing", ("C_SignMessage",))
    monkeypatch.setitem(handlers.CHAPTERS, "x_broken", ("C_VerifyMessage", "C_MessageVerifyInit"))
    table = list(dispatch._handlers)
    for chapter in ("x_missing", "x_broken"):
        for name in handlers.CHAPTERS[chapter]:
            table[INDEX[name]] = dispatch._make_loader(name, chapter)
    monkeypatch.setattr(dispatch, "_handlers", table)
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config("log_file: '-'\n" + BOTH_USERS_NO_PASSWORDS))
    assert call("C_Initialize", None) == CKR.OK
    capfd.readouterr()

    assert call("C_SignMessage", 1, 0, 0, 0, 0, 0, 0) == CKR.FUNCTION_NOT_SUPPORTED
    err = capfd.readouterr().err
    assert "handler module p11nethsm.handlers.x_missing is not available" in err
    assert call("C_VerifyMessage", 1, 0, 0, 0, 0, 0, 0) == CKR.FUNCTION_NOT_SUPPORTED
    err = capfd.readouterr().err
    assert "handler module p11nethsm.handlers.x_broken failed to import" in err
    assert "RuntimeError: x_broken is broken" in err
    assert call("C_MessageVerifyInit", 1, 0, 0) == CKR.FUNCTION_NOT_SUPPORTED
    assert call("C_SignMessage", 1, 0, 0, 0, 0, 0, 0) == CKR.FUNCTION_NOT_SUPPORTED
    assert "handler module" not in capfd.readouterr().err  # reported once
    assert [level for level, _ in handlers.PROBLEMS] == ["warning", "error"]


def test_get_info(init):
    call = init()
    info = CK_INFO()
    assert call("C_GetInfo", info) == CKR.OK
    assert (info.cryptokiVersion.major, info.cryptokiVersion.minor) == (3, 0)
    assert bytes(info.manufacturerID).rstrip(b" ") == b"Nitrokey"
    assert bytes(info.libraryDescription).startswith(b"p11nethsm")
    assert info.flags == 0
    import p11nethsm

    major, minor = (int(x) for x in p11nethsm.__version__.split(".")[:2])
    assert (info.libraryVersion.major, info.libraryVersion.minor) == (major, minor)
    assert call("C_GetInfo", None) == CKR.ARGUMENTS_BAD


def test_function_status_and_cancel_are_not_parallel(init):
    call = init()
    h = call.open()
    assert call("C_GetFunctionStatus", h) == CKR.FUNCTION_NOT_PARALLEL
    assert call("C_CancelFunction", h) == CKR.FUNCTION_NOT_PARALLEL
    assert call("C_GetFunctionStatus", 9999) == CKR.SESSION_HANDLE_INVALID


INIT_COST = r"""
import ctypes, os, resource, sys, time
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
r0 = rss(); t0 = time.perf_counter()
from p11nethsm import dispatch
from p11nethsm.ck.functions import INDEX
rv = dispatch.entry(INDEX["C_Initialize"], 0)
t1 = time.perf_counter(); r1 = rss()
heavy = [m for m in ("cryptography", "urllib3", "yaml_never") if m in sys.modules]
# slow to import (dataclasses: ~10 ms with inspect), or not needed before their first call
# (typing and inspect are not checked: loguru imports them when the test suite's log tee writes)
slow = [m for m in ("dataclasses", "p11nethsm.handlers.slot_token", "p11nethsm.handlers.sign_verify",
                    "p11nethsm.mechanisms.registry") if m in sys.modules]
print(rv, round((t1 - t0) * 1000, 1), round((r1 - r0) / 2**20, 1), ",".join(heavy) or "-", ",".join(slow) or "-")
"""


def test_initialize_imports_no_crypto_or_http_and_grows_rss_under_25mb(write_config):
    """Fresh interpreter: import of the dispatcher + C_Initialize (the shim adds the interpreter).
    The time is printed for the record, not asserted (it depends on the machine's load); `ssl`
    is not checked: loguru imports asyncio, which imports it."""
    import os

    env = dict(os.environ, P11NETHSM_CONFIG_FILE=write_config(BOTH_USERS_NO_PASSWORDS), PYTHONDONTWRITEBYTECODE="0")
    subprocess.run([sys.executable, "-c", INIT_COST], env=env, capture_output=True)  # warm the pyc cache
    out = subprocess.run([sys.executable, "-c", INIT_COST], env=env, capture_output=True, text=True, check=True)
    rv, ms, mb, heavy, slow = out.stdout.split()
    print(f"dispatcher import + C_Initialize: {ms} ms, +{mb} MiB RSS, heavy modules: {heavy}")
    assert rv == "0", out.stderr
    assert heavy == "-", f"C_Initialize imported {heavy}"
    assert slow == "-", f"C_Initialize imported {slow}"
    assert float(mb) <= 25


_ = (resource, time)


def test_danger_insecure_cert_is_warned_about_at_c_initialize(call, write_config, monkeypatch, capfd):
    """README, configuration reference (`danger_insecure_cert`): skipping certificate checks is logged at start, before any connection."""
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(
        "log_file: '-'\n" + BOTH_USERS_NO_PASSWORDS.replace(
            "url: https://127.0.0.1:1/api/v1", "url: https://127.0.0.1:1/api/v1\n        danger_insecure_cert: true")))
    assert call("C_Initialize", None) == CKR.OK
    err = capfd.readouterr().err
    assert "slot 'LocalHSM': https://127.0.0.1:1/api/v1: danger_insecure_cert is set" in err, err


def test_no_insecure_warning_for_a_verified_instance(call, write_config, monkeypatch, capfd):
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config("log_file: '-'\n" + BOTH_USERS_NO_PASSWORDS))
    assert call("C_Initialize", None) == CKR.OK
    assert "danger_insecure_cert" not in capfd.readouterr().err
