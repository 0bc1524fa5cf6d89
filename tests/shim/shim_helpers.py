"""Helpers for the C-shim tests: build the .so and a C host in a tmp dir,
and make throwaway "overlay" venvs the shim can point at.

overlay venv: a hand-made venv (pyvenv.cfg, bin/python3, site-packages) whose
site-packages puts the repo root first (the live p11nethsm package) and then
the test-running venv's site-packages (runtime deps). So the tests drive the
real dispatcher without installing the project anywhere.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
LIBSHIM = os.path.join(REPO, "libshim")
HERE = os.path.dirname(os.path.abspath(__file__))
MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"

from libshim import gen  # noqa: E402  (the build's own function table)

TABLE = gen.load_table()


def _require_tools():
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not available")


def build_shim(out: str, baked_venv: str = "") -> str:
    subprocess.run(
        [sys.executable, os.path.join(LIBSHIM, "build.py"), "-q", "-o", out, "--baked-venv", baked_venv,
         "--build-dir", os.path.join(os.path.dirname(out), "_b")],
        check=True,
    )
    return out


def make_overlay(root: str, with_repo: bool | None = None, extra_pkg_dir: str | None = None) -> str:
    """Create a minimal venv at root that the shim can use."""
    home = os.path.join(sys.base_prefix, "bin")
    os.makedirs(os.path.join(root, "bin"), exist_ok=True)
    sp = os.path.join(root, "lib", f"python{MINOR}", "site-packages")
    os.makedirs(sp, exist_ok=True)
    with open(os.path.join(root, "pyvenv.cfg"), "w") as f:
        f.write(f"home = {home}\ninclude-system-site-packages = false\nversion = {platform.python_version()}\n")
    exe = os.path.join(root, "bin", "python3")
    if not os.path.lexists(exe):
        os.symlink(os.path.join(home, f"python{MINOR}"), exe)
    if with_repo is None:
        with_repo = os.environ.get("P11NETHSM_SHIM_TEST_DISPATCH", "real") != "fake"
    if not with_repo and extra_pkg_dir is None:
        extra_pkg_dir = _fake_pkg(os.path.dirname(root))
    lines = []
    if with_repo:
        lines.append(REPO)
    if sys.prefix != sys.base_prefix:
        here_sp = os.path.join(sys.prefix, "lib", f"python{MINOR}", "site-packages")
        lines.append(f"import site; site.addsitedir({here_sp!r})")
    with open(os.path.join(sp, "_p11nethsm_test.pth"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if extra_pkg_dir:
        shutil.copytree(extra_pkg_dir, os.path.join(sp, os.path.basename(extra_pkg_dir)), dirs_exist_ok=True)
    return root


# A minimal p11nethsm configuration (one slot; the instance is never contacted
# by C_Initialize/C_GetInfo/C_Finalize). Set by the shim_dir fixture.
CONFIG_FILE: str | None = None
CONFIG_YAML = """\
slots:
  - label: shimtest
    instances:
      - url: "https://127.0.0.1:9/api/v1"
        danger_insecure_cert: true
    operator:
      username: operator
      password: not-a-secret
"""


def _fake_pkg(parent: str) -> str:
    pkg = os.path.join(parent, "_fakepkg", "p11nethsm")
    os.makedirs(os.path.join(pkg, "ck"), exist_ok=True)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    open(os.path.join(pkg, "ck", "__init__.py"), "w").close()
    shutil.copy(os.path.join(REPO, "p11nethsm", "ck", "functions.py"), os.path.join(pkg, "ck", "functions.py"))
    shutil.copy(os.path.join(HERE, "fake_dispatch.py"), os.path.join(pkg, "dispatch.py"))
    return pkg


@dataclass
class Run:
    rc: int
    stdout: bytes
    stderr: str
    results: dict = field(default_factory=dict)


def clean_env(venv: str | None, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "P11NETHSM_"))}
    # bogus values: an isolated embedded interpreter must ignore them
    env["PYTHONPATH"] = "/nonexistent-pythonpath"
    env["PYTHONHOME"] = "/nonexistent-pythonhome"
    if venv:
        env["P11NETHSM_VENV"] = venv
    if CONFIG_FILE:
        env["P11NETHSM_CONFIG_FILE"] = CONFIG_FILE
    env.update(extra)
    return env


def parse_results(stderr: str) -> dict:
    out = {}
    for line in stderr.splitlines():
        if line.startswith("RESULT "):
            for kv in line[7:].split():
                if "=" in kv:
                    k, v = kv.split("=", 1)
                    out[k] = v
    return out


def run_host(host_bin, so, mode, venv=None, n=None, timeout=120, env=None) -> Run:
    args = [host_bin, so, mode] + ([str(n)] if n is not None else [])
    p = subprocess.run(args, capture_output=True, timeout=timeout, env=env or clean_env(venv), cwd="/")
    err = p.stderr.decode(errors="replace")
    return Run(p.returncode, p.stdout, err, parse_results(err))


def assert_ok(r: Run):
    assert r.stdout == b"", f"module wrote to stdout: {r.stdout[:500]!r}"
    assert r.rc == 0, f"rc={r.rc}\n{r.stderr[-4000:]}"
    assert "RESULT ok" in r.stderr
    assert not re.search(r"Traceback|Fatal Python error", r.stderr), r.stderr[-4000:]
