"""Calling the built module (.so) through ctypes, for scripts run in a subprocess (host mode:
the venv's 3.11 python loads the .so, which then uses this interpreter).

    so = SO(MODULE); so("C_Initialize", None); so.open(0); so.login(h, 1, b"pin")
Arguments: None → NULL, int → value/address, bytes → a fresh buffer, ctypes object → its address.
"""

from __future__ import annotations

import ctypes
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "p11nethsm", "libnethsm_pkcs11.so")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from p11nethsm.ck.constants import CKA, CKO, CKR  # noqa: E402
from p11nethsm.ck.functions import BYTE_TYPES, FUNCTIONS, ULONG_TYPES  # noqa: E402
from p11nethsm.ck.structs import CK_ATTRIBUTE, CK_MECHANISM  # noqa: E402

CKR_NAMES = {int(m): f"CKR_{m.name}" for m in CKR}


def _ctype(arg):
    if arg.ctype in ULONG_TYPES:
        return ctypes.c_ulong
    if arg.ctype in BYTE_TYPES:
        return ctypes.c_ubyte
    return ctypes.c_void_p


class SO:
    def __init__(self, path: str = MODULE, mode: int = ctypes.RTLD_LOCAL):
        self.path = path
        self.lib = ctypes.CDLL(path, mode=mode)
        self.fn = {}
        for f in FUNCTIONS:
            c = getattr(self.lib, f.name)
            c.restype = ctypes.c_ulong
            c.argtypes = [_ctype(a) for a in f.args]
            self.fn[f.name] = c
        self.keep: list = []

    def _addr(self, v):
        if v is None:
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, (bytes, bytearray)):
            buf = ctypes.create_string_buffer(bytes(v), len(v) or 1)
            self.keep.append(buf)
            return ctypes.addressof(buf)
        return ctypes.addressof(v)

    def __call__(self, name, *args) -> int:
        return self.fn[name](*(self._addr(a) for a in args))

    def ok(self, name, *args):
        rv = self(name, *args)
        if rv != 0:
            raise AssertionError(f"{name} -> {CKR_NAMES.get(rv, hex(rv))}")

    def open(self, slot=0, rw=True) -> int:
        h = ctypes.c_ulong()
        self.ok("C_OpenSession", slot, 0x4 | (0x2 if rw else 0), None, None, h)
        return h.value

    def login(self, s, user, pin: bytes) -> int:
        return self("C_Login", s, user, pin, len(pin))

    def template(self, items):
        arr = (CK_ATTRIBUTE * max(1, len(items)))()
        for i, (t, v) in enumerate(items):
            buf = ctypes.create_string_buffer(v, len(v) or 1)
            self.keep.append(buf)
            arr[i].type, arr[i].pValue, arr[i].ulValueLen = t, ctypes.addressof(buf), len(v)
        self.keep.append(arr)
        return arr, len(items)

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

    def attr(self, s, h, cka) -> bytes:
        a = (CK_ATTRIBUTE * 1)()
        a[0].type = cka
        self.ok("C_GetAttributeValue", s, h, a, 1)
        n = a[0].ulValueLen
        buf = ctypes.create_string_buffer(max(1, n))
        a[0].pValue, a[0].ulValueLen = ctypes.addressof(buf), n
        self.ok("C_GetAttributeValue", s, h, a, 1)
        return buf.raw[:n]

    def key(self, s, label: bytes, cls=CKO.PRIVATE_KEY) -> int:
        hs = self.find(s, [(CKA.CLASS, bytes(ctypes.c_ulong(cls))), (CKA.LABEL, label)])
        if len(hs) != 1:
            raise AssertionError(f"{label!r}: {len(hs)} objects")
        return hs[0]

    def mech(self, ckm, param: bytes | None = None):
        m = CK_MECHANISM()
        m.mechanism = ckm
        if param is not None:
            buf = ctypes.create_string_buffer(param, len(param) or 1)
            self.keep.append(buf)
            m.pParameter, m.ulParameterLen = ctypes.addressof(buf), len(param)
        self.keep.append(m)
        return m

    def sign(self, s, key, ckm, data: bytes) -> bytes:
        self.ok("C_SignInit", s, self.mech(ckm), key)
        n = ctypes.c_ulong()
        self.ok("C_Sign", s, data, len(data), None, n)
        buf = ctypes.create_string_buffer(max(1, n.value))
        self.ok("C_Sign", s, data, len(data), buf, n)
        return buf.raw[:n.value]

    def rv(self, name, *args) -> str:
        return CKR_NAMES.get(self(name, *args), "?")
