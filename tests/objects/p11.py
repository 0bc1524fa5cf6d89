"""Driving p11nethsm.dispatch.entry with ctypes (templates, mechanisms, attribute reads)."""

from __future__ import annotations

import ctypes
import struct

from p11nethsm.ck.constants import CKA, CKR
from p11nethsm.ck.functions import INDEX
from p11nethsm.ck.structs import CK_ATTRIBUTE, CK_MECHANISM

UL = struct.Struct("L")


def ul(v: int) -> bytes:
    return UL.pack(v)


def b(v: bool) -> bytes:
    return b"\x01" if v else b"\x00"


class P11:
    def __init__(self, entry):
        self.entry = entry
        self.keep: list = []

    def _addr(self, v):
        if v is None:
            return 0
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v
        if isinstance(v, (bytes, bytearray)):
            buf = ctypes.create_string_buffer(bytes(v), len(v) or 1)
            self.keep.append(buf)
            return ctypes.addressof(buf)
        return ctypes.addressof(v)

    def __call__(self, name, *args) -> int:
        return self.entry(INDEX[name], *(self._addr(a) for a in args))

    def ok(self, name, *args):
        rv = self(name, *args)
        assert rv == 0, f"{name} -> {CKR(rv).name}"

    def template(self, items):
        arr = (CK_ATTRIBUTE * max(1, len(items)))()
        for i, (t, v) in enumerate(items):
            buf = ctypes.create_string_buffer(v, len(v) or 1)
            self.keep.append(buf)
            arr[i].type, arr[i].pValue, arr[i].ulValueLen = t, ctypes.addressof(buf), len(v)
        self.keep.append(arr)
        return arr, len(items)

    def mech(self, ckm, param: bytes | None = None):
        m = CK_MECHANISM()
        m.mechanism = ckm
        if param is not None:
            buf = ctypes.create_string_buffer(param, len(param) or 1)
            self.keep.append(buf)
            m.pParameter, m.ulParameterLen = ctypes.addressof(buf), len(param)
        self.keep.append(m)
        return m

    def open(self, rw=True) -> int:
        h = ctypes.c_ulong()
        self.ok("C_OpenSession", 0, 0x4 | (0x2 if rw else 0), None, None, h)
        return h.value

    def find(self, s, items) -> list[int]:
        arr, n = self.template(items)
        self.ok("C_FindObjectsInit", s, arr, n)
        out = []
        buf = (ctypes.c_ulong * 7)()
        cnt = ctypes.c_ulong()
        while True:
            self.ok("C_FindObjects", s, buf, 7, cnt)
            if not cnt.value:
                break
            out.extend(buf[:cnt.value])
        self.ok("C_FindObjectsFinal", s)
        return out

    def attr(self, s, h, cka) -> bytes:
        a = (CK_ATTRIBUTE * 1)()
        a[0].type = cka
        self.ok("C_GetAttributeValue", s, h, a, 1)
        n = a[0].ulValueLen
        buf = ctypes.create_string_buffer(max(1, n))
        a[0].pValue, a[0].ulValueLen = ctypes.addressof(buf), n
        self.ok("C_GetAttributeValue", s, h, a, 1)
        return buf.raw[:n]

    def out(self, name, s, *args) -> bytes:
        """Two-call protocol: size query then exact buffer."""
        n = ctypes.c_ulong()
        self.ok(name, s, *args, None, n)
        buf = ctypes.create_string_buffer(max(1, n.value))
        self.ok(name, s, *args, buf, n)
        return buf.raw[:n.value]

    def sign(self, s, key, ckm, data, param=None) -> bytes:
        self.ok("C_SignInit", s, self.mech(ckm, param), key)
        return self.out("C_Sign", s, data, len(data))

    def cls(self, c):
        return (CKA.CLASS, ul(c))
