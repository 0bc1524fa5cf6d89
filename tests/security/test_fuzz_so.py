"""Issue: "A fuzzer calls every C_* function with NULL pointers, invalid handles, short and huge
lengths, wrong session states and random templates: at least 100k calls, 0 crashes or hangs,
every return a valid CKR."

The fuzz run is a separate process (fuzz_child.py: the venv's python loads the .so with ctypes),
so a crash is its non-zero / signal exit and a hang is its timeout (plus faulthandler's 60 s
per-call watchdog inside). It runs against its own emulator process (provisioned, STANDARD_KEYS):
slot 0 with configured passwords, slot 1 login-required, slot 2 an instance that refuses
connections. Bulk: a seeded random generator; structure: hypothesis programs of up to 60 calls.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
from nethsm_emulator.testing import start_emulator_process

from secenv import HERE, PY, ROOT, free_port, slot_yaml, write_config

N_RANDOM = int(os.environ.get("P11NETHSM_FUZZ_CALLS", "104000"))
N_HYP = int(os.environ.get("P11NETHSM_FUZZ_EXAMPLES", "150"))
SEED = int(os.environ.get("P11NETHSM_FUZZ_SEED", "20240611"))


@pytest.fixture(scope="module")
def fuzz_hsm():
    hsm = start_emulator_process(provisioned=True, throttle=False)
    yield hsm
    hsm.stop()


def test_fuzz_every_function_through_the_so(fuzz_hsm, tmp_path):
    log = tmp_path / "module.log"
    dead = f"https://127.0.0.1:{free_port()}/api/v1"
    conf = write_config(tmp_path / "fuzz.conf", [
        slot_yaml("FuzzA", fuzz_hsm.url, fuzz_hsm.fingerprint),
        slot_yaml("FuzzB", fuzz_hsm.url, fuzz_hsm.fingerprint, passwords=False),
        slot_yaml("FuzzDown", dead, fuzz_hsm.fingerprint),
    ], log_file=log, level="Info")
    out = tmp_path / "fuzz.json"
    t0 = time.monotonic()
    try:
        r = subprocess.run([PY, "-m", "tests.security.fuzz_child", conf, str(SEED), str(N_RANDOM), str(N_HYP),
                            str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT,
                           env=dict(os.environ, P11NETHSM_CONFIG_FILE=conf))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"fuzz run hung (600 s): {(exc.stderr or b'')[-3000:]!r}")
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, f"fuzz process crashed/exited {r.returncode}:\n{r.stderr[-6000:]}"
    res = json.loads(out.read_text())
    print(f"\nfuzz: {res['calls']} calls ({res['random_calls']} seeded-random + {res['hypothesis_calls']} "
          f"hypothesis) over {res['functions']} functions in {elapsed:.1f} s, "
          f"{res['initializations']} initializations; findings: {res['n_findings']}")
    print("CKR histogram:", ", ".join(f"{k}={v}" for k, v in res["totals"].items()))
    print("slowest functions (s):", res["slowest"])
    assert res["calls"] >= min(100_000, N_RANDOM)  # smaller only when overridden for a quick run
    assert res["functions"] == 92  # every C_* of CK_FUNCTION_LIST_3_0 was called
    assert not res["findings"], "\n".join(res["findings"])
    text = log.read_text(errors="replace")
    unexpected = [m.group(0) for m in re.finditer(r".*unexpected error.*", text)]
    assert not unexpected, "\n".join(unexpected[:20])
    assert "Traceback" not in text, text[text.index("Traceback") - 2000: text.index("Traceback") + 3000]
    # the run exercised real work, not only argument errors
    for name, rv in (("C_Sign", "CKR_OK"), ("C_FindObjects", "CKR_OK"), ("C_Login", "CKR_OK"),
                     ("C_Login", "CKR_PIN_INCORRECT"), ("C_SignInit", "CKR_OK"),
                     ("C_GetTokenInfo", "CKR_TOKEN_NOT_PRESENT"), ("C_Sign", "CKR_SESSION_HANDLE_INVALID")):
        assert res["per_function"].get(name, {}).get(rv, 0) > 0, (name, rv, res["per_function"].get(name))
