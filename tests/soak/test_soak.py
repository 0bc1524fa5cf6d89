"""The chaos soak's short variant (tests/soak/soak.py; `make soak` runs it for minutes): a few
seconds of the realistic mix from 8 threads through the .so against two emulator instances under
random faults, with forks. Passes only with 0 violations and work actually done under faults."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "p11nethsm", "libnethsm_pkcs11.so")


@pytest.mark.skipif(not os.path.exists(MODULE), reason="module not built (make build)")
def test_short_chaos_soak_has_no_violations():
    out = subprocess.run([sys.executable, os.path.join(HERE, "soak.py"), "--duration", "12", "--seed", "7",
                          "--fork-every", "3"], capture_output=True, text=True, timeout=400)
    print(out.stdout)
    m = re.search(r"^\|\s*(\d+) \|\s*(\d+) \|\s*(\d+) \|\s*(\d+) \|$", out.stdout, re.M)
    assert m, out.stdout + out.stderr
    calls, faults, forks, violations = map(int, m.groups())
    assert out.returncode == 0 and violations == 0, out.stdout + out.stderr
    assert calls > 200 and faults >= 3 and forks >= 2, out.stdout
    assert "forks: " in out.stdout and "signed" in out.stdout, out.stdout  # a child did sign
