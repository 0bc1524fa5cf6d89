"""Issue: "Garbage from the network (truncated JSON, wrong types, huge bodies, wrong content types)
gives a CKR and a log line, never an exception escaping or a hang" — end to end, through the .so.

A TLS proxy in front of the emulator (tests/net/stub_server.py, its own pinned certificate)
forwards every request, except those matching the active rule, which get garbage. A python host
(subprocess, host mode) drives the .so one command at a time over a pipe, so the parent switches
the rule between steps. Each case: fresh C_Initialize (no cached presence or key list), the call
under test, its CKR (CKR_DEVICE_ERROR; a garbage /health/state means the token is not present:
CKR_TOKEN_NOT_PRESENT, docs/core-behaviour.md), an Error log line "bad response" naming the path,
no traceback, and the module still works afterwards. (Client-level unit tests: tests/net/test_garbage.py.)
"""

from __future__ import annotations

import http.client
import os
import re
import select
import ssl
import subprocess
import sys
import threading

import pytest
from nethsm_emulator.provision import STANDARD_KEYS
from nethsm_emulator.testing import start_emulator

from secenv import PY, ROOT, write_config

from tests.net.certs import make_cert
from tests.net.stub_server import StubServer

from p11nethsm.net.pool import MAX_BODY  # noqa: E402

J = "application/json"
GARBAGE = {
    "truncated json": (200, J, b'{"state":"Operat'),
    "not json": (200, J, b"<html>oops</html>"),
    "wrong types": (200, J, b'{"state":1,"id":[],"deviceId":5,"signature":{},"random":7,"mechanisms":"x","keys":3}'),
    "json list": (200, J, b'[{"id":"p256key"},{"key":1}]'),
    "null": (200, J, b"null"),
    "empty body": (200, J, b""),
    "deeply nested": (200, J, b"[" * 50000 + b"]" * 50000),
    "wrong content type": (200, "text/html", b'{"state":"Operational"}'),
    "huge body": (200, J, b'{"state":"' + b"A" * (MAX_BODY + 10) + b'"}'),
}

CHILD = r"""
import ctypes, sys
from tests.security.sodriver import SO, CKR_NAMES
from p11nethsm.ck.constants import CKA, CKM, CKO
so = SO()
s = key = None
def reinit():
    global s, key
    so("C_Finalize", None)
    so.ok("C_Initialize", None)
    s = key = None
def opensession(slot="0"):
    global s
    s = so.open(int(slot))
    return 0
def token():
    return so("C_GetTokenInfo", 0, ctypes.create_string_buffer(512))
def find():
    arr, n = so.template([(CKA.CLASS, bytes(ctypes.c_ulong(CKO.PRIVATE_KEY)))])
    rv = so("C_FindObjectsInit", s, arr, n)
    if rv:
        return rv
    buf, cnt = (ctypes.c_ulong * 64)(), ctypes.c_ulong()
    rv = so("C_FindObjects", s, buf, 64, cnt)
    so("C_FindObjectsFinal", s)
    return rv
def signinit():
    global key
    key = so.key(s, b"p256key")
    return so("C_SignInit", s, so.mech(CKM.ECDSA), key)
def sign():
    n = ctypes.c_ulong(256)
    return so("C_Sign", s, b"\x33" * 32, 32, ctypes.create_string_buffer(256), n)
def login():
    return so.login(s, 1, b"opPassphrase")
def random():
    return so("C_GenerateRandom", s, ctypes.create_string_buffer(64), 64)
for line in sys.stdin:
    cmd, *args = line.split()
    try:
        rv = globals()[cmd](*args)
        out = CKR_NAMES.get(rv, hex(rv)) if isinstance(rv, int) else "done"
    except AssertionError as exc:
        out = f"failed {exc}".replace("\n", " ")
    sys.stdout.write(out + "\n")
    sys.stdout.flush()
"""


