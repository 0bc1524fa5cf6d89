"""Issue 10, defect 8: a key list with malformed entries (`{"id": ""}`, no id, a number, a
repeat) through the .so with pkcs11-tool: the bad entries are skipped with a warning naming each,
the good keys are listed, C_FindObjectsInit works."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from hostenv import need
from hostenv import MODULE

BAD = [{"id": ""}, {"key": "x"}, "p256key", {"id": 7}, {"id": "p256key"}]


def test_malformed_key_list_entries_are_skipped_with_a_warning(hosts_hsm):
    need("pkcs11-tool")
    inst = hosts_hsm["hsm"].instances[0]
    log = hosts_hsm["dir"] / "module.log"
    start = log.stat().st_size if log.exists() else 0
    body = json.dumps([{"id": "p256key"}, *BAD, {"id": "rsakey"}])
    inst.answer(200, body, method="GET", path=r"/api/v1/keys$")
    try:
        out = subprocess.run([shutil.which("pkcs11-tool"), "--module", MODULE, "--login", "--pin", "opPassphrase",
                              "--list-objects", "--type", "privkey"],
                             env=hosts_hsm["env"], capture_output=True, text=True, timeout=60)
    finally:
        inst.clear_faults()
    assert out.returncode == 0, out.stdout + out.stderr
    assert "label:      p256key" in out.stdout and "label:      rsakey" in out.stdout, out.stdout
    assert out.stdout.count("Private Key Object") == 2, out.stdout
    with open(log) as fh:
        fh.seek(start)
        text = fh.read()
    assert "GENERAL_ERROR" not in text
    warnings = [line for line in text.splitlines() if "GET /keys: entry" in line and "skipped" in line]
    for entry in BAD:
        assert any(f"entry {json.dumps(entry)} skipped" in w for w in warnings), (entry, warnings)
    assert any('entry {"id": "p256key"} skipped: repeated' in w for w in warnings), warnings
