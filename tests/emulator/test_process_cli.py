"""The emulator as a separate process: CLI output, persistence (boot Locked, same
certificate), curl-only session, control endpoint from outside."""
from __future__ import annotations

import os
import re
import subprocess

from emuclient import Client

from nethsm_emulator.testing import start_emulator, start_emulator_process

ADMIN, OP = ("admin", "Administrator"), ("operator", "opPassphrase")
HERE = os.path.dirname(__file__)


def test_cli_prints_fingerprint_lines_and_state_persists(tmp_path):
    state = str(tmp_path / "state")
    run = start_emulator_process(instances=2, provisioned=True, state_dir=state)
    try:
        assert len(run.urls) == 2
        assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", run.fingerprint)
        c = Client(run.urls[1], run.fingerprint)       # pinned fingerprint
        assert c.get("/keys/rsakey", OP).status == 200  # standard keys, shared by instance 2
        inst = run.instances[0]
        inst.reset_requests()  # forget the --provision traffic
        inst.fail(503, path="/health/state", count=1)
        c0 = Client(run.urls[0], run.fingerprint, check=False)
        assert c0.get("/health/state").status == 503
        assert inst.request_count(path="/health/state") == 1
    finally:
        run.stop()
    again = start_emulator_process(instances=1, state_dir=state)
    try:
        assert again.fingerprint == run.fingerprint     # certificate reused
        c = Client(again.urls[0], again.fingerprint)
        assert c.get("/health/state").json() == {"state": "Locked"}  # boots Locked
        assert c.post("/unlock", json={"passphrase": "UnlockPassphrase"}).status == 204
        assert c.get("/keys/rsakey", OP).status == 200
    finally:
        again.stop()


def test_curl_only_session():
    with start_emulator() as run:
        r = subprocess.run(["bash", os.path.join(HERE, "curl_session.sh"), run.url],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "curl session OK" in r.stdout