class Proxy:
    def __init__(self, hsm, cert, key):
        self.target = hsm.url.split("/api/v1")[0].split("//")[1]
        self.rule = None  # (path regex, (status, ctype, body))
        self.hits = 0
        self.lock = threading.Lock()
        self.ctx = ssl._create_unverified_context()
        self.stub = StubServer(cert, key, route=self.route).start()

    def route(self, h):
        rule = self.rule
        if rule is not None and re.search(rule[0], h.path.split("?")[0]):
            with self.lock:
                self.hits += 1
            return rule[1]
        host, port = self.target.split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=self.ctx, timeout=30)
        headers = {k: v for k, v in h.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        conn.request(h.command, h.path, body=h.body or None, headers=headers)
        r = conn.getresponse()
        body = r.read()
        ctype = r.getheader("Content-Type")
        conn.close()
        return r.status, ctype, body


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    d = tmp_path_factory.mktemp("garbage")
    pair, _, _ = make_cert("keyfender")
    (d / "c.pem").write_bytes(pair.cert_pem)
    (d / "c.key").write_bytes(pair.key_pem)
    fp = ":".join(f"{b:02X}" for b in pair.sha256)
    with start_emulator(provisioned=True, keys={"p256key": STANDARD_KEYS["p256key"]}, throttle=False) as hsm:
        proxy = Proxy(hsm, str(d / "c.pem"), str(d / "c.key"))
        inst = f"""    timeout_seconds: 10
    instances:
      - url: "{proxy.stub.url}"
        sha256_fingerprints: ["{fp}"]
"""
        log = d / "module.log"
        conf = write_config(d / "p.conf", [
            "  - label: Garbage\n    operator: {username: operator, password: opPassphrase}\n"
            "    administrator: {username: admin, password: Administrator}\n" + inst,
            "  - label: GarbageLogin\n    operator: {username: operator}\n" + inst,
        ], log_file=log, level="Info")
        child = subprocess.Popen([PY, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                 env=dict(os.environ, P11NETHSM_CONFIG_FILE=conf))

        def do(cmd: str, timeout: float = 30) -> str:
            child.stdin.write(cmd + "\n")
            child.stdin.flush()
            ready, _, _ = select.select([child.stdout], [], [], timeout)
            if not ready:
                child.kill()
                pytest.fail(f"{cmd}: no answer within {timeout} s (hang)")
            line = child.stdout.readline()
            if not line:
                child.wait(5)
                pytest.fail(f"{cmd}: module host died (rc {child.returncode}): {child.stderr.read()[-3000:]}")
            return line.strip()

        yield proxy, do, log
        child.stdin.close()
        child.wait(30)
        proxy.stub.stop()


# (case name, setup commands, rule path, command under test, expected CKR)
OPS = {
    "C_GetTokenInfo /health/state": (["reinit"], r"/health/state$", "token", "CKR_TOKEN_NOT_PRESENT"),
    # documented fallback: the serial number is derived from the config (Warn line), the call succeeds
    "C_GetTokenInfo /system/info": (["reinit"], r"/system/info$", "token", "CKR_OK"),
    "C_FindObjects /keys": (["reinit", "opensession"], r"/keys", "find", "CKR_DEVICE_ERROR"),
    "C_Sign": (["reinit", "opensession", "signinit"], r"/keys/p256key/sign$", "sign", "CKR_DEVICE_ERROR"),
    "C_Login": (["reinit", "opensession 1"], r"/users/operator$", "login", "CKR_DEVICE_ERROR"),
    "C_GenerateRandom": (["reinit", "opensession"], r"/random$", "random", "CKR_DEVICE_ERROR"),
}


@pytest.mark.parametrize("op", list(OPS))
def test_garbage_answer_gives_a_ckr_and_a_log_line(rig, op):
    proxy, do, log = rig
    setup, path, cmd, expected = OPS[op]
    for kind, answer in GARBAGE.items():
        proxy.rule = None
        for step in setup:
            assert do(step) in ("done", "CKR_OK"), (op, kind, step)
        before = log.stat().st_size if log.exists() else 0
        hits = proxy.hits
        proxy.rule = (path, answer)
        rv = do(cmd)
        proxy.rule = None
        assert proxy.hits > hits, f"{op}/{kind}: the garbage was never requested"
        assert rv == expected, f"{op}/{kind}: {rv}"
        with open(log, errors="replace") as fh:
            fh.seek(before)
            new = fh.read()
        logged = path.strip("$")
        assert re.search(rf" (Error|Warn) .*{logged}", new), f"{op}/{kind}: no log line:\n{new[-2000:]}"
        assert "Traceback" not in new and "unexpected error" not in new, new[-4000:]
    # and the module is fine afterwards
    for step in setup:
        assert do(step) in ("done", "CKR_OK")
    assert do(cmd) == "CKR_OK"
