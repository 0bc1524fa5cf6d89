"""Slots and tokens (§5.5) on the fake NetHSM."""

from __future__ import annotations

import ctypes
import threading
import time

import pytest

from p11nethsm.ck.constants import CK_UNAVAILABLE_INFORMATION, CKR, SlotFlag, TokenFlag
from p11nethsm.ck.structs import CK_MECHANISM_INFO, CK_SLOT_INFO, CK_TOKEN_INFO
from p11nethsm.library import get_library

from core_fakes import BOTH_USERS_NO_PASSWORDS
from core_fakes import CLUSTERS, cluster

TWO_SLOTS = """
slots:
  - label: Locked
    operator: {username: operator, password: opPassphrase}
    instances: [{url: "https://locked:8443/api/v1"}]
  - label: Operational
    description: the good one
    operator: {username: operator, password: opPassphrase}
    administrator: {username: admin, password: Administrator}
    instances: [{url: "https://ok:8443/api/v1"}]
"""


def _slot_list(call, present):
    n = ctypes.c_ulong()
    assert call("C_GetSlotList", present, None, n) == CKR.OK
    arr = (ctypes.c_ulong * max(n.value, 1))()
    assert call("C_GetSlotList", present, arr, n) == CKR.OK
    return list(arr[: n.value])


def test_slot_list_honours_token_present(init):
    cluster("Locked").state = "Locked"
    call = init(TWO_SLOTS)
    assert _slot_list(call, False) == [0, 1]
    assert _slot_list(call, True) == [1]


def test_slot_list_two_call_protocol(init):
    call = init(TWO_SLOTS)
    n = ctypes.c_ulong(1)
    arr = (ctypes.c_ulong * 1)()
    assert call("C_GetSlotList", 0, arr, n) == CKR.BUFFER_TOO_SMALL
    assert n.value == 2
    assert call("C_GetSlotList", 0, arr, None) == CKR.ARGUMENTS_BAD


def test_unreachable_cluster_means_no_token(init):
    cluster("Locked").reachable = False
    call = init(TWO_SLOTS)
    assert _slot_list(call, True) == [1]
    assert call("C_GetTokenInfo", 0, CK_TOKEN_INFO()) == CKR.TOKEN_NOT_PRESENT


def test_slot_info(init):
    cluster("Locked").state = "Locked"
    call = init(TWO_SLOTS)
    info = CK_SLOT_INFO()
    assert call("C_GetSlotInfo", 1, info) == CKR.OK
    assert info.flags & SlotFlag.TOKEN_PRESENT
    assert bytes(info.slotDescription).rstrip() == b"the good one"
    assert bytes(info.manufacturerID).rstrip() == b"Nitrokey GmbH"
    assert call("C_GetSlotInfo", 0, info) == CKR.OK
    assert not info.flags & SlotFlag.TOKEN_PRESENT and info.flags & SlotFlag.REMOVABLE_DEVICE
    assert bytes(info.slotDescription).rstrip() == b"Locked"  # no description: the label
    assert call("C_GetSlotInfo", 7, info) == CKR.SLOT_ID_INVALID
    assert call("C_GetSlotInfo", 1, None) == CKR.ARGUMENTS_BAD


def test_token_info_with_admin_password_uses_system_info(init):
    call = init(TWO_SLOTS)
    info = CK_TOKEN_INFO()
    assert call("C_GetTokenInfo", 1, info) == CKR.OK
    assert bytes(info.label).rstrip() == b"Operational"
    assert bytes(info.manufacturerID).rstrip() == b"Nitrokey GmbH"
    assert bytes(info.model).rstrip() == b"NetHSM"
    assert bytes(info.serialNumber) == b"DEVICE0123456789"  # deviceId, cut to 16
    assert (info.firmwareVersion.major, info.firmwareVersion.minor) == (4, 1)
    assert info.flags & TokenFlag.TOKEN_INITIALIZED and info.flags & TokenFlag.RNG
    assert info.flags & TokenFlag.USER_PIN_INITIALIZED
    assert not info.flags & TokenFlag.LOGIN_REQUIRED  # the operator's password is configured
    assert (info.ulMinPinLen, info.ulMaxPinLen) == (10, 200)
    assert info.ulTotalPublicMemory == CK_UNAVAILABLE_INFORMATION


def test_token_info_without_admin_password_derives_a_stable_serial(init):
    call = init()  # both users, no passwords
    a, b = CK_TOKEN_INFO(), CK_TOKEN_INFO()
    assert call("C_GetTokenInfo", 0, a) == CKR.OK
    assert ("GET", "/system/info", "admin") not in cluster("LocalHSM").calls
    h = call.open()
    assert call.login(h, 0, "Administrator") == CKR.OK  # a SO login does not change it
    assert call("C_GetTokenInfo", 0, b) == CKR.OK
    assert bytes(a.serialNumber) == bytes(b.serialNumber)
    assert len(bytes(a.serialNumber).strip()) == 16 and bytes(a.serialNumber).isalnum()
    assert a.flags & TokenFlag.LOGIN_REQUIRED  # no password for the default user (operator)


