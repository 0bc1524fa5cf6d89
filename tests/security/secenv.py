"""Shared helpers of tests/security and tests/hosts: module path, venv python, config files."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODULE = os.path.join(ROOT, "p11nethsm", "libnethsm_pkcs11.so")
PY = os.path.join(ROOT, ".venv", "bin", "python")
if not os.path.exists(PY):
    PY = sys.executable


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def slot_yaml(label, url, fingerprint, *, passwords=True, extra="") -> str:
    op = "{username: operator, password: opPassphrase}" if passwords else "{username: operator}"
    adm = "{username: admin, password: Administrator}" if passwords else "{username: admin}"
    return f"""  - label: {label}
    operator: {op}
    administrator: {adm}
    timeout_seconds: 10
{extra}    instances:
      - url: "{url}"
        sha256_fingerprints: ["{fingerprint}"]
"""


def write_config(path, slots: list[str], *, log_file, level="Debug", head="") -> str:
    with open(path, "w") as fh:
        fh.write(f"log_level: {level}\nlog_file: {log_file}\n{head}slots:\n" + "".join(slots))
    return str(path)


def run_py(script: str, *args, env_extra: dict | None = None, timeout=120) -> subprocess.CompletedProcess:
    """Run a python script (path) or code (-c) with the venv's python, host mode."""
    env = dict(os.environ, **(env_extra or {}))
    cmd = [PY, script, *map(str, args)] if script.endswith(".py") else [PY, "-c", script, *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
