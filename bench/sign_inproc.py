"""The inner loop of the wire bench (issue 11): CPU per C_SignInit + C_Sign in-process, no shim.

The module runs in this Python process, called through p11nethsm.dispatch.entry with the same
arguments p11bench.c passes, against the wire bench's nginx peer (canned answers recorded from
the emulator at start, bench/wire.py). Prints process CPU microseconds per signature; run it
pinned (`taskset -c 1`) and alternate it with another checkout for a before/after.

    taskset -c 1 .venv/bin/python bench/sign_inproc.py                    # CPU us per signature
    taskset -c 1 .venv/bin/python bench/sign_inproc.py --ablate exchange  # the layers above the exchange
    taskset -c 1 .venv/bin/python bench/sign_inproc.py --plain            # plain Python's exchange, same peer
    taskset -c 1 .venv/bin/python bench/sign_inproc.py --profile          # cProfile (CPU clock), top 35 (--sort cumtime)
    taskset -c 1 .venv/bin/python bench/sign_inproc.py --layers --rounds 5  # where the CPU goes, by depth

`--ablate exchange` replaces InstancePool.exchange by the recorded answer: what remains is the
dispatcher, handlers, operation machine, object store, REST client, failover loop, JSON, base64
and DER. `--plain` runs bench/plain_sign.py's loop on its own TLS socket in this process.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import os
import pstats
import socket
import ssl
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

import plain_sign  # noqa: E402
import wire  # noqa: E402
from _common import OPERATOR, tmpdir  # noqa: E402

CKM = {"ecdsa": 0x1041, "eddsa": 0x1057, "rsa": 0x1}


def configure(work, nginx) -> None:
    os.environ["P11NETHSM_CONFIG_FILE"] = str(wire.module_config(work, nginx))  # the wire bench's


def module_loop(alg: str):
    """A function signing n times through dispatch.entry (C_SignInit + C_Sign, one session)."""
    from p11calls import Entry
    from p11nethsm import dispatch
    from p11nethsm.ck.constants import CKU
    from p11nethsm.ck.functions import INDEX
    from p11nethsm.ck.structs import CK_MECHANISM

    c = Entry(dispatch.entry)
    c.ok("C_Initialize", None)
    s = c.open(0)
    c.ok("C_Login", s, int(CKU.USER), OPERATOR[1].encode(), len(OPERATOR[1]))
    key = c.key(s, wire.ALGS[alg]["key"].encode())
    mech = CK_MECHANISM()
    mech.mechanism = CKM[alg]
    data = wire.message(alg)
    msg, sig, sig_len = ctypes.create_string_buffer(data), ctypes.create_string_buffer(1024), ctypes.c_ulong()
    p_mech, p_msg, p_sig, p_len = (ctypes.addressof(x) for x in (mech, msg, sig, sig_len))
    entry, sign_init, sign = dispatch.entry, INDEX["C_SignInit"], INDEX["C_Sign"]

    def loop(n: int, _keep=(mech, msg, sig)) -> None:  # _keep: the buffers outlive the loop
        for _ in range(n):
            if entry(sign_init, s, p_mech, key):
                raise SystemExit("C_SignInit failed")
            sig_len.value = 1024
            if entry(sign, s, p_msg, len(data), p_sig, p_len):
                raise SystemExit("C_Sign failed")

    loop.session = s
    return loop


def layer_loops(alg: str, session: int) -> dict:
    """The module's own signing path cut at two depths, on the module's session, slot and pool:
    `client` = NetHSM.sign (credentials, failover loop, pool, TLS, HTTP, JSON, base64: everything
    below the PKCS#11 layers), `pool` = InstancePool.exchange (pool, TLS write and read, HTTP)."""
    from p11nethsm.library import get_library
    from p11nethsm.values import Role

    slot = get_library().session(session).slot
    api, creds = slot.api, slot.credentials(Role.OPERATOR)
    key, mode, msg, body = wire.ALGS[alg]["key"], wire.ALGS[alg]["mode"], wire.message(alg), wire.sign_body(alg)
    inst = api.instances[0]
    path, head = f"{inst.base}/keys/{key}/sign", creds.headers["json"]

    def client(n: int) -> None:
        for _ in range(n):
            api.sign(creds, key, mode, msg)

    def exchange(n: int) -> None:
        for _ in range(n):
            if inst.pool.exchange("POST", path, body, head)[0] != 200:
                raise SystemExit("sign request failed")

    return {"client": client, "pool": exchange}


def plain_loop(alg: str, nginx):
    """bench/plain_sign.py's loop on one TLS socket to the same peer."""
    request = wire.sign_request(alg, nginx.port)
    sock = ssl._create_unverified_context().wrap_socket(socket.create_connection(("127.0.0.1", nginx.port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def loop(n: int) -> None:
        buf = b""
        for _ in range(n):
            buf = plain_sign.sign_once(sock, request, buf)

    return loop


WAIT = 50e-6  # about one loopback round trip to nginx


def layers(a, nginx, answers) -> int:
    """--layers: every depth in each round (rotating order), CPU us per signature, medians.
    The ablated module runs twice: back to back, and with a sleep where the network wait was, to
    show what the same Python code costs when it runs after the CPU idled (caches gone cold)."""
    from p11nethsm.net import pool

    module = module_loop(a.alg)
    loops = {"module": module, **layer_loops(a.alg, module.session), "plain": plain_loop(a.alg, nginx)}
    canned = answers[("POST", f"/keys/{wire.ALGS[a.alg]['key']}/sign")]
    real = pool.InstancePool.exchange

    def ablated(n: int, wait: float = 0.0) -> None:
        def answer(self, *args, **kw):
            if wait:
                time.sleep(wait)  # blocks like a read: the CPU idles until the timer fires
            return 200, canned[1], canned[2]
        pool.InstancePool.exchange = answer
        try:
            module(n)
        finally:
            pool.InstancePool.exchange = real

    def sleeps(n: int) -> None:
        for _ in range(n):
            time.sleep(WAIT)

    loops["ablated"] = ablated
    loops["ablated_wait"] = lambda n: ablated(n, WAIT)
    loops["sleep"] = sleeps
    names, cpu = list(loops), {k: [] for k in loops}
    for f in loops.values():
        f(300)  # warm-up: connections, caches
    for r in range(a.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.process_time()
            loops[name](a.n)
            cpu[name].append(1e6 * (time.process_time() - t0) / a.n)
    med = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
    rows = [("module: C_SignInit + C_Sign through dispatch.entry", med["module"]),
            ("  its REST client alone: NetHSM.sign", med["client"]),
            ("  its pool alone: InstancePool.exchange (pool, TLS, HTTP)", med["pool"]),
            ("  the module with the exchange replaced by the answer", med["ablated"]),
            (f"  the same, idle {WAIT * 1e6:.0f} us per signature (sleep's CPU subtracted)",
             med["ablated_wait"] - med["sleep"]),
            ("plain Python's exchange (bench/plain_sign.py)", med["plain"]),
            ("= PKCS#11 layers after a real wait (module - client)", med["module"] - med["client"]),
            ("= REST client above the pool (client - pool)", med["client"] - med["pool"]),
            ("= pool over plain Python (pool - plain)", med["pool"] - med["plain"])]
    print(f"\n{a.alg}: CPU us per signature, medians of {a.rounds} rounds x {a.n} signatures (rotating order)")
    for what, us in rows:
        print(f"  {what:<62} {us:7.1f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alg", default="ecdsa", choices=sorted(CKM))
    ap.add_argument("--n", type=int, default=4000, help="signatures per measured round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ablate", choices=["exchange"], help="replace the exchange by the recorded answer")
    ap.add_argument("--plain", action="store_true", help="plain Python's loop instead of the module")
    ap.add_argument("--profile", action="store_true", help="then one cProfile round on the CPU clock")
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumtime"], help="--profile's order")
    ap.add_argument("--layers", action="store_true", help="alternate the module, its REST client, its pool, the"
                    " module with the exchange ablated and plain Python; print the medians and differences")
    a = ap.parse_args(argv)
    work = tmpdir("p11inproc-")
    answers = wire.record(work, [a.alg])
    nginx = wire.Nginx(work, answers).start()
    try:
        configure(work, nginx)
        if a.layers:
            return layers(a, nginx, answers)
        loop = plain_loop(a.alg, nginx) if a.plain else module_loop(a.alg)
        if a.ablate == "exchange":  # after C_Initialize and C_Login, which need the real answers
            from p11nethsm.net import pool
            canned = answers[("POST", f"/keys/{wire.ALGS[a.alg]['key']}/sign")]
            pool.InstancePool.exchange = lambda self, *args, **kw: (200, canned[1], canned[2])
        loop(300)  # warm-up: connection, caches
        for _ in range(a.rounds):
            t0, w0 = time.process_time(), time.perf_counter()
            loop(a.n)
            t1, w1 = time.process_time(), time.perf_counter()
            print(f"{'plain' if a.plain else 'module'} {a.alg}{' (exchange ablated)' if a.ablate else ''}: "
                  f"{1e6 * (t1 - t0) / a.n:.1f} us CPU/sig  {a.n / (w1 - w0):,.0f}/s", flush=True)
        if a.profile:
            prof = cProfile.Profile(time.process_time)
            prof.runcall(loop, a.n)
            pstats.Stats(prof).sort_stats(a.sort).print_stats(35)
    finally:
        nginx.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
