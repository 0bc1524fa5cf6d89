"""The built module (.so) through real consumers (pkcs11-tool, a multithreaded C host) against the
NetHSM emulator: two slots, one cluster Locked (no token), one Operational."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from p11nethsm.ck.functions import FUNCTIONS

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "p11nethsm", "libnethsm_pkcs11.so")
PKCS11_TOOL = shutil.which("pkcs11-tool")

pytestmark = [
    pytest.mark.skipif(not os.path.exists(MODULE), reason="module not built (python libshim/build.py)"),
    pytest.mark.skipif(PKCS11_TOOL is None, reason="pkcs11-tool (opensc) not installed"),
]

testing = pytest.importorskip("nethsm_emulator.testing")


@pytest.fixture(scope="module")
def clusters():
    locked = testing.start_emulator(provisioned=True, throttle=False)
    good = testing.start_emulator(provisioned=True, throttle=False)
    locked.emulator.set_state("Locked")
    yield locked, good
    locked.stop()
    good.stop()


@pytest.fixture(scope="module")
def config(clusters, tmp_path_factory):
    locked, good = clusters
    path = tmp_path_factory.mktemp("so") / "p11nethsm.conf"
    log = path.parent / "p11nethsm.log"
    path.write_text(f"""
log_level: Debug
log_file: {log}
slots:
  - label: LockedHSM
    operator: {{username: operator}}
    administrator: {{username: admin}}
    instances: [{{url: "{locked.url}", sha256_fingerprints: ["{locked.fingerprint}"]}}]
  - label: GoodHSM
    operator: {{username: operator}}
    administrator: {{username: admin}}
    instances: [{{url: "{good.url}", sha256_fingerprints: ["{good.fingerprint}"]}}]
""")
    return str(path), str(log)


def tool(config, *args, check=False):
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=config[0])
    out = subprocess.run([PKCS11_TOOL, "--module", MODULE, *args], env=env, capture_output=True, text=True,
                         timeout=60)
    return out


def test_info_slots_tokens_mechanisms(config):
    out = tool(config, "-I", "-L", "-T", "-M")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Cryptoki version 3.0" in text and "Manufacturer     Nitrokey" in text
    # with -T only the slot whose cluster is Operational is listed
    assert "(0x1): GoodHSM" in text and "LockedHSM" not in text
    assert "token label        : GoodHSM" in text
    assert "token flags        : login required, rng, token initialized, PIN initialized" in text
    assert "pin min/max        : 10/200" in text
    assert "SHA256-RSA-PKCS" in text and "ECDSA" in text
    # -L lists every slot; the Locked cluster's slot is empty (no token)
    every = tool(config, "-L").stdout
    assert re.search(r"Slot 0 \(0x0\): LockedHSM\s*\n\s*\(empty\)", every), every
    assert "Slot 1 (0x1): GoodHSM" in every


def _login_rv(out):
    m = re.search(r"C_Login failed: rv = (\w+)", out.stderr)
    return m.group(1) if m else "CKR_OK"


def test_login_with_right_pin(config):
    out = tool(config, "--slot", "1", "--login", "--pin", "opPassphrase", "--list-objects")
    assert _login_rv(out) == "CKR_OK", out.stderr


def test_login_with_wrong_pin_is_pin_incorrect(config):
    out = tool(config, "--slot", "1", "--login", "--pin", "wrongPassphrase", "--list-objects")
    assert out.returncode != 0 and _login_rv(out) == "CKR_PIN_INCORRECT", out.stderr


def test_so_login_on_a_rw_session(config):
    out = tool(config, "--slot", "1", "--session-rw", "--login", "--login-type", "so", "--so-pin", "Administrator",
               "--list-objects")
    assert _login_rv(out) == "CKR_OK", out.stderr


def test_so_login_on_a_read_only_session_is_refused_per_spec(config):
    """pkcs11-tool opens read-only sessions unless told otherwise; the spec (and SoftHSM) refuse
    an SO login while a read-only session exists."""
    out = tool(config, "--slot", "1", "--login", "--login-type", "so", "--so-pin", "Administrator", "--list-objects")
    assert _login_rv(out) == "CKR_SESSION_READ_ONLY_EXISTS", out.stderr


def test_login_on_locked_cluster_finds_no_token(config):
    out = tool(config, "--slot", "0", "--login", "--pin", "opPassphrase", "--list-objects")
    assert out.returncode != 0
    assert "CKR_TOKEN_NOT_PRESENT" in out.stderr or "token not present" in out.stderr.lower(), out.stderr


def test_change_pin_and_back(config):
    out = tool(config, "--slot", "1", "--login", "--pin", "opPassphrase", "--change-pin", "--new-pin", "opPassphrase2")
    assert out.returncode == 0, out.stderr
    assert _login_rv(tool(config, "--slot", "1", "--login", "--pin", "opPassphrase", "--list-objects")) == \
        "CKR_PIN_INCORRECT"
    out = tool(config, "--slot", "1", "--login", "--pin", "opPassphrase2", "--change-pin", "--new-pin", "opPassphrase")
    assert out.returncode == 0, out.stderr


def test_no_pin_in_the_log(config):
    tool(config, "--slot", "1", "--login", "--pin", "opPassphrase", "--list-objects")
    text = open(config[1]).read()
    assert "C_Login(hSession=" in text and "ulPinLen=12" in text
    assert "opPassphrase" not in text and "Administrator\n" not in text


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("host") / "mt_host")
    defs = [f"-DIDX_{f.name}={i}" for i, f in enumerate(FUNCTIONS)]
    subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", *defs, "-o", out, os.path.join(HERE, "mt_host.c"),
                    "-pthread", "-ldl"], check=True)
    return out


def test_eight_threads_open_login_and_query_at_once(config, host):
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=config[0])
    out = subprocess.run([host, "mt", MODULE, "1", "opPassphrase", "8", "15"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


def test_initialize_cost_through_the_module(config, host):
    """C_Initialize through the .so (interpreter start + dispatcher + config) stays within the
    25 MB RSS budget (memory is deterministic; the time is measured by bench P3, not here)."""
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=config[0])
    subprocess.run([host, "init", MODULE, "1", "0"], env=env, capture_output=True, timeout=60)  # warm caches
    out = subprocess.run([host, "init", MODULE, "1", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    print(out.stdout.splitlines()[0])
    m = re.search(r"C_Initialize ([\d.]+) ms, RSS \+([\d.]+) MiB", out.stdout)
    assert float(m.group(2)) <= 25
