"""Issue: "No PIN, password or passphrase appears in any log output at log_level Trace across the
whole test suite (checked by a test that captures all sinks)."

The plugin tests/security/logtee.py (registered in pyproject's addopts) makes every module process
of the run write a Trace copy of its log into $P11NETHSM_LOG_TEE (the pytest process records its own
p11nethsm records there too). The plugin also runs tests marked `after_all_tests` after every other
test of the session, whatever their paths, so this test runs last: it first drives login / sign / C_SetPIN / wrong PIN / SO login / logout through the .so
itself (so it never passes vacuously, even alone), then scans every captured file for every
passphrase the suite uses (logtee.SECRETS), failing with file and line.
"""

from __future__ import annotations

import os
import re

import pytest

import logtee
from secenv import MODULE, run_py, slot_yaml, write_config

pytestmark = pytest.mark.after_all_tests  # it scans the logs every other test left behind

DRIVE = r"""
import os
from tests.security.sodriver import SO, CKR_NAMES
from p11nethsm.ck.constants import CKM
so = SO()
so.ok("C_Initialize", None)
s = so.open(0, rw=True)
assert so.login(s, 1, b"opPassphrase") == 0
key = so.key(s, b"p256key")
sig = so.sign(s, key, CKM.ECDSA, b"\x11" * 32)
assert len(sig) == 64, len(sig)
so.ok("C_SetPIN", s, b"opPassphrase", 12, b"zzFinalNewPin1", 14)
so.ok("C_Logout", s)
assert so.login(s, 1, b"wrongPassphrase") == 0xA0, "wrong PIN accepted"
assert so.login(s, 1, b"zzFinalNewPin1") == 0
so.ok("C_SetPIN", s, b"zzFinalNewPin1", 14, b"opPassphrase", 12)
so.ok("C_Logout", s)
assert so.login(s, 0, b"Administrator") == 0
so.ok("C_Logout", s)
so.ok("C_CloseSession", s)
so.ok("C_Finalize", None)
print(os.getpid())
"""


def test_no_secret_in_any_captured_log(tmp_path):
    tee = os.environ.get(logtee.TEE_ENV)
    if not tee:
        pytest.fail("the logtee plugin is not active (pyproject addopts: -p tests.security.logtee)")
    if not os.path.exists(MODULE):
        pytest.skip("module not built")
    from nethsm_emulator.provision import STANDARD_KEYS
    from nethsm_emulator.testing import start_emulator

    with start_emulator(provisioned=True, keys={"p256key": STANDARD_KEYS["p256key"]}, throttle=False) as hsm:
        conf = write_config(tmp_path / "p.conf", [slot_yaml("Final", hsm.url, hsm.fingerprint, passwords=False)],
                            log_file=tmp_path / "module.log", level="Trace")
        r = run_py(DRIVE, env_extra={"P11NETHSM_CONFIG_FILE": conf}, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    own = os.path.join(tee, f"p11nethsm-{r.stdout.split()[-1]}.log")
    assert os.path.exists(own), f"the module process wrote no tee file {own}"
    text = open(own, encoding="utf-8", errors="replace").read()
    # the captured log is the real thing: calls with PIN lengths, state transitions, REST calls
    assert "C_Login(hSession=" in text and "ulPinLen=12" in text and "C_SetPIN(" in text, text[-3000:]
    assert re.search(r"--\w+--> ", text), "no state transition lines in the captured log"
    assert " Trace " in text, "no Trace-level line captured"

    secrets = re.compile("|".join(rf"(?<![A-Za-z0-9]){re.escape(s)}(?![A-Za-z0-9])"
                                  for s in sorted(logtee.SECRETS, key=len, reverse=True)))
    files = sorted(os.path.join(tee, f) for f in os.listdir(tee)) + [str(tmp_path / "module.log")]
    hits, scanned = [], 0
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        scanned += text.count("\n")
        # The suite's logs are ~1.5 M lines: a plain substring test per secret (C speed) decides
        # which files need the whole-token regex, line by line.
        if not any(s in text for s in logtee.SECRETS):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            m = secrets.search(line)
            if m and len(hits) < 30:
                hits.append(f"{path}:{lineno}: {m.group(0)!r} in {line.strip()[:300]}")
    print(f"\nscanned {len(files)} log files, {scanned} lines, for {len(logtee.SECRETS)} secrets")
    assert not hits, "passphrases in the logs:\n" + "\n".join(hits)
