"""p11-kit registration: `make p11kit-register` writes a .module file that p11-kit (and so GnuTLS,
NSS via p11-kit-proxy) picks up. HOME/XDG_CONFIG_HOME point into a temp dir: the real user config
is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from docs_helpers import ROOT, clean_env, need_module, venv_tool

from nethsm_emulator.testing import start_emulator


def _need():
    need_module()
    for tool in ("p11-kit", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")


def _make(target: str, env: dict, *extra: str) -> subprocess.CompletedProcess:
    # -o build: the module is already built by the session (make test builds it first)
    return subprocess.run(["make", "--no-print-directory", "-o", "build", "-o", "venv", target,
                           f"HOME={env['HOME']}", *extra], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _as_user(cmd: list[str]) -> list[str]:
    """p11-kit ignores ~/.config/pkcs11 when running as root: run the client as nobody then."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: p11-kit would skip the user module config")
    return ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]


def test_default_module_dir_is_one_p11kit_reads(tmp_path):
    _need()
    env = clean_env(tmp_path)
    r = subprocess.run(["make", "--no-print-directory", "-n", "-o", "build", "p11kit-register",
                        f"HOME={env['HOME']}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    expected = "/etc/pkcs11/modules" if os.geteuid() == 0 else f"{env['HOME']}/.config/pkcs11/modules"
    assert f"> {expected}/p11nethsm.module" in r.stdout, r.stdout


def test_register_list_modules_and_unregister():
    _need()
    # a world-readable temp dir, because the p11-kit client may run as nobody (see _as_user)
    tmp_path = Path(tempfile.mkdtemp(prefix="p11kit-test-"))
    try:
        _register_list_unregister(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _register_list_unregister(tmp_path: Path):
    os.chmod(tmp_path, 0o755)
    env = clean_env(tmp_path)
    modules = tmp_path / "home" / ".config" / "pkcs11" / "modules"
    module_file = modules / "p11nethsm.module"
    r = _make("p11kit-register", env, f"MODULE_DIR={modules}")
    assert r.returncode == 0, r.stdout + r.stderr
    module_path = subprocess.run([venv_tool("p11nethsm"), "module-path"], capture_output=True, text=True).stdout.strip()
    assert module_file.read_text().splitlines()[0] == f"module: {module_path}"

    with start_emulator(provisioned=True) as hsm:
        conf = tmp_path / "p11nethsm.conf"
        conf.write_text(f"""slots:
  - label: P11KitToken
    operator: {{username: operator, password: opPassphrase}}
    instances:
      - url: {hsm.url}
        sha256_fingerprints: ["{hsm.fingerprint}"]
""")
        env["P11NETHSM_CONFIG_FILE"] = str(conf)
        subprocess.run(["chmod", "-R", "a+rX", str(tmp_path)], check=True)
        r = subprocess.run(_as_user(["p11-kit", "list-modules"]), env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert "p11nethsm:" in out, out  # the module's name is the .module file's name
        section = out.split("p11nethsm:", 1)[1]
        assert "library-manufacturer" in section
        assert "token: P11KitToken" in section, out
        if shutil.which("p11tool"):  # GnuTLS through p11-kit-proxy, no --provider
            r = subprocess.run(_as_user(["p11tool", "--list-tokens"]), env=env, capture_output=True, text=True, timeout=120)
            assert "P11KitToken" in r.stdout, r.stdout + r.stderr

    r = _make("p11kit-unregister", env, f"MODULE_DIR={modules}")
    assert r.returncode == 0 and not module_file.exists()
