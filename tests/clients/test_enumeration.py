"""HTTP requests of a full enumeration of 1000 keys (the vendor module needs 2N+1: GET /keys,
then GET /keys/{id} and GET /keys/{id}/cert per key).

Ours (see p11nethsm/objects/store.py): N+1 for key objects; + one certificate probe per key only
when the template can match certificates; the next enumeration in the same process is 1 request."""

from __future__ import annotations

import json
import re
import time

import pytest

from clientenv import ADMIN, MODULE, need, write_conf
from nethsm_emulator.testing import start_emulator

N = 1000


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    need("pkcs11-tool")
    work = tmp_path_factory.mktemp("enum")
    with start_emulator(provisioned=True, keys={}, throttle=False) as hsm:
        c = hsm.client()
        t = time.monotonic()
        for i in range(N):
            c.request("POST", "/keys/generate", ADMIN,
                      {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"], "id": f"key{i:04d}"})
        conf = write_conf(work / "p11nethsm.conf", hsm, work / "module.log")
        print(f"\n{N} keys generated in {time.monotonic() - t:.1f} s")
        yield hsm, work, conf


def keys_requests(inst) -> dict:
    out = {}
    for e in inst.requests():
        path = re.sub(r"/keys/[^/]+", "/keys/{id}", e["path"].split("/api/v1", 1)[-1])
        if path.startswith("/keys"):
            out[path] = out.get(path, 0) + 1
    return out


def run_tool(big, *args):
    import os
    import subprocess

    hsm, work, conf = big
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=str(conf))
    hsm.instances[0].reset_requests()
    t = time.monotonic()
    r = subprocess.run(["pkcs11-tool", "--module", str(MODULE), *args], env=env, capture_output=True, timeout=600)
    elapsed = time.monotonic() - t
    assert r.returncode == 0, r.stderr.decode()
    return keys_requests(hsm.instances[0]), elapsed, r.stdout.decode()


def test_private_key_enumeration_costs_n_plus_1(big):
    """p11tool --list-privkeys searches with CKA_CLASS = CKO_PRIVATE_KEY: no certificate probe."""
    import os
    import subprocess

    need("p11tool")
    hsm, work, conf = big
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=str(conf), GNUTLS_PIN="opPassphrase")
    hsm.instances[0].reset_requests()
    t = time.monotonic()
    r = subprocess.run(["p11tool", "--provider", str(MODULE), "--login", "--list-privkeys",
                        "pkcs11:token=NetHSM-emu"], env=env, capture_output=True, timeout=600)
    elapsed = time.monotonic() - t
    assert r.returncode == 0, r.stderr.decode()
    counts = keys_requests(hsm.instances[0])
    print(f"\np11tool --list-privkeys, {N} keys: {counts} in {elapsed:.1f} s")
    assert r.stdout.decode().count("Type: Private key") == N
    assert counts == {"/keys": 1, "/keys/{id}": N}


def test_full_enumeration_with_certificates(big):
    counts, elapsed, out = run_tool(big, "-O")
    print(f"\npkcs11-tool -O (all objects), {N} keys: {counts} in {elapsed:.1f} s")
    assert out.count("Private Key Object") == N and out.count("Public Key Object") == N
    assert counts.get("/keys", 0) == 1 and counts.get("/keys/{id}", 0) == N
    # pkcs11-tool -O searches with an empty template (even with --type): certificates must be found
    # too, so each key's certificate is probed once (cached for CERT_TTL afterwards)
    assert counts.get("/keys/{id}/cert", 0) == N


def test_second_enumeration_in_the_same_process_is_one_request(big, monkeypatch):
    from p11calls import Entry as P11
    from p11nethsm import dispatch, library, logging_setup
    from p11nethsm.ck.constants import CKA, CKO

    hsm, work, conf = big
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", str(conf))
    p = P11(dispatch.entry)
    p.ok("C_Initialize", None)
    try:
        s = p.open()
        hsm.instances[0].reset_requests()
        t = time.monotonic()
        assert len(p.find(s, [])) == 2 * N
        cold = keys_requests(hsm.instances[0])
        t_cold = time.monotonic() - t
        hsm.instances[0].reset_requests()
        t = time.monotonic()
        assert len(p.find(s, [])) == 2 * N
        t_warm = time.monotonic() - t
        warm = keys_requests(hsm.instances[0])
        print(f"\nin-process full find: cold {cold} {t_cold:.2f} s; warm {warm} {t_warm:.3f} s")
        assert warm == {"/keys": 1}
        hsm.instances[0].reset_requests()
        assert len(p.find(s, [p.cls(CKO.PRIVATE_KEY)])) == N
        assert keys_requests(hsm.instances[0]) == {"/keys": 1}
        # one key deleted elsewhere, one created: seen by the next enumeration
        c = hsm.client()
        c.request("DELETE", "/keys/key0007", ADMIN)
        c.request("POST", "/keys/generate", ADMIN, {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"],
                                                     "id": "newcomer"})
        hsm.instances[0].reset_requests()
        hs = p.find(s, [p.cls(CKO.PRIVATE_KEY)])
        assert len(hs) == N and keys_requests(hsm.instances[0]) == {"/keys": 1, "/keys/{id}": 1}
        assert p.find(s, [(CKA.ID, b"key0007")]) == []
        _ = json
    finally:
        dispatch.entry(1, 0)
        logging_setup.reset()
