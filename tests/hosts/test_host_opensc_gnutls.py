"""OpenSC `pkcs11-tool --test-fork` (C_Initialize in the parent, fork, the child must get a working
module after its own C_Initialize) and GnuTLS `p11tool --provider <so> --list-tokens` (label,
manufacturer) against the built module."""

from __future__ import annotations

import re
import subprocess

from hostenv import LABEL, need
from hostenv import MODULE


def test_pkcs11_tool_test_fork_passes(hosts_hsm):
    need("pkcs11-tool")
    r = subprocess.run(["pkcs11-tool", "--module", MODULE, "--test-fork"], env=hosts_hsm["env"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    # the child ran (pkcs11-tool exits non-zero if its C_Initialize is not CKR_OK)
    assert "Calling C_Initialize in forked child process" in out, out
    assert "failed" not in out.lower() and "CKR_" not in out.replace("CKR_OK", ""), out


def test_p11tool_list_tokens_shows_the_token(hosts_hsm):
    need("p11tool")
    r = subprocess.run(["p11tool", "--provider", MODULE, "--list-tokens"], env=hosts_hsm["env"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    blocks = r.stdout.split("Token ")
    ours = [b for b in blocks if re.search(rf"Label:\s*{LABEL}\s*$", b, re.M)]
    assert len(ours) == 1, r.stdout
    assert re.search(r"Manufacturer:\s*Nitrokey", ours[0]), ours[0]
    assert re.search(rf"URL:\s*pkcs11:.*token={LABEL}", ours[0]), ours[0]
