"""`make demo` (demo/run_demo.py) runs end to end and cleans up after itself, also on failure."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docs_helpers import ROOT, need_module

DEMO = ROOT / "demo" / "run_demo.py"


def _need_clients():
    need_module()
    import shutil

    for tool in ("pkcs11-tool", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (make deps)")


def _workdir_and_pid(out: str) -> tuple[Path, int]:
    work = re.search(r"work directory: (\S+)", out)
    pid = re.search(r"emulator pid (\d+)", out)
    assert work and pid, out
    return Path(work.group(1)), int(pid.group(1))


def _assert_cleaned_up(work: Path, pid: int):
    assert not work.exists(), f"{work} was left behind"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    # the demo waited for its child; a zombie would be owned by the (gone) demo process
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "zombie" in status.read_text(), f"emulator pid {pid} still running"


def _run(*args, timeout=150):
    return subprocess.run([sys.executable, str(DEMO), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_demo_runs_end_to_end_and_cleans_up():
    _need_clients()
    r = _run()
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "DEMO OK" in r.stdout
    # numbered human-readable steps, the real clients, and each promised operation
    steps = re.findall(r"^\[(\d+)\] ", r.stdout, re.M)
    assert [int(s) for s in steps] == list(range(1, len(steps) + 1)) and len(steps) >= 15
    for needle in ("nethsm-emulator --listen 127.0.0.1:0", "sha256_fingerprints", "check-config",
                   "verdict: OK", "pkcs11-tool --module '$MODULE' -L", "--keypairgen --key-type EC:prime256v1",
                   "--keypairgen --key-type rsa:2048", "Verified OK", "openssl req -new -x509 -engine pkcs11",
                   "--write-object rsa.cert.der --type cert", "identical to the certificate written",
                   "-m RSA-PKCS -i", "-m RSA-PKCS-OAEP", "(matches)", "-->"):
        assert needle in r.stdout, needle
    # the last step: p11nethsm trace on the demo's own log (a session timeline and the summary)
    assert re.search(r"\$ p11nethsm trace p11nethsm\.log --pid \d+", r.stdout)
    assert re.search(r"#\d+ C_SignInit\(.*pMechanism=CKM_ECDSA_SHA256.*\) = CKR_OK", r.stdout)
    assert re.search(r"net POST https://\S+/sign -> 200", r.stdout)
    assert re.search(r"calls by CKR: CKR_OK \d+", r.stdout)
    _assert_cleaned_up(*_workdir_and_pid(r.stdout))


def test_demo_cleans_up_on_failure():
    _need_clients()
    r = _run("--fail-at-step", "6")
    assert r.returncode == 1
    assert "DEMO FAILED at step 6" in r.stderr
    _assert_cleaned_up(*_workdir_and_pid(r.stdout))


def test_demo_cleans_up_when_interrupted():
    _need_clients()
    proc = subprocess.Popen([sys.executable, "-u", str(DEMO)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out = []
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        out.append(line)
        if line.startswith("[4] ") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(out) + rest
    assert proc.returncode == 130, text
    assert "interrupted (SIGTERM)" in text
    _assert_cleaned_up(*_workdir_and_pid(text))


def test_make_demo_runs_this_script():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n\t(.+)$", makefile, re.M)
    assert recipe and "demo/run_demo.py" in recipe.group(1)
