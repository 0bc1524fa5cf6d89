"""The fuzz run itself, in its own process (run by test_fuzz_so.py): loads the built .so with
ctypes (host mode) and calls every C_* function with a mix of valid and invalid arguments.

    python fuzz_child.py CONFIG SEED N_RANDOM N_HYPOTHESIS_EXAMPLES OUT.json

Memory discipline (so that a crash can only be the module's fault): every non-NULL pointer points
at memory we own and that is large enough for what the spec lets the module read or write there.
Lengths describing *input* never exceed the buffer behind them (a huge length only comes with a
NULL pointer); lengths of *output* buffers (`*pulLen`, ulMaxObjectCount, a template's ulValueLen)
may be anything, huge included, because the buffers behind them can hold any output the token can
produce. Mechanism parameters that are structures with pointers are built with valid pointers.

Checks per call: the CKR is one of p11nethsm.ck.constants.CKR; never CKR_GENERAL_ERROR;
uninitialized → CKR_CRYPTOKI_NOT_INITIALIZED; a session handle never issued → SESSION_HANDLE_INVALID
(or ARGUMENTS_BAD / FUNCTION_NOT_SUPPORTED); an unknown slot → SLOT_ID_INVALID (or ARGUMENTS_BAD /
FUNCTION_NOT_SUPPORTED); CKR_BUFFER_TOO_SMALL only with an output buffer and a *pulLen raised above
what was offered. Findings are written to OUT.json; the parent fails on any.
"""

from __future__ import annotations

import collections
import ctypes
import faulthandler
import json
import os
import struct
import sys
import time

from tests.security.sodriver import SO, CKR_NAMES  # run as `python -m tests.security.fuzz_child`

from p11nethsm.ck.constants import CKA, CKM, CKO, CKR, CKU  # noqa: E402
from p11nethsm.ck.functions import BYTE_TYPES, FUNCTIONS, INDEX, ULONG_TYPES  # noqa: E402
from p11nethsm.ck.structs import CK_ATTRIBUTE, CK_C_INITIALIZE_ARGS, CK_MECHANISM  # noqa: E402
from p11nethsm.mechanisms.registry import MECHANISMS  # noqa: E402

VALID_CKR = {int(x) for x in CKR}
U64 = (1 << 64) - 1
HUGE = (U64, 1 << 63, 1 << 32, (1 << 32) - 1, 1 << 31, 0x7FFFFFFFFFFFFFFF, 0xFFFFFFFF00000000)
OPERATOR_PIN = b"opPassphrase"  # the emulator's standard credentials (also in the fuzz config)
ADMIN_PIN = b"Administrator"
BIG = 2 * 1024 * 1024 + 4096  # any output (≤ 1 MiB input + padding, signatures, lists) fits
MAX_INPUT = 1024 * 1024
IN_C = {"C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"}  # answered by the shim

_ul = struct.Struct("L").pack
REAL_CKA = [int(a) for a in CKA]
REAL_CKM = sorted(MECHANISMS) + [int(m) for m in CKM][:40]
SIGN_MECHS = [int(m) for m in (CKM.ECDSA, CKM.ECDSA_SHA256, CKM.SHA256_RSA_PKCS, CKM.RSA_PKCS,
                               CKM.RSA_PKCS_PSS, CKM.SHA256_RSA_PKCS_PSS, CKM.EDDSA)]
EC_PARAMS = [bytes.fromhex("06082a8648ce3d030107"), bytes.fromhex("06052b81040022"),
             bytes.fromhex("06032b6570"), b"\x13\x0aprime256v1", b"\x06\x00", b"\x30"]


class Rng:
    """The chooser for the seeded bulk run."""

    def __init__(self, seed):
        import random

        self.r = random.Random(seed)

    def int(self, lo, hi):
        return self.r.randint(lo, hi)

    def coin(self, p):
        return self.r.random() < p

    def choice(self, seq):
        return seq[self.r.randrange(len(seq))]

    def bytes(self, n):
        return self.r.randbytes(n)


