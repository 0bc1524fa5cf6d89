"""Issue 10, defect 2: every API call honours the documented worst case
`(retries.count + 1) * timeout_seconds + 3` s whatever the peer does, through the .so.

`timeout_seconds` used to bound each socket read, so a peer that dripped its answer (a byte, a header
line, a chunk at a time, each well within the timeout) kept C_Sign running as long as it liked.
A TLS proxy in front of the emulator (tests/net/stub_server.py) forwards every request except the
sign request, which gets one of the misbehaviours below; a python host (subprocess) drives the .so
and times each call itself. Before the fix every case ran until the proxy gave up (60 s).
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time

import pytest
from nethsm_emulator.provision import STANDARD_KEYS
from nethsm_emulator.testing import start_emulator

from secenv import PY, ROOT, write_config
from test_network_garbage_so import Proxy

from tests.net.certs import make_cert

from p11nethsm.net.pool import MAX_BODY

class DripProxy(Proxy):
    """The garbage test's proxy; the rule's answer is a misbehaviour acting on the handler."""

    def route(self, h):
        rule = self.rule
        if rule is not None and re.search(rule[0], h.path.split("?")[0]):
            with self.lock:
                self.hits += 1
            return rule[1](h)
        return super().route(h)


TIMEOUT = 2.0
DRIP_FOR = 60.0  # how long a misbehaving answer goes on at most (the proxy's patience)


def _drip(h, head: bytes, piece, every: float):
    """Write `head`, then `piece(i)` every `every` seconds until the client goes or DRIP_FOR passes."""
    end = time.monotonic() + DRIP_FOR
    try:
        h.wfile.write(head)
        i = 0
        while time.monotonic() < end and not h.server.stub.stop_event.is_set():
            h.wfile.write(piece(i))
            i += 1
            time.sleep(every)
    except OSError:
        pass  # the client gave up: what the module must do
    h.close_connection = True


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
STATUS = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"signature":"AAAA"}'
MISBEHAVIOURS = {
    # the whole answer, one byte every 0.25 s (each read gets a byte well within the timeout)
    "slow drip": lambda h: _drip(h, b"", lambda i: STATUS[i:i + 1] if i < len(STATUS) else b"", 0.25),
    # a status line, then header lines for ever
    "endless headers": lambda h: _drip(h, OK_HEAD, lambda i: b"X-Pad-%d: x\r\n" % i, 0.25),
    # a chunked body whose chunks never stop
    "endless chunked body": lambda h: _drip(h, OK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n",
                                            lambda i: b"1\r\n \r\n", 0.1),
    # a body announced at the size cap, arriving at 10 KB/s
    "body never ends within the cap": lambda h: _drip(h, OK_HEAD + b"Content-Length: %d\r\n\r\n" % MAX_BODY,
                                                      lambda i: b" " * 1024, 0.1),
}

CHILD = r"""
import ctypes, sys, time
from tests.security.sodriver import SO, CKR_NAMES
from p11nethsm.ck.constants import CKM
so = SO()
so.ok("C_Initialize", None)
sessions = {}
for line in sys.stdin:
    cmd, slot = line.split()
    slot = int(slot)
    if slot not in sessions:
        s = so.open(slot)
        sessions[slot] = (s, so.key(s, b"p256key"))
    s, key = sessions[slot]
    so.ok("C_SignInit", s, so.mech(CKM.ECDSA), key)
    n = ctypes.c_ulong(256)
    t = time.monotonic()
    rv = so("C_Sign", s, b"\x33" * 32, 32, ctypes.create_string_buffer(256), n)
    sys.stdout.write(f"{CKR_NAMES.get(rv, hex(rv))} {time.monotonic() - t:.3f}\n")
    sys.stdout.flush()
"""

# slot index -> (retries.count, the documented bound in seconds)
SLOTS = {0: (0, (0 + 1) * TIMEOUT + 3), 1: (1, (1 + 1) * TIMEOUT + 3)}


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    d = tmp_path_factory.mktemp("deadlines")
    pair, _, _ = make_cert("keyfender")
    (d / "c.pem").write_bytes(pair.cert_pem)
    (d / "c.key").write_bytes(pair.key_pem)
    fp = ":".join(f"{b:02X}" for b in pair.sha256)
    with start_emulator(provisioned=True, keys={"p256key": STANDARD_KEYS["p256key"]}, throttle=False) as hsm:
        proxy = DripProxy(hsm, str(d / "c.pem"), str(d / "c.key"))
        inst = f"""    timeout_seconds: {TIMEOUT}
    instances:
      - url: "{proxy.stub.url}"
        sha256_fingerprints: ["{fp}"]
"""
        slots = []
        for index, (count, _) in SLOTS.items():
            retries = f"    retries: {{count: {count}, delay_seconds: 0.2}}\n" if count else ""
            slots.append(f"  - label: Deadline{index}\n    operator: {{username: operator, password: opPassphrase}}\n"
                         + retries + inst)
        log = d / "module.log"
        conf = write_config(d / "p.conf", slots, log_file=log, level="Info")
        child = subprocess.Popen([PY, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                 env=dict(os.environ, P11NETHSM_CONFIG_FILE=conf))

        def sign(slot: int, patience: float) -> tuple[str, float]:
            child.stdin.write(f"sign {slot}\n")
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], patience)
            if not ready:
                child.kill()
                pytest.fail(f"C_Sign on slot {slot}: no answer within {patience:.0f} s (the call hangs)")
            line = child.stdout.readline()
            if not line:
                child.wait(5)
                pytest.fail(f"module host died (rc {child.returncode}): {child.stderr.read()[-3000:]}")
            rv, elapsed = line.split()
            return rv, float(elapsed)

        yield proxy, sign, log
        proxy.rule = None
        child.stdin.close()
        child.wait(30)
        proxy.stub.stop()


@pytest.mark.parametrize("slot", list(SLOTS), ids=[f"retries{c}" for c, _ in SLOTS.values()])
@pytest.mark.parametrize("kind", list(MISBEHAVIOURS))
def test_sign_ends_within_the_documented_bound_whatever_the_peer_does(rig, kind, slot):
    proxy, sign, log = rig
    count, bound = SLOTS[slot]
    proxy.rule = None
    assert sign(slot, 30) == ("CKR_OK", pytest.approx(0, abs=30)), "the healthy path works first"
    hits = proxy.hits
    proxy.rule = (r"/keys/p256key/sign$", MISBEHAVIOURS[kind])
    rv, elapsed = sign(slot, bound + 10)
    proxy.rule = None
    assert proxy.hits - hits == count + 1, "every attempt met the misbehaving peer"
    # a guarantee, not a speed: README "Network behaviour", (retries.count + 1) * timeout_seconds + 3
    assert elapsed <= bound, f"{kind}: C_Sign took {elapsed:.1f} s, bound {bound:.0f} s"
    assert rv == "CKR_DEVICE_ERROR", f"{kind}: {rv}"
    assert sign(slot, 30)[0] == "CKR_OK", "the module works again once the peer behaves"
    assert "Traceback" not in log.read_text(errors="replace")
