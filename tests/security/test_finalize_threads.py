"""Issue: "C_Finalize joins the background threads; unloading and reloading the module works."

A python host (the venv's 3.11: host mode, so the module's threads are this interpreter's threads
and /proc/self/task counts every OS thread of the process) loads the .so on a slot whose first
instance refuses connections: the failure starts the health-check thread ("p11nethsm-health") and
the calls fail over to the emulator. C_Finalize must leave no p11nethsm thread and no extra OS task;
then dlclose, dlopen, C_Initialize and a real sign work again, three times.
"""

from __future__ import annotations

from nethsm_emulator.provision import STANDARD_KEYS
from nethsm_emulator.testing import start_emulator

from secenv import free_port, run_py, write_config

SCRIPT = r"""
import _ctypes, ctypes, os, sys, threading, time
from tests.security.sodriver import SO, CKR_NAMES
from p11nethsm.ck.constants import CKM

def tasks():
    return len(os.listdir("/proc/self/task"))

def ours():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("p11nethsm"))

base = tasks()
assert base == 1 and threading.active_count() == 1, (base, threading.enumerate())
for cycle in range(3):
    so = SO()
    so.ok("C_Initialize", None)
    s = so.open(0)
    info = ctypes.create_string_buffer(512)
    so.ok("C_GetTokenInfo", 0, info)
    key = so.key(s, b"p256key")
    assert len(so.sign(s, key, CKM.ECDSA, b"\x22" * 32)) == 64
    deadline = time.monotonic() + 10
    while "p11nethsm-health" not in ours() and time.monotonic() < deadline:
        time.sleep(0.05)
    running = ours()
    assert "p11nethsm-health" in running, f"cycle {cycle}: no health-check thread: {running}"
    assert tasks() > base
    t0 = time.monotonic()
    so.ok("C_Finalize", None)
    took = time.monotonic() - t0
    left = ours()
    assert not left, f"cycle {cycle}: threads left after C_Finalize: {left}"
    assert tasks() == base, f"cycle {cycle}: {tasks()} OS tasks after C_Finalize, {base} before"
    assert so("C_GetInfo", info) == 0x190  # CKR_CRYPTOKI_NOT_INITIALIZED
    print(f"cycle {cycle}: threads while running {running}, C_Finalize {took*1000:.0f} ms, tasks {tasks()}")
    _ctypes.dlclose(so.lib._handle)
    del so
print("ok")
"""


def test_finalize_joins_threads_and_the_module_reloads(tmp_path):
    with start_emulator(provisioned=True, keys={"p256key": STANDARD_KEYS["p256key"]}, throttle=False) as hsm:
        dead = f"https://127.0.0.1:{free_port()}/api/v1"
        conf = write_config(tmp_path / "p.conf", [f"""  - label: Threads
    operator: {{username: operator, password: opPassphrase}}
    timeout_seconds: 10
    retries: {{count: 2, delay_seconds: 0}}
    instances:
      - url: "{dead}"
        sha256_fingerprints: ["{hsm.fingerprint}"]
      - url: "{hsm.url}"
        sha256_fingerprints: ["{hsm.fingerprint}"]
"""], log_file=tmp_path / "module.log", level="Debug")
        r = run_py(SCRIPT, env_extra={"P11NETHSM_CONFIG_FILE": conf}, timeout=120)
    print(r.stdout)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr + \
        (tmp_path / "module.log").read_text()[-3000:]
