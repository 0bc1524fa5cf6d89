"""Helpers of tests/guest (a named module: every test dir has its own conftest)."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

from tests.security.secenv import MODULE, PY, ROOT, slot_yaml, write_config

__all__ = ["HERE", "MODULE", "PY", "ROOT", "host_env", "slot_yaml", "write_config"]


def host_env(conf: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P11NETHSM_CONFIG")}
    env["P11NETHSM_CONFIG_FILE"] = conf
    env.update(extra)
    return env
