"""p11-kit registration: `make p11kit-register` writes a .module file that p11-kit (and so GnuTLS,
NSS via p11-kit-proxy) picks up. HOME/XDG_CONFIG_HOME point into a temp dir: the real user config
is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


SYSTEM_MODULE_DIRS = ("/usr/share/p11-kit/modules", "/etc/pkcs11/modules")  # p11-kit 0.24 on Debian


def _nobody(cmd: list[str]) -> list[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: p11-kit would skip the user module config")
    return ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *cmd]


def _private_mounts_work() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True).returncode == 0


def _as_client(cmd: list[str], modules: Path) -> list[str]:
    """A p11-kit client that reads `modules`. Not root: the user config (HOME is the temp dir).
    Root (p11-kit ignores user config): in a private mount namespace with `modules` mounted over
    the system module dirs (nothing global changes); without mount namespaces, as nobody."""
    if os.geteuid() != 0:
        return cmd
    if not _private_mounts_work():
        return _nobody(cmd)
    script = ('for d in "$@"; do [ "$d" = -- ] && break; '
              'if [ -d "$d" ]; then mount --bind "$0" "$d" || exit 97; fi; shift; done; shift; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(modules),
            *SYSTEM_MODULE_DIRS, "--", *cmd]


def test_default_module_dir_is_one_p11kit_reads(tmp_path):
    _need()
    env = clean_env(tmp_path)
    r = subprocess.run(["make", "--no-print-directory", "-n", "-o", "build", "p11kit-register",
                        f"HOME={env['HOME']}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    expected = "/etc/pkcs11/modules" if os.geteuid() == 0 else f"{env['HOME']}/.config/pkcs11/modules"
    assert f"> {expected}/p11nethsm.module" in r.stdout, r.stdout


def test_register_list_modules_and_unregister():
    _need()
    # a world-readable temp dir, because the p11-kit client may run as nobody (see _as_client)
    tmp_path = Path(tempfile.mkdtemp(prefix="p11kit-test-"))
    try:
        _register_list_unregister(tmp_path, _as_client)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_unprivileged_user_lists_the_token_or_is_told_why():
    """p11-kit as uid 65534 with the user config: the token is listed, or (the interpreter lives
    where that user cannot read it, e.g. a pyenv CPython in root's 0700 home) the module says so,
    naming the path, instead of a bare 'cannot open shared object file'."""
    _need()
    if os.geteuid() != 0:
        pytest.skip("needs root to run a client as another user (as non-root the other test covers it)")
    tmp_path = Path(tempfile.mkdtemp(prefix="p11kit-test-"))
    try:
        _register_list_unregister(tmp_path, lambda cmd, modules: _nobody(cmd), unprivileged=True)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _venv_home() -> str:
    for line in (Path(sys.prefix) / "pyvenv.cfg").read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home":
            return value.strip()
    raise AssertionError("pyvenv.cfg has no home")


def _register_list_unregister(tmp_path: Path, as_client, unprivileged: bool = False):
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
        r = subprocess.run(as_client(["p11-kit", "list-modules"], modules), env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        if unprivileged and "P11KitToken" not in out:
            home = _venv_home()
            assert f"Python home {home} (pyvenv.cfg 'home') is not accessible to uid 65534" in r.stderr, r.stderr
            assert "Permission denied" in r.stderr and "make it readable" in r.stderr, r.stderr
            return  # told precisely why; the module cannot run for this user
        assert "p11nethsm:" in out, out + r.stderr  # the module's name is the .module file's name
        section = out.split("p11nethsm:", 1)[1]
        assert "library-manufacturer" in section
        assert "token: P11KitToken" in section, out
        if shutil.which("p11tool"):  # GnuTLS through p11-kit-proxy, no --provider
            r = subprocess.run(as_client(["p11tool", "--list-tokens"], modules), env=env, capture_output=True,
                               text=True, timeout=120)
            assert "P11KitToken" in r.stdout, r.stdout + r.stderr

    r = _make("p11kit-unregister", env, f"MODULE_DIR={modules}")
    assert r.returncode == 0 and not module_file.exists()
