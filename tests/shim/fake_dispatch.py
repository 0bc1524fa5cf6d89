"""Test-only p11nethsm.dispatch: a misbehaving dispatcher for the shim's error paths.

Installed as p11nethsm/dispatch.py inside a throwaway venv by conftest.fake_venv.
"""

import ctypes
import os

from p11nethsm.ck.functions import FUNCTIONS

_ready = False


def _after_fork_child():
    global _ready
    _ready = False


os.register_at_fork(after_in_child=_after_fork_child)


def entry(index, *args):
    global _ready
    assert all(type(a) is int and 0 <= a < 2**64 for a in args), args
    name = FUNCTIONS[index].name
    assert len(args) == len(FUNCTIONS[index].args)
    if name == "C_Initialize":
        if _ready:
            return 0x191
        _ready = True
        return 0
    if not _ready:
        return 0x190
    if name == "C_Finalize":
        _ready = False
        return 0
    if name == "C_GetInfo":
        if not args[0]:
            return 0x7
        buf = bytearray(88)
        buf[0:2] = bytes([3, 0])
        buf[2:34] = b"test".ljust(32)
        buf[48:80] = b"fake dispatcher".ljust(32)
        ctypes.memmove(args[0], bytes(buf), 88)
        return 0
    if name == "C_GetSlotInfo":
        mode = args[0]
        if mode == 1:
            raise RuntimeError("boom from fake dispatcher")
        if mode == 2:
            return "x"
        if mode == 3:
            raise SystemExit(3)
        if mode == 4:
            return 2**70
        if mode == 5:
            return -1
        return 0
    if name == "C_GetSlotList":
        token_present, p_list, p_count = args
        assert token_present == 1, token_present  # CK_BBOOL 7 arrives as 1
        ctypes.c_ulong.from_address(p_count).value = p_list + 1
        return 0
    if name == "C_EncryptMessage":
        assert args[:8] == (2**64 - 1, 1, 2, 3, 4, 5, 6, 7), args
        ctypes.c_ulong.from_address(args[8]).value = len(args)
        return 0
    return 0x54