class Hyp:
    """The chooser for the hypothesis phase. Each example draws one fixed-size byte string and
    every decision reads from it: the module's state (open sessions, objects, rvs that depend on
    the network) decides which decisions are asked, so separate draws per decision would make
    hypothesis see a different choice sequence on replay (FlakyStrategyDefinition). One draw keeps
    the sequence consistent; shrinking the bytes toward zero still shrinks every decision toward
    its low end (fewer steps, smaller ints, 'no' coins)."""

    SIZE = 1024

    def __init__(self, data):
        from hypothesis import strategies as st

        self.buf = data.draw(st.binary(min_size=self.SIZE, max_size=self.SIZE))
        self.pos = 0

    def _take(self, n):
        chunk = self.buf[self.pos:self.pos + n]
        self.pos += n
        return chunk.ljust(n, b"\0")  # past the end every decision is its low end

    def int(self, lo, hi):
        span = hi - lo
        if span <= 0:
            return lo
        width = (span.bit_length() + 7) // 8
        return lo + int.from_bytes(self._take(width), "big") % (span + 1)

    def coin(self, p):
        return self.int(0, 999) < p * 1000

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def bytes(self, n):
        return self._take(n)


NOTIFY_T = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p)
MUTEX_T = ctypes.CFUNCTYPE(ctypes.c_ulong, ctypes.c_void_p)


@NOTIFY_T
def _notify(h, event, app):
    return 0


def _create_mutex(pp):
    if pp:
        ctypes.c_void_p.from_address(pp).value = 0x1000
    return 0


_MUTEX = [MUTEX_T(_create_mutex), MUTEX_T(lambda m: 0), MUTEX_T(lambda m: 0), MUTEX_T(lambda m: 0)]