def test_token_info_counts_sessions(init):
    call = init()
    call.open(rw=True)
    call.open(rw=False)
    info = CK_TOKEN_INFO()
    assert call("C_GetTokenInfo", 0, info) == CKR.OK
    assert (info.ulSessionCount, info.ulRwSessionCount) == (2, 1)


def test_mechanism_list_and_info_come_from_the_registry(init):
    from p11nethsm.mechanisms.registry import mechanism_info, mechanism_list

    call = init()
    n = ctypes.c_ulong()
    assert call("C_GetMechanismList", 0, None, n) == CKR.OK
    arr = (ctypes.c_ulong * n.value)()
    assert call("C_GetMechanismList", 0, arr, n) == CKR.OK
    assert list(arr) == [int(m) for m in mechanism_list()]
    info = CK_MECHANISM_INFO()
    first = arr[0]
    assert call("C_GetMechanismInfo", 0, first, info) == CKR.OK
    expected = mechanism_info(first)
    assert (info.ulMinKeySize, info.ulMaxKeySize, info.flags) == (expected.min_key, expected.max_key, expected.flags)
    assert call("C_GetMechanismInfo", 0, 0x7FFFFFF0, info) == CKR.MECHANISM_INVALID
    assert call("C_GetMechanismInfo", 5, first, info) == CKR.SLOT_ID_INVALID
    assert call("C_GetMechanismList", 0, None, None) == CKR.ARGUMENTS_BAD


def test_init_token_and_init_pin_are_not_supported(init):
    call = init()
    assert call("C_InitToken", 0, b"x" * 10, 10, b" " * 32) == CKR.FUNCTION_NOT_SUPPORTED
    h = call.open()
    assert call("C_InitPIN", h, b"x" * 10, 10) == CKR.FUNCTION_NOT_SUPPORTED


def test_wait_for_slot_event_dont_block(init):
    call = init(TWO_SLOTS)
    slot = ctypes.c_ulong(99)
    assert call("C_WaitForSlotEvent", 1, slot, None) == CKR.NO_EVENT
    cluster("Locked").state = "Locked"
    assert call("C_WaitForSlotEvent", 1, slot, None) == CKR.OK
    assert slot.value == 0
    assert call("C_WaitForSlotEvent", 1, slot, None) == CKR.NO_EVENT
    assert call("C_WaitForSlotEvent", 1, None, None) == CKR.ARGUMENTS_BAD
    assert call("C_WaitForSlotEvent", 1, slot, slot) == CKR.ARGUMENTS_BAD


def _until(cond, what: str, limit: float = 30.0) -> None:
    """Polls a condition; the limit only ends a test that would hang."""
    end = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < end, f"never happened: {what}"
        time.sleep(0.01)


def test_wait_for_slot_event_blocking_sees_insertion(init, monkeypatch):
    from p11nethsm.handlers import slot_token

    monkeypatch.setattr(slot_token, "WAIT_POLL_SECONDS", 0.05)
    cluster("Locked").state = "Locked"
    call = init(TWO_SLOTS)
    assert call("C_WaitForSlotEvent", 1, ctypes.c_ulong(), None) == CKR.NO_EVENT  # learn the states
    result = {}

    def wait():
        slot = ctypes.c_ulong(99)
        result["rv"] = call("C_WaitForSlotEvent", 0, slot, None)
        result["slot"] = slot.value

    polls = len(cluster("Locked").calls)
    t = threading.Thread(target=wait)
    t.start()
    _until(lambda: len(cluster("Locked").calls) > polls, "the waiter polls the locked slot")
    assert t.is_alive()  # it saw no insertion yet: still waiting
    cluster("Locked").state = "Operational"
    t.join(5)
    assert result == {"rv": CKR.OK, "slot": 0}


def test_wait_for_slot_event_blocking_ends_on_finalize(init):
    call = init(TWO_SLOTS)
    result = {}

    def wait():
        result["rv"] = call("C_WaitForSlotEvent", 0, ctypes.c_ulong(), None)

    polls = sum(len(c.calls) for c in CLUSTERS.values())
    t = threading.Thread(target=wait)
    t.start()
    _until(lambda: sum(len(c.calls) for c in CLUSTERS.values()) > polls, "the waiter polls")
    assert t.is_alive()
    assert call("C_Finalize", None) == CKR.OK
    t.join(30)  # a wait that Finalize did not end would block for good (no timeout of its own)
    assert not t.is_alive()
    assert result["rv"] == CKR.CRYPTOKI_NOT_INITIALIZED


def test_token_presence_is_cached_for_a_second(init):
    call = init(TWO_SLOTS)
    _slot_list(call, True)
    n = sum(1 for c in cluster("Operational").calls if c[1] == "/health/state")
    _slot_list(call, True)
    assert sum(1 for c in cluster("Operational").calls if c[1] == "/health/state") == n


@pytest.mark.parametrize("state", ["Locked", "Unprovisioned", "Failed"])
def test_not_operational_states_mean_no_token(init, state):
    cluster("LocalHSM").state = state
    call = init(BOTH_USERS_NO_PASSWORDS)
    assert call("C_GetTokenInfo", 0, CK_TOKEN_INFO()) == CKR.TOKEN_NOT_PRESENT
    assert get_library().slot(0).token.state_id == "absent"
