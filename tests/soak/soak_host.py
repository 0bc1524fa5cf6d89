"""The chaos soak's host: a Python program that loads the built module with ctypes (like any
PKCS#11 host) and hammers it from worker threads while tests/soak/soak.py injects faults.

Each worker owns one R/W session (reopened now and then) and loops over a weighted mix: find,
sign (ECDSA), decrypt (RSA PKCS#1), generate an EC key pair, delete one of its keys, store and
delete a certificate, log in and out, open and close sessions. The main thread forks now and then:
the child initializes the module again, signs, finalizes and exits (bounded wait).

Every call is timed and its CK_RV counted. Written as JSON to --out at the end: counts, violations
(CKR_GENERAL_ERROR, calls over the deadline, fork children that failed or hung), the key ids the
workers believe exist, and /proc/self samples (fds, threads, RSS) after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import sys
import threading
import time
from collections import Counter

from tests.p11calls import MODULE, SO, Calls, b, ul  # noqa: E402  (run with -m from the root)

from p11nethsm.ck.constants import CKA, CKC, CKK, CKM, CKO, CKR, CKU  # noqa: E402

P256 = bytes.fromhex("06082a8648ce3d030107")
OK = 0
GENERAL_ERROR = int(CKR.GENERAL_ERROR)
NAMES = {int(m): f"CKR_{m.name}" for m in CKR}


class Host(Calls):
    """The ctypes functions of one loaded module; per-thread buffers (`keep`) are dropped after
    each operation so that the host itself does not grow."""

    def __init__(self, so: SO, stats: Stats, deadline: float):
        super().__init__()
        self.fn, self.stats, self.deadline = so.fn, stats, deadline

    def __call__(self, name, *args) -> int:
        a = [self.addr(x) for x in args]
        t = time.monotonic()
        rv = self.fn[name](*a)
        self.stats.record(name, rv, time.monotonic() - t, self.deadline)
        return rv


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.rvs: Counter[str] = Counter()
        self.calls = 0
        self.slowest = 0.0
        self.violations: list[str] = []

    def record(self, name: str, rv: int, seconds: float, deadline: float) -> None:
        with self.lock:
            self.calls += 1
            self.rvs[f"{name} {NAMES.get(rv, hex(rv))}"] += 1
            self.slowest = max(self.slowest, seconds)
            if rv == GENERAL_ERROR:
                self.violation(f"{name} returned CKR_GENERAL_ERROR")
            if seconds > deadline:
                self.violation(f"{name} took {seconds:.1f} s > deadline {deadline:g} s ({NAMES.get(rv, hex(rv))})")

    def violation(self, text: str) -> None:
        if len(self.violations) < 200:
            self.violations.append(text)
        else:
            self.violations[-1] = f"... and more ({text})"


def proc_sample() -> dict:
    status = open("/proc/self/status").read()
    field = {line.split(":")[0]: line.split(":")[1].strip() for line in status.splitlines()}
    return {"fds": len(os.listdir("/proc/self/fd")), "threads": int(field["Threads"]),
            "rss_kib": int(field["VmRSS"].split()[0])}


class Worker:
    def __init__(self, n: int, host: Host, rsa_ciphertexts: list[tuple[bytes, bytes]], cert_der: bytes,
                 slot: int, rng: random.Random):
        self.n, self.p, self.rng = n, host, rng
        self.rsa = rsa_ciphertexts
        self.cert_der = cert_der
        self.slot = slot
        self.session = 0
        self.mine: set[str] = set()      # key ids this worker believes exist
        self.uncertain: set[str] = set()  # keys whose deletion came back with an error: retried
        self.counter = 0

    # -- helpers --------------------------------------------------------------------------------
    def open(self) -> bool:
        h = ctypes.c_ulong()
        if self.p("C_OpenSession", self.slot, 0x6, None, None, h) == OK:
            self.session = h.value
            return True
        self.session = 0
        return False

    def close(self) -> None:
        if self.session:
            self.p("C_CloseSession", self.session)
            self.session = 0

    def find(self, items) -> list[int] | None:
        arr, n = self.p.template(items)
        if self.p("C_FindObjectsInit", self.session, arr, n) != OK:
            return None
        buf, cnt = (ctypes.c_ulong * 32)(), ctypes.c_ulong()
        out = []
        rv = self.p("C_FindObjects", self.session, buf, 32, cnt)
        if rv == OK:
            out = list(buf[:cnt.value])
        self.p("C_FindObjectsFinal", self.session)
        return out if rv == OK else None

    def key(self, label: bytes, cls=CKO.PRIVATE_KEY) -> int | None:
        found = self.find([(CKA.CLASS, ul(cls)), (CKA.LABEL, label)])
        return found[0] if found else None

    def crypt(self, init: str, run: str, key: int, mech, data: bytes) -> int:
        """*Init, then the two-call size protocol; the last CK_RV."""
        rv = self.p(init, self.session, mech, key)
        if rv != OK:
            return rv
        n = ctypes.c_ulong()
        rv = self.p(run, self.session, data, len(data), None, n)
        if rv != OK:
            return rv  # the failed call ended the operation
        buf = ctypes.create_string_buffer(max(1, n.value))
        return self.p(run, self.session, data, len(data), buf, n)

    # -- the mix --------------------------------------------------------------------------------
    def op_find(self):
        self.find([(CKA.CLASS, ul(CKO.PRIVATE_KEY))])

    def op_sign(self):
        k = self.key(b"p256key")
        if k is not None:
            self.crypt("C_SignInit", "C_Sign", k, self.p.mech(CKM.ECDSA), os.urandom(32))

    def op_decrypt(self):
        k = self.key(b"rsakey")
        if k is not None:
            _plain, ct = self.rng.choice(self.rsa)
            self.crypt("C_DecryptInit", "C_Decrypt", k, self.p.mech(CKM.RSA_PKCS), ct)

    def op_keygen(self):
        if len(self.mine) + len(self.uncertain) >= 4:
            return self.op_delete()
        self.counter += 1
        kid = f"soak{os.getpid()}w{self.n}k{self.counter}"
        pub, npub = self.p.template([(CKA.EC_PARAMS, P256), (CKA.TOKEN, b(True)), (CKA.VERIFY, b(True)),
                                     (CKA.ID, kid.encode()), (CKA.LABEL, kid.encode())])
        prv, nprv = self.p.template([(CKA.TOKEN, b(True)), (CKA.PRIVATE, b(True)), (CKA.SIGN, b(True)),
                                     (CKA.ID, kid.encode()), (CKA.LABEL, kid.encode())])
        hpub, hprv = ctypes.c_ulong(), ctypes.c_ulong()
        rv = self.p("C_GenerateKeyPair", self.session, self.p.mech(CKM.EC_KEY_PAIR_GEN), pub, npub, prv, nprv,
                    hpub, hprv)
        if rv == OK:
            self.mine.add(kid)

    def op_delete(self):
        pool = sorted(self.uncertain or self.mine)
        if not pool:
            return
        kid = self.rng.choice(pool)
        found = self.find([(CKA.CLASS, ul(CKO.PRIVATE_KEY)), (CKA.ID, kid.encode())])
        if found is None:
            return
        if not found:  # the module sees no such key: it is gone
            self.mine.discard(kid)
            self.uncertain.discard(kid)
            return
        rv = self.p("C_DestroyObject", self.session, found[0])
        if rv in (OK, int(CKR.OBJECT_HANDLE_INVALID)):
            self.mine.discard(kid)
            self.uncertain.discard(kid)
        else:
            self.mine.discard(kid)
            self.uncertain.add(kid)  # not known: looked up again before the next delete

    def op_cert(self):
        if not self.mine:
            return
        kid = self.rng.choice(sorted(self.mine))
        tpl, n = self.p.template([(CKA.CLASS, ul(CKO.CERTIFICATE)), (CKA.CERTIFICATE_TYPE, ul(CKC.X_509)),
                                  (CKA.TOKEN, b(True)), (CKA.ID, kid.encode()), (CKA.VALUE, self.cert_der)])
        h = ctypes.c_ulong()
        self.p("C_CreateObject", self.session, tpl, n, h)
        certs = self.find([(CKA.CLASS, ul(CKO.CERTIFICATE)), (CKA.ID, kid.encode())])
        if certs and self.rng.random() < 0.5:
            self.p("C_DestroyObject", self.session, certs[0])

    def op_login(self):
        s = ctypes.c_ulong()
        if self.p("C_OpenSession", self.slot, 0x4, None, None, s) != OK:
            return
        pin = b"opPassphrase"
        self.p("C_Login", s.value, int(CKU.USER), pin, len(pin))
        info = (ctypes.c_ubyte * 64)()
        self.p("C_GetSessionInfo", s.value, info)
        self.p("C_Logout", s.value)
        self.p("C_CloseSession", s.value)

    def op_reopen(self):
        self.close()
        self.open()

    MIX = (("op_sign", 30), ("op_find", 15), ("op_decrypt", 15), ("op_keygen", 10), ("op_delete", 6),
           ("op_cert", 8), ("op_login", 6), ("op_reopen", 10))

    def run(self, stop: threading.Event):
        names = [m for m, _ in self.MIX]
        weights = [w for _, w in self.MIX]
        while not stop.is_set():
            if not self.session and not self.open():
                time.sleep(0.05)
                continue
            getattr(self, self.rng.choices(names, weights)[0])()
            self.p.keep.clear()


def fork_child(so: SO, deadline: float, stacks: str) -> None:
    """In a forked child: initialize, sign once, finalize. Exit 0 done, 1 a spec error, 2 broken.
    A child still running shortly before the parent gives up writes its threads' stacks to `stacks`."""
    code = 2
    try:
        import faulthandler

        faulthandler.dump_traceback_later(3 * deadline + 5, file=open(stacks, "w"))
        stats = Stats()
        p = Host(so, stats, deadline)
        rv = p("C_Initialize", None)
        code = 1
        if rv == OK:
            w = Worker(0, p, [], b"", 0, random.Random())
            if w.open():
                k = w.key(b"p256key")
                if k is not None and w.crypt("C_SignInit", "C_Sign", k, p.mech(CKM.ECDSA), os.urandom(32)) == OK:
                    code = 0
            p("C_Finalize", None)
        if stats.violations:
            code = 2
        faulthandler.cancel_dump_traceback_later()
        os.unlink(stacks)  # finished in time: nothing to show
    finally:
        os._exit(code)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--deadline", type=float, required=True)
    ap.add_argument("--fork-every", type=float, default=5.0)
    ap.add_argument("--rsa-pem", required=True)
    ap.add_argument("--cert-der", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    pub = serialization.load_pem_public_key(open(a.rsa_pem, "rb").read())
    rsa = [(m, pub.encrypt(m, padding.PKCS1v15())) for m in (os.urandom(16) for _ in range(8))]
    cert = open(a.cert_der, "rb").read()

    so = SO(MODULE)
    stats = Stats()
    main_p = Host(so, stats, a.deadline)
    if main_p("C_Initialize", None) != OK:
        print("C_Initialize failed", file=sys.stderr)
        return 1
    rng = random.Random(a.seed)
    workers = [Worker(i, Host(so, stats, a.deadline), rsa, cert, 0, random.Random(rng.random()))
               for i in range(a.threads)]
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), name=f"soak-{w.n}") for w in workers]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    warm_at = t0 + min(30.0, 0.25 * a.duration)
    end = t0 + a.duration
    samples: dict[str, dict] = {}
    forks = Counter()
    next_fork = t0 + a.fork_every / 2
    while time.monotonic() < end:
        now = time.monotonic()
        if "warm" not in samples and now >= warm_at:
            samples["warm"] = proc_sample()
        if now >= next_fork:
            next_fork = now + a.fork_every
            forks[fork_once(so, a.deadline, stats, os.path.dirname(os.path.abspath(a.out)))] += 1
        time.sleep(0.1)
    samples.setdefault("warm", proc_sample())
    samples["end"] = proc_sample()
    stop.set()
    for t in threads:
        t.join(a.deadline * 4)
        if t.is_alive():
            stats.violation(f"worker {t.name} did not stop (a call hangs)")
    for w in workers:
        w.close()
    rv = main_p("C_Finalize", None)
    if rv != OK:
        stats.violation(f"C_Finalize returned {NAMES.get(rv, hex(rv))}")
    result = {
        "calls": stats.calls, "rvs": dict(stats.rvs), "slowest_s": round(stats.slowest, 2),
        "violations": stats.violations, "forks": dict(forks), "samples": samples,
        "believed": sorted(set().union(*(w.mine for w in workers))),
        "uncertain": sorted(set().union(*(w.uncertain for w in workers))),
    }
    with open(a.out, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


def fork_once(so: SO, deadline: float, stats: Stats, workdir: str) -> str:
    limit = 3 * deadline + 10
    stacks = os.path.join(workdir, f"fork-{time.time():.0f}-stacks.txt")
    pid = os.fork()
    if pid == 0:
        fork_child(so, deadline, stacks)
    t = time.monotonic()
    while time.monotonic() - t < limit:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            if code == 2 or code < 0:
                stats.violation(f"fork child exited with {code}")
                return "broken"
            return "signed" if code == 0 else "spec error"
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    stats.violation(f"fork child {pid} hung for {limit:g} s (its stacks: {stacks})")
    return "hung"


if __name__ == "__main__":
    sys.exit(main())