class Fuzzer:
    def __init__(self, so: SO):
        self.so = so
        self.big = ctypes.create_string_buffer(BIG)
        self.big_addr = ctypes.addressof(self.big)
        self.hist: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.time_by_fn: collections.Counter = collections.Counter()
        self.calls = 0
        self.findings: list[str] = []
        self.n_findings = 0
        self.ready = False
        self.live: list[int] = []      # open session handles (as far as we know)
        self.issued: set[int] = set()  # every session handle ever returned
        self.closed: list[int] = []
        self.objects: list[int] = []   # handles found on the token (standard keys)
        self.created: list[int] = []   # handles our calls created (may be destroyed)
        self.init_count = 0
        self.keep: list = []

    # ------------------------------------------------------------------ state
    def initialize(self):
        rv = self.so("C_Initialize", None)
        assert rv in (0, CKR.CRYPTOKI_ALREADY_INITIALIZED), CKR_NAMES.get(rv)
        self.ready = True
        self.init_count += 1
        self.live.clear()
        self.objects.clear()
        self.created.clear()
        self.refill()

    def refill(self):
        """At least two sessions on slot 0 and one on slot 1; the object handles of slot 0."""
        if not self.ready:
            return
        for slot, want in ((0, 2), (1, 1)):
            have = [h for h in self.live if self.session_slot(h) == slot]
            for _ in range(want - len(have)):
                h = ctypes.c_ulong()
                rv = self.so("C_OpenSession", slot, 6, None, None, h)
                if rv == 0:
                    self.live.append(h.value)
                    self.issued.add(h.value)
        if not self.objects:
            s = next((h for h in self.live if self.session_slot(h) == 0), None)
            if s is not None:
                try:
                    self.objects = self.so.find(s)
                except AssertionError:
                    self.objects = []

    def session_slot(self, h):
        info = ctypes.create_string_buffer(64)
        if self.so("C_GetSessionInfo", h, info) != 0:
            return None
        return ctypes.c_ulong.from_buffer(info).value

    # ------------------------------------------------------------------ argument generators
    def buf(self, data: bytes, size: int | None = None) -> int:
        b = ctypes.create_string_buffer(data, max(1, size if size is not None else len(data)))
        self.keep.append(b)
        return ctypes.addressof(b)

    def cell(self, c, value=None) -> int:
        v = ctypes.c_ulong(value if value is not None else c.choice((0, 1, 2, 7, 64, 256, U64)))
        self.keep.append(v)
        return ctypes.addressof(v)

    def scalar(self, c) -> int:
        k = c.int(0, 9)
        if k < 4:
            return c.int(0, 4)
        if k < 6:
            return c.choice(HUGE)
        if k < 8:
            return c.int(0, 1 << 16)
        return int.from_bytes(c.bytes(8), "little")

    def session(self, c) -> int:
        k = c.int(0, 99)
        if k < 65 and self.live:
            return c.choice(self.live)
        if k < 75 and self.closed:
            return c.choice(self.closed)
        return self.scalar(c)

    def obj(self, c) -> int:
        k = c.int(0, 99)
        if k < 60 and self.objects:
            return c.choice(self.objects)
        if k < 70 and self.created:
            return c.choice(self.created)
        return self.scalar(c)

    def slot(self, c) -> int:
        return c.choice((0, 0, 0, 1, 1, 2)) if c.coin(0.85) else self.scalar(c)

    def input_bytes(self, c, name: str) -> tuple[int, int]:
        """(pointer, length) of an input buffer."""
        k = c.int(0, 99)
        if k < 8:
            return 0, c.choice((0, 1, 16) + HUGE)
        if name in ("pPin", "pOldPin", "pNewPin") and k < 40:
            pin = c.choice((OPERATOR_PIN, ADMIN_PIN, b"", b"short", b"x" * 201, b"\xff\xfe" * 6,
                            b"wrongPinButLongEnough"))
            return self.buf(pin), len(pin)
        if k < 12:
            n = MAX_INPUT
        else:
            n = c.choice((0, 1, 2, 7, 8, 15, 16, 17, 20, 28, 32, 33, 48, 64, 100, 200, 201, 255, 256,
                          257, 512, 1024, 4096))
        data = c.bytes(min(n, 64)) * (n // 64 + 1) if n > 64 else c.bytes(n)
        ptr = self.buf(data[:n], n)
        length = n if c.coin(0.85) else c.int(0, n)
        return ptr, length

    def out_len(self, c) -> int:
        return c.choice((0, 1, 8, 20, 63, 64, 100, 255, 256, 512, 1024, 4096, 65536) + HUGE)

    def attr_value(self, c, t) -> bytes:
        k = c.int(0, 9)
        if k < 3:
            return _ul(c.choice((0, 1, 2, 3, 4, 0x10, 256, 2048, U64)))
        if k < 5:
            return c.choice((b"\x00", b"\x01", b"\x02"))
        if k < 6:
            return c.choice(EC_PARAMS)
        if k < 7:
            return c.choice((b"", b"fuzzkey", b"p256key", b"\x00" * 40, "ключ".encode()))
        return c.bytes(c.choice((0, 1, 3, 8, 16, 32, 65, 300)))

    def template(self, c, output: bool) -> tuple[int, int]:
        k = c.int(0, 99)
        if k < 6:
            return 0, c.choice((0, 1) + HUGE)
        n = c.choice((0, 1, 1, 2, 3, 4, 6, 9))
        arr = (CK_ATTRIBUTE * max(1, n))()
        self.keep.append(arr)
        for i in range(n):
            t = c.choice(REAL_CKA) if c.coin(0.8) else self.scalar(c)
            arr[i].type = t
            mode = c.int(0, 9)
            if mode == 0:  # NULL value: any length
                arr[i].pValue, arr[i].ulValueLen = 0, c.choice((0, 8) + HUGE)
            elif output and mode < 4:  # output template: a huge claim into a buffer that fits anything
                arr[i].pValue, arr[i].ulValueLen = self.big_addr, c.choice((65536, U64, 1 << 40))
            else:
                v = self.attr_value(c, t)
                arr[i].pValue = self.buf(v)
                arr[i].ulValueLen = len(v) if c.coin(0.85) else c.int(0, len(v))
        count = n if c.coin(0.9) else c.int(0, n)
        return ctypes.addressof(arr), count

    def mechanism(self, c) -> int:
        if c.coin(0.04):
            return 0
        m = CK_MECHANISM()
        self.keep.append(m)
        k = c.int(0, 99)
        m.mechanism = (c.choice(SIGN_MECHS) if k < 35 else c.choice(REAL_CKM) if k < 85
                       else self.scalar(c))
        p = c.int(0, 9)
        if p < 4:
            m.pParameter, m.ulParameterLen = 0, c.choice((0, 0, 0, 16) + HUGE)
        elif p < 6:  # PSS-like / plain ulong params, no pointers
            v = b"".join(_ul(c.choice((0, 1, 2, 0x250, 0x251, 32, 64, U64))) for _ in range(c.int(1, 3)))
            m.pParameter, m.ulParameterLen = self.buf(v), len(v)
        elif p < 7:  # OAEP params (hashAlg, mgf, source, pSourceData, ulSourceDataLen)
            src_len = c.choice((0, 1, 8))
            src = self.buf(c.bytes(src_len)) if c.coin(0.5) else 0
            v = struct.pack("LLLPL", c.choice((0x250, 0x220, 0x251, 7)), c.choice((1, 2, 9)), c.choice((0, 1)),
                            src, src_len if src else c.choice((0, 4)))
            m.pParameter, m.ulParameterLen = self.buf(v), len(v)
        elif p < 8:  # EDDSA params (phFlag, ulContextDataLen, pContextData)
            ctx_len = c.choice((0, 1, 32))
            ctx = self.buf(c.bytes(ctx_len)) if c.coin(0.5) else 0
            v = struct.pack("BxxxxxxxLP", c.int(0, 1), ctx_len if ctx else c.choice((0, 4)), ctx)
            m.pParameter, m.ulParameterLen = self.buf(v), len(v)
        else:  # raw bytes (IVs...), never the size of a structure holding pointers
            n = c.choice((0, 1, 8, 15, 16, 17, 32, 33, 64))
            m.pParameter, m.ulParameterLen = self.buf(c.bytes(n)), n
        return ctypes.addressof(m)

    def init_args(self, c) -> int:
        if c.coin(0.5):
            return 0
        a = CK_C_INITIALIZE_ARGS()
        self.keep.append(a)
        if c.coin(0.3):
            for i, name in enumerate(("CreateMutex", "DestroyMutex", "LockMutex", "UnlockMutex")):
                if c.coin(0.9):
                    setattr(a, name, ctypes.cast(_MUTEX[i], ctypes.c_void_p).value)
        a.flags = c.choice((0, 1, 2, 3, 4, U64))
        a.pReserved = 0 if c.coin(0.8) else self.buf(b"x")
        return ctypes.addressof(a)

    # ------------------------------------------------------------------ one call
    def args_for(self, c, f):
        """Arguments for FUNCTIONS entry f; returns (args, meta) with meta for the checks."""
        args: list[int] = []
        meta = {"out": None, "session": None, "slot": None}
        a = f.args
        i = 0
        while i < len(a):
            t, n = a[i].ctype, a[i].name
            nxt = a[i + 1] if i + 1 < len(a) else None
            if t == "CK_SESSION_HANDLE":
                args.append(self.session(c))
                meta["session"] = args[-1]
            elif t == "CK_SLOT_ID":
                args.append(self.slot(c))
                meta["slot"] = args[-1]
            elif t == "CK_OBJECT_HANDLE":
                args.append(self.obj(c))
            elif t == "CK_MECHANISM_PTR":
                args.append(self.mechanism(c))
            elif t == "CK_ATTRIBUTE_PTR":
                p, cnt = self.template(c, output=f.name == "C_GetAttributeValue")
                args += [p, cnt]
                i += 1
            elif t == "CK_MECHANISM_TYPE":
                args.append(c.choice(REAL_CKM) if c.coin(0.8) else self.scalar(c))
            elif t == "CK_USER_TYPE":
                args.append(c.choice((0, 1, 1, 2, 3)) if c.coin(0.9) else self.scalar(c))
            elif t == "CK_FLAGS":
                if f.name == "C_OpenSession":
                    v = c.choice((4, 6, 6, 2, 0)) if c.coin(0.9) else self.scalar(c)
                elif f.name == "C_WaitForSlotEvent":
                    v = self.scalar(c) | 1  # CKF_DONT_BLOCK: a blocking wait is not a hang
                else:
                    v = self.scalar(c)
                args.append(v)
            elif t in BYTE_TYPES:
                args.append(c.int(0, 255) if c.coin(0.3) else c.int(0, 1))
            elif n == "RandomData":  # output of exactly ulRandomLen bytes
                if c.coin(0.1):
                    args += [0, c.choice((0, 16) + HUGE)]
                else:
                    args += [self.big_addr, c.choice((0, 1, 16, 32, 64, 1024, 1025, 4096))]
                i += 1
            elif n == "pLabel":  # C_InitToken: 32 bytes, blank padded
                args.append(0 if c.coin(0.2) else self.buf(c.bytes(32)))
            elif n == "pInterfaceName":
                args.append(0 if c.coin(0.3) else self.buf(c.choice((b"PKCS 11", b"Vendor", b"", c.bytes(8).replace(b"\0", b"a"))) + b"\0"))
            elif n in ("pInitArgs",):
                args.append(self.init_args(c))
            elif n in ("pReserved",):
                args.append(0 if c.coin(0.7) else self.buf(b"\0" * 64))
            elif n == "pApplication":
                args.append(0 if c.coin(0.5) else self.scalar(c))
            elif n == "Notify":
                args.append(0 if c.coin(0.5) else ctypes.cast(_notify, ctypes.c_void_p).value)
            elif t.endswith("_PTR") and nxt is not None and nxt.ctype == "CK_ULONG_PTR":
                # output buffer + in/out length (bytes, or an array of ulongs/interfaces)
                p = 0 if c.coin(0.3) else self.big_addr
                if c.coin(0.1):
                    pl = 0
                    claim = None
                else:
                    claim = self.out_len(c)
                    pl = self.cell(c, claim)
                args += [p, pl]
                meta["out"] = (p, pl, claim)
                i += 1
            elif t == "CK_OBJECT_HANDLE_PTR" and nxt is not None and nxt.name == "ulMaxObjectCount":
                args += [0 if c.coin(0.1) else self.big_addr, c.choice((0, 1, 2, 7, 64) + HUGE)]
                i += 1
            elif (t.endswith("_PTR") and t not in ("CK_ULONG_PTR",) and nxt is not None
                  and nxt.ctype == "CK_ULONG"):
                p, ln = self.input_bytes(c, n)
                args += [p, ln]
                i += 1
            elif t.endswith("_PTR_PTR") or t in ("CK_ULONG_PTR", "CK_SLOT_ID_PTR", "CK_SESSION_HANDLE_PTR",
                                                 "CK_OBJECT_HANDLE_PTR", "CK_VERSION_PTR"):
                # single output cells (phSession, pulSize, pSlot, pVersion, ppFunctionList...)
                args.append(0 if c.coin(0.15) else self.big_addr if c.coin(0.3) else self.cell(c))
            elif t.endswith("_PTR"):  # output structures (pInfo): the big buffer
                args.append(0 if c.coin(0.15) else self.big_addr)
            elif t in ULONG_TYPES:
                args.append(self.scalar(c))
            else:
                raise AssertionError(f"no generator for {t} {n} in {f.name}")
            i += 1
        return args, meta

    def check(self, f, args, meta, rv, ready_before):
        name = f.name
        problems = []
        if rv not in VALID_CKR:
            problems.append(f"rv {rv:#x} is not a CKR value")
        if rv == CKR.GENERAL_ERROR:
            problems.append("CKR_GENERAL_ERROR")
        if not ready_before and name not in IN_C and name != "C_Initialize" and rv != CKR.CRYPTOKI_NOT_INITIALIZED:
            problems.append("not initialized, but not CKR_CRYPTOKI_NOT_INITIALIZED")
        if ready_before and meta["session"] is not None and meta["session"] not in self.issued and \
                rv not in (CKR.SESSION_HANDLE_INVALID, CKR.ARGUMENTS_BAD, CKR.FUNCTION_NOT_SUPPORTED):
            problems.append(f"never-issued session handle {meta['session']:#x}")
        if ready_before and meta["slot"] is not None and meta["slot"] > 2 and name != "C_WaitForSlotEvent" and \
                rv not in (CKR.SLOT_ID_INVALID, CKR.ARGUMENTS_BAD, CKR.FUNCTION_NOT_SUPPORTED):
            problems.append(f"unknown slot {meta['slot']:#x}")
        if rv == CKR.BUFFER_TOO_SMALL and meta["out"] is not None:
            p, pl, claim = meta["out"]
            if not p or not pl or ctypes.c_ulong.from_address(pl).value <= claim:
                problems.append("CKR_BUFFER_TOO_SMALL without raising *pulLen")
        if problems:
            self.n_findings += 1
            if len(self.findings) < 60:
                self.findings.append(f"{name}{tuple(hex(x) for x in args)} = {CKR_NAMES.get(rv, hex(rv))}: "
                                     + "; ".join(problems))

    def after(self, f, args, rv):
        """Keep the pools of valid handles in step with what the call did."""
        name = f.name
        if name == "C_OpenSession" and rv == 0 and args[4]:
            h = ctypes.c_ulong.from_address(args[4]).value
            self.live.append(h)
            self.issued.add(h)
        elif name == "C_CloseSession" and rv == 0:
            if args[0] in self.live:
                self.live.remove(args[0])
            self.closed.append(args[0])
        elif name == "C_CloseAllSessions" and rv == 0:
            gone = [h for h in self.live if self.session_slot(h) is None]
            for h in gone:
                self.live.remove(h)
                self.closed.append(h)
        elif name == "C_Finalize" and rv == 0:
            self.ready = False
            self.closed.extend(self.live)
            self.live.clear()
        elif name == "C_Initialize" and rv == 0:
            self.ready = True
            self.init_count += 1
            self.objects.clear()
            self.created.clear()
        elif name in ("C_CreateObject", "C_CopyObject", "C_GenerateKey", "C_UnwrapKey", "C_DeriveKey") and rv == 0:
            ph = args[-1]
            if ph:
                self.created.append(ctypes.c_ulong.from_address(ph).value)
        elif name == "C_GenerateKeyPair" and rv == 0:
            for ph in args[-2:]:
                if ph:
                    self.created.append(ctypes.c_ulong.from_address(ph).value)
        elif name == "C_SetPIN" and rv == 0:
            # the passphrase changed: put the known one back so later logins stay meaningful
            s, new, new_len = args[0], args[3], args[4]
            new_pin = ctypes.string_at(new, new_len) if new_len else b""
            for back in (OPERATOR_PIN, ADMIN_PIN):
                if self.so("C_SetPIN", s, new_pin, len(new_pin), back, len(back)) == 0:
                    break
        self.closed = self.closed[-50:]

    # weights: cheap local calls dominate; network-bound ones are fewer (budget)
    HEAVY = {"C_GenerateKey": 0.05, "C_GenerateKeyPair": 0.05, "C_Login": 0.5, "C_LoginUser": 0.3,
             "C_SetPIN": 0.2, "C_Finalize": 0.15, "C_Initialize": 0.3, "C_GenerateRandom": 0.5,
             "C_CreateObject": 0.3, "C_DestroyObject": 0.3, "C_CopyObject": 0.3, "C_UnwrapKey": 0.3}

    def pick(self, c):
        return FUNCTIONS[c.int(0, len(FUNCTIONS) - 1)]

    def step(self, c):
        f = self.pick(c)
        w = self.HEAVY.get(f.name)
        if w is not None and not c.coin(w):
            f = FUNCTIONS[INDEX["C_GetSessionInfo"]] if c.coin(0.5) else FUNCTIONS[INDEX["C_SignInit"]]
        args, meta = self.args_for(c, f)
        if f.name == "C_DestroyObject" and args[1] in self.objects:
            args[1] = c.choice(self.created) if self.created else self.scalar(c)  # keep the standard keys
        ready = self.ready
        t0 = time.perf_counter()
        rv = self.so.fn[f.name](*args)
        self.time_by_fn[f.name] += time.perf_counter() - t0
        self.calls += 1
        self.hist[f.name][CKR_NAMES.get(rv, hex(rv))] += 1
        self.check(f, args, meta, rv, ready)
        self.after(f, args, rv)
        self.keep.clear()
        if not self.ready and c.coin(0.02):
            self.initialize()  # stay uninitialized for ~50 calls, then come back
        if self.ready and (len(self.live) < 3 or not self.objects) and c.coin(0.05):
            self.refill()


def main():
    config, seed, n_random, n_hyp, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    os.environ["P11NETHSM_CONFIG_FILE"] = config
    faulthandler.enable()
    so = SO()
    fz = Fuzzer(so)
    # wrong state first: everything before C_Initialize
    pre = Rng(seed ^ 0x5EED)
    for f in FUNCTIONS * 5:
        if f.name != "C_Initialize":
            args, meta = fz.args_for(pre, f)
            rv = so.fn[f.name](*args)
            fz.calls += 1
            fz.hist[f.name][CKR_NAMES.get(rv, hex(rv))] += 1
            fz.check(f, args, meta, rv, False)
            fz.keep.clear()
    fz.initialize()
    t0 = time.monotonic()
    rng = Rng(seed)
    for i in range(n_random):
        if i % 200 == 0:
            faulthandler.dump_traceback_later(60, exit=True)  # a call stuck for 60 s: a hang
        fz.step(rng)
    t_random = time.monotonic() - t0
    hyp_calls = 0
    if n_hyp:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        before = fz.calls

        @settings(max_examples=n_hyp, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(st.data())
        def program(data):
            faulthandler.dump_traceback_later(60, exit=True)
            c = Hyp(data)
            if not fz.ready:
                fz.initialize()
            fz.refill()
            for _ in range(c.int(1, 60)):
                fz.step(c)

        program()
        hyp_calls = fz.calls - before
    faulthandler.cancel_dump_traceback_later()
    if fz.ready:
        so("C_Finalize", None)
    slow = sorted(fz.time_by_fn.items(), key=lambda kv: -kv[1])[:8]
    totals = collections.Counter()
    for per in fz.hist.values():
        totals.update(per)
    with open(out, "w") as fh:
        json.dump({"calls": fz.calls, "random_calls": n_random, "hypothesis_calls": hyp_calls,
                   "seconds_random": round(t_random, 1), "functions": len(fz.hist),
                   "initializations": fz.init_count, "findings": fz.findings, "n_findings": fz.n_findings,
                   "totals": dict(totals.most_common()),
                   "per_function": {k: dict(v) for k, v in fz.hist.items()},
                   "slowest": [(k, round(v, 2)) for k, v in slow]}, fh, indent=1)


if __name__ == "__main__":
    main()
