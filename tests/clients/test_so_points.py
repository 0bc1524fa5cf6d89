"""The pure PKCS#11 points of "what real clients expect", checked by a C host (ctypes on the
built .so in its own process, tests/clients/so_points.py) against emulators over real TLS:
binary labels on firmware with and without key labels, key pairs deleted in either order,
session objects, argument checks before state checks, C_GenerateRandom in a public session and
CKM_RSA_X_509 signing through RSA_Decryption_RAW."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clientenv import MODULE, need
from nethsm_emulator.provision import STANDARD_KEYS
from nethsm_emulator.testing import start_emulator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable


def _conf(path: Path, hsm, log: Path, passwords: bool = True) -> Path:
    op = "{username: operator, password: opPassphrase}" if passwords else "{username: operator}"
    adm = "{username: admin, password: Administrator}" if passwords else "{username: admin}"
    path.write_text(f"""log_level: Debug
log_file: {log}
slots:
  - label: Points
    operator: {op}
    administrator: {adm}
    timeout_seconds: 10
    instances:
      - url: {hsm.url}
        sha256_fingerprints: ["{hsm.fingerprint}"]
""")
    return path


def _hsm(tmp_path_factory, name: str, labels: bool):
    need()
    d = tmp_path_factory.mktemp(name)
    keys = {k: STANDARD_KEYS[k] for k in ("rsakey", "p256key")}
    keys["rsanoraw"] = {"type": "RSA", "length": 2048, "mechanisms": ["RSA_Signature_PKCS1"]}
    return d, start_emulator(provisioned=True, keys=keys, throttle=False, labels=labels)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    d, hsm = _hsm(tmp_path_factory, "points-labels", labels=True)
    with hsm:
        yield d, hsm


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    d, hsm = _hsm(tmp_path_factory, "points-nolabels", labels=False)
    with hsm:
        yield d, hsm


def run(env, scenario: str, passwords: bool = True) -> str:
    d, hsm = env
    log = d / f"{scenario}.log"
    conf = _conf(d / f"{scenario}.conf", hsm, log, passwords)
    r = subprocess.run([PY, "-m", "tests.clients.so_points", scenario, hsm.url, hsm.fingerprint],
                       env=dict(os.environ, P11NETHSM_CONFIG_FILE=str(conf)), capture_output=True, text=True,
                       timeout=180, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), \
        r.stdout[-3000:] + r.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    return log.read_text()


def test_binary_labels_round_trip_on_firmware_with_labels(labelled):
    log = run(labelled, "labels_firmware_with_labels")
    assert "CKA_LABEL refused" in log and "once encoded" in log  # the 50-byte label, with its reason


def test_labels_on_firmware_without_labels_name_the_key_or_are_refused(unlabelled):
    log = run(unlabelled, "labels_firmware_without_labels")
    assert "CKA_LABEL refused: the NetHSM firmware has no key labels" in log


def test_key_pair_destroyed_private_first_then_public(labelled):
    run(labelled, "keypair_delete_private_first")


def test_key_pair_destroyed_public_first_then_private(labelled):
    run(labelled, "keypair_delete_public_first")


def test_session_objects_in_read_only_sessions_verify_and_encrypt_locally(labelled):
    run(labelled, "session_objects")


def test_null_template_is_arguments_bad_in_any_session(labelled):
    run(labelled, "arguments_before_state")


def test_generate_random_in_a_public_session_uses_configured_operator(labelled):
    run(labelled, "random_public_session")


def test_generate_random_without_credentials_is_function_failed_with_a_hint(labelled):
    log = run(labelled, "random_without_credentials", passwords=False)
    assert "put the operator password in the configuration or C_Login as CKU_USER" in log


def test_rsa_x509_signs_through_raw_decryption(labelled):
    run(labelled, "rsa_x509_sign")
