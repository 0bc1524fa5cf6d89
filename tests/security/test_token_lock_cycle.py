"""Issue: "Locked device: token disappears (slot list with tokenPresent) and comes back after
unlock" — end to end through the built .so, with the device locked and unlocked while a host
process has the module initialized and a session open."""

from __future__ import annotations

from nethsm_emulator.testing import start_emulator_process

from secenv import run_py, slot_yaml, write_config

SCRIPT = r"""
import ctypes, sys, time
from tests.security.sodriver import SO
from p11nethsm.ck.constants import CKM, CKR
from nethsm_emulator.control import ControlClient

device = ControlClient(sys.argv[1]).instance(0)
so = SO()
so.ok("C_Initialize", None)

def present():
    n = ctypes.c_ulong()
    so.ok("C_GetSlotList", 1, None, n)
    return n.value

def rv_name(rv):
    return CKR(rv).name

assert present() == 1
s = so.open(0)
key = so.key(s, b"p256key")
assert len(so.sign(s, key, CKM.ECDSA, b"\x22" * 32)) == 64

device.lock()
so.ok("C_SignInit", s, so.mech(CKM.ECDSA), key)
sig, n = ctypes.create_string_buffer(64), ctypes.c_ulong(64)
rv = so("C_Sign", s, b"\x22" * 32, 32, sig, n)
assert rv == CKR.DEVICE_REMOVED, rv_name(rv)       # 412 on an open session
assert present() == 0                                # ...and the token is gone at once
h = ctypes.c_ulong()
rv = so("C_OpenSession", 0, 6, None, None, h)
assert rv == CKR.TOKEN_NOT_PRESENT, rv_name(rv)

device.unlock()
deadline = time.monotonic() + 5
while present() == 0 and time.monotonic() < deadline:
    time.sleep(0.2)
assert present() == 1, "the token did not come back after unlock"
s2 = so.open(0)
assert len(so.sign(s2, so.key(s2, b"p256key"), CKM.ECDSA, b"\x22" * 32)) == 64
so.ok("C_Finalize", None)
print("ok")
"""


def test_locked_device_token_disappears_and_comes_back_after_unlock(tmp_path):
    hsm = start_emulator_process(provisioned=True, throttle=False)  # with the standard keys
    try:
        conf = write_config(tmp_path / "p.conf", [slot_yaml("LockCycle", hsm.url, hsm.fingerprint)],
                            log_file=tmp_path / "module.log")
        r = run_py(SCRIPT, hsm.control_url, env_extra={"P11NETHSM_CONFIG_FILE": conf}, timeout=120)
    finally:
        hsm.stop()
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr + \
        (tmp_path / "module.log").read_text()[-3000:]
