"""The `p11nethsm` command: module-path, check-config (offline and against the emulator), emulator."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from docs_helpers import ROOT, clean_env, venv_tool

from nethsm_emulator.testing import start_emulator

CLI_TIMEOUT = 60


def cli(*args, env=None, timeout=CLI_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([venv_tool("p11nethsm"), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.fixture(scope="module")
def hsm():
    with start_emulator(provisioned=True, throttle=False) as run:
        yield run


def conf(tmp_path: Path, hsm, *, fingerprint=None, op_password="opPassphrase", admin_password=None,
         url=None, extra_instance="") -> Path:
    lines = [
        "slots:",
        "  - label: CliTest",
        "    operator:",
        "      username: operator",
        f"      password: {op_password}",
        "    administrator:",
        "      username: admin",
    ]
    if admin_password:
        lines.append(f"      password: {admin_password}")
    lines += [
        "    instances:",
        f"      - url: {url or hsm.url}",
        f"        sha256_fingerprints: [\"{fingerprint or hsm.fingerprint}\"]",
    ]
    path = tmp_path / "p11nethsm.conf"
    path.write_text("\n".join(lines) + "\n" + extra_instance)
    return path


def test_help_for_every_subcommand():
    r = cli("--help")
    assert r.returncode == 0
    for sub in ("module-path", "check-config", "emulator"):
        assert sub in r.stdout
    assert cli("module-path", "--help").returncode == 0
    r = cli("check-config", "--help")
    assert r.returncode == 0 and "--offline" in r.stdout and "Exit status" in r.stdout
    r = cli("emulator", "--help")
    assert r.returncode == 0 and "--listen" in r.stdout and "--state-dir" in r.stdout


def test_module_path_is_the_built_shim():
    r = cli("module-path")
    assert r.returncode == 0
    assert r.stdout.strip() == str(ROOT / "p11nethsm" / "libnethsm_pkcs11.so")


def test_check_config_names_file_and_key_of_a_problem(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("slots:\n  - label: X\n    operator: {username: op}\n    instances: [{url: 'ftp://x'}]\n")
    r = cli("check-config", bad, env=clean_env(tmp_path))
    assert r.returncode == 1
    assert str(bad) in r.stderr and "slots[0].instances[0].url" in r.stderr


def test_check_config_without_any_file_says_where_it_looked(tmp_path):
    r = cli("check-config", env=clean_env(tmp_path))
    assert r.returncode == 1
    assert "/etc/nitrokey/p11nethsm.conf" in r.stderr and "P11NETHSM_CONFIG_FILE" in r.stderr


def test_check_config_all_good(tmp_path, hsm):
    path = conf(tmp_path, hsm, admin_password="Administrator")
    r = cli("check-config", env=clean_env(tmp_path, P11NETHSM_CONFIG_FILE=str(path)))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "reachable: ok" in out
    assert f"certificate sha256 {hsm.fingerprint} is pinned" in out
    assert "device state: ok, Operational" in out
    assert "operator 'operator': ok, login works (role Operator)" in out
    assert "administrator 'admin': ok, login works (role Administrator)" in out
    assert "verdict: OK" in out


def test_check_config_user_without_password_needs_c_login(tmp_path, hsm):
    r = cli("check-config", conf(tmp_path, hsm), env=clean_env(tmp_path))
    assert r.returncode == 0, r.stdout
    assert "administrator 'admin': NOTE needs C_Login" in r.stdout


def test_check_config_reports_each_failing_instance(tmp_path, hsm):
    wrong_fp = ":".join(["AB"] * 32)
    extra = textwrap.indent(textwrap.dedent(f"""\
          - url: https://127.0.0.1:1/api/v1
            sha256_fingerprints: ["{hsm.fingerprint}"]
          - url: {hsm.url}
            sha256_fingerprints: ["{wrong_fp}"]
          - url: {hsm.url}
        """), "      ")
    path = conf(tmp_path, hsm, op_password="wrong-password", extra_instance=extra)
    r = cli("check-config", path, "--timeout", "5", env=clean_env(tmp_path))
    out = r.stdout
    assert r.returncode == 2, out + r.stderr
    assert "password rejected (401)" in out and "slots[].operator.password" in out
    assert "reachable: FAIL" in out and "127.0.0.1:1" in out
    assert f"is not in sha256_fingerprints ({wrong_fp})" in out
    assert "not trusted by the system trust store" in out and f'sha256_fingerprints: ["{hsm.fingerprint}"]' in out
    assert "verdict: FAILED, 4 problem(s)" in out
    # every problem in the summary names slot, instance and file
    summary = out.split("verdict: FAILED", 1)[1]
    assert summary.count(f"slot 'CliTest' instance") == 4 and summary.count(str(path)) >= 4


def test_check_config_locked_device(tmp_path):
    with start_emulator(provisioned=True) as locked:
        locked.instances[0].set_state("Locked")
        r = cli("check-config", conf(tmp_path, locked), env=clean_env(tmp_path))
    assert r.returncode == 2
    assert "device state: FAIL Locked" in r.stdout and "unlock" in r.stdout


def test_check_config_offline_does_no_network(tmp_path, hsm):
    # Counted at a peer, not timed: the configured instance is a listening socket of ours, and
    # not one connection may reach it.
    with socket.create_server(("127.0.0.1", 0)) as peer:
        peer.setblocking(False)
        path = conf(tmp_path, hsm, url=f"https://127.0.0.1:{peer.getsockname()[1]}/api/v1")
        r = cli("check-config", "--offline", path, env=clean_env(tmp_path))
        with pytest.raises(BlockingIOError):
            peer.accept()
    assert r.returncode == 0 and "slot 0: CliTest" in r.stdout and "checking" not in r.stdout


def test_emulator_alias_starts_the_emulator(tmp_path):
    proc = subprocess.Popen([venv_tool("p11nethsm"), "emulator", "--listen", "127.0.0.1:0",
                             "--state-dir", str(tmp_path / "state")], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert re.match(r"listening https://127\.0\.0\.1:\d+/api/v1 sha256 ([0-9A-F]{2}:){31}[0-9A-F]{2}$",
                        line.strip()), line
    finally:
        proc.terminate()
        proc.wait(20)


def test_module_package_never_imports_the_emulator():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "p11nethsm").rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+nethsm_emulator", p.read_text(), re.M)]
    assert offenders == []
    r = subprocess.run([sys.executable, "-c", "import sys, p11nethsm.cli; "
                        "p11nethsm.cli.main(['module-path']); "
                        "assert 'nethsm_emulator' not in sys.modules"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
