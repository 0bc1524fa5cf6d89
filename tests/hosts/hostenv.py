"""Helpers of tests/hosts (a named module: test modules import it, never their conftest)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.security.secenv import MODULE, PY, ROOT, slot_yaml, write_config

__all__ = ["LABEL", "MODULE", "PY", "ROOT", "need", "slot_yaml", "write_config"]

LABEL = "HostsHSM"


def need(*tools):
    if not os.path.exists(MODULE):
        pytest.skip(f"{MODULE} not built (make build)")
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} not installed")
