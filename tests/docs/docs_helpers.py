"""Shared helpers of the documentation/operator tests (README, demo, Dockerfile, p11-kit, CLI)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
MODULE = ROOT / "p11nethsm" / "libnethsm_pkcs11.so"


def venv_tool(name: str) -> str:
    """A console script of the venv running the tests (falls back to PATH)."""
    path = VENV_BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (run make build)")
    return found


def need_module():
    if not MODULE.exists():
        pytest.skip(f"{MODULE} not built (run make build)")


def clean_env(tmp_path: Path, **extra: str) -> dict:
    """Environment with HOME/XDG dirs inside tmp_path, so no user config is read or written."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("P11NETHSM_", "XDG_"))}
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    env.update(extra)
    return env
