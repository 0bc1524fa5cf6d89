"""Found by the chaos soak: the NetHSM generated the key, then reading it back failed (the
instance was locked in between), and C_GenerateKeyPair returned an error, so the application
believed it had no key while the NetHSM had one. Now the call succeeds and the key's objects are
read at first use. Through the .so with pkcs11-tool."""

from __future__ import annotations

import json
import shutil
import subprocess

from hostenv import need
from hostenv import MODULE


def test_keygen_succeeds_when_reading_the_new_key_back_fails_once(hosts_hsm):
    need("pkcs11-tool")
    hsm = hosts_hsm["hsm"]
    inst = hsm.instances[0]
    inst.fail(503, method="GET", path=r"/api/v1/keys/ZZ$", count=1)  # the read-back after generation
    try:
        out = subprocess.run([shutil.which("pkcs11-tool"), "--module", MODULE, "--session-rw", "--login",
                              "--login-type", "so", "--so-pin", "Administrator", "--keypairgen",
                              "--key-type", "EC:prime256v1", "--id", "5a5a"],
                             env=hosts_hsm["env"], capture_output=True, text=True, timeout=60)
    finally:
        inst.clear_faults()
    client = hsm.client()
    try:
        ids = {k["id"] for k in json.loads(client.request("GET", "/keys", hsm.admin).data)}
        assert "ZZ" in ids  # the NetHSM generated it either way
        assert inst.request_count(method="GET", path=r"/keys/ZZ$", status=503) == 1  # the fault was hit
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Key pair generated" in out.stdout and "EC_POINT" in out.stdout, out.stdout
    finally:
        client.request("DELETE", "/keys/ZZ", hsm.admin, expect=None)
