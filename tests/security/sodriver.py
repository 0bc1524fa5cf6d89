"""Calling the built module (.so) through ctypes, for scripts run in a subprocess (host mode:
the venv's 3.11 python loads the .so, which then uses this interpreter).

    so = SO(MODULE); so("C_Initialize", None); so.open(0); so.login(h, 1, b"pin")

The driver itself is tests/p11calls.py (shared with the in-process tests); this module only makes
it importable from such scripts.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.p11calls import CKR_NAMES, MODULE, SO  # the repository root is on sys.path (pytest's
# pythonpath, or `python -c`/`-m` run with cwd = the root)

__all__ = ["CKR_NAMES", "MODULE", "ROOT", "SO"]
