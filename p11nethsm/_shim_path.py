"""Where the PKCS#11 module (the C shim) lives: inside the installed package."""

from __future__ import annotations

import os

SO_NAME = "libnethsm_pkcs11.so"


def module_path() -> str:
    """Absolute path of libnethsm_pkcs11.so in this package's directory
    (a wheel install puts it there; an editable install needs the in-tree
    build: `python libshim/build.py`). The file may not exist if it was not built."""
    return os.path.join(os.path.dirname(os.path.realpath(__file__)), SO_NAME)
