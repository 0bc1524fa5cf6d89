"""Calling PKCS#11 functions by name from tests, two ways with one set of helpers:

- `SO(path)`: through the built module, with ctypes (for scripts run in a subprocess, or any host);
- `Entry(p11nethsm.dispatch.entry)`: straight into the dispatcher, in-process (no .so).

Arguments: None → NULL, bool/int → the value, bytes → a fresh buffer, a ctypes object → its
address. `ok()` asserts CKR_OK; the helpers (templates, mechanisms, find, attributes, the two-call
size protocol, sign) are written once here.
"""

from __future__ import annotations

import ctypes
import os
import struct

from p11nethsm.ck.constants import CKA, CKO, CKR
from p11nethsm.ck.functions import BYTE_TYPES, FUNCTIONS, INDEX, ULONG_TYPES
from p11nethsm.ck.structs import CK_ATTRIBUTE, CK_MECHANISM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULE = os.path.join(ROOT, "p11nethsm", "libnethsm_pkcs11.so")
CKR_NAMES = {int(m): f"CKR_{m.name}" for m in CKR}
UL = struct.Struct("L")


def ul(v: int) -> bytes:
    """A CK_ULONG attribute value."""
    return UL.pack(v)


def b(v: bool) -> bytes:
    """A CK_BBOOL attribute value."""
    return b"\x01" if v else b"\x00"


class Calls:
    """The helpers; subclasses say how a call is made (`__call__`)."""

    def __init__(self):
        self.keep: list = []  # buffers that must outlive the calls using them

    def addr(self, v) -> int:
        if v is None:
            return 0
        if isinstance(v, int):  # bool included
            return int(v)
        if isinstance(v, (bytes, bytearray)):
            buf = ctypes.create_string_buffer(bytes(v), len(v) or 1)
            self.keep.append(buf)
            return ctypes.addressof(buf)
        return ctypes.addressof(v)

    def __call__(self, name: str, *args) -> int:
        raise NotImplementedError

    def ok(self, name, *args):
        rv = self(name, *args)
        if rv != 0:
            raise AssertionError(f"{name} -> {CKR_NAMES.get(rv, hex(rv))}")

    def rv(self, name, *args) -> str:
        return CKR_NAMES.get(self(name, *args), "?")

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

    def open(self, slot=0, rw=True) -> int:
        h = ctypes.c_ulong()
        self.ok("C_OpenSession", slot, 0x4 | (0x2 if rw else 0), None, None, h)
        return h.value

    def login(self, s, user, pin: bytes) -> int:
        return self("C_Login", s, user, pin, len(pin))

    def find(self, s, items=()) -> list[int]:
        arr, n = self.template(list(items))
        self.ok("C_FindObjectsInit", s, arr, n)
        out, buf, cnt = [], (ctypes.c_ulong * 64)(), ctypes.c_ulong()
        while True:
            self.ok("C_FindObjects", s, buf, 64, cnt)
            if not cnt.value:
                break
            out.extend(buf[:cnt.value])
        self.ok("C_FindObjectsFinal", s)
        return out

    def cls(self, c):
        """A CKA_CLASS template item."""
        return (CKA.CLASS, ul(c))

    def key(self, s, label: bytes, cls=CKO.PRIVATE_KEY) -> int:
        hs = self.find(s, [self.cls(cls), (CKA.LABEL, label)])
        if len(hs) != 1:
            raise AssertionError(f"{label!r}: {len(hs)} objects")
        return hs[0]

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
        """Two-call protocol: size query, then an exact buffer."""
        n = ctypes.c_ulong()
        self.ok(name, s, *args, None, n)
        buf = ctypes.create_string_buffer(max(1, n.value))
        self.ok(name, s, *args, buf, n)
        return buf.raw[:n.value]

    def sign(self, s, key, ckm, data, param=None) -> bytes:
        self.ok("C_SignInit", s, self.mech(ckm, param), key)
        return self.out("C_Sign", s, data, len(data))


class Entry(Calls):
    """Calls into p11nethsm.dispatch.entry (in-process, no .so)."""

    def __init__(self, entry):
        super().__init__()
        self.entry = entry

    def __call__(self, name, *args) -> int:
        return self.entry(INDEX[name], *(self.addr(a) for a in args))


def _ctype(arg):
    if arg.ctype in ULONG_TYPES:
        return ctypes.c_ulong
    if arg.ctype in BYTE_TYPES:
        return ctypes.c_ubyte
    return ctypes.c_void_p


class SO(Calls):
    """Calls the exported C_* symbols of a PKCS#11 module with ctypes."""

    def __init__(self, path: str = MODULE, mode: int = ctypes.RTLD_LOCAL):
        super().__init__()
        self.path = path
        self.lib = ctypes.CDLL(path, mode=mode)
        self.fn = {}
        for f in FUNCTIONS:
            c = getattr(self.lib, f.name)
            c.restype = ctypes.c_ulong
            c.argtypes = [_ctype(a) for a in f.args]
            self.fn[f.name] = c

    def __call__(self, name, *args) -> int:
        return self.fn[name](*(self.addr(a) for a in args))
