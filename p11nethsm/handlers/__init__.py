"""Handlers by spec chapter. Importing this package registers every handler with the dispatcher.

Imported at the first C_Initialize. A chapter module that is missing (not written yet) or fails
to import does not stop the module: its functions answer CKR_FUNCTION_NOT_SUPPORTED, and the
problem is kept in PROBLEMS, which C_Initialize logs once logging is configured (a traceback for
a module that exists but fails to import).
"""

from __future__ import annotations

import importlib
import traceback

CHAPTERS = (
    "general",
    "slot_token",
    "session",
    "objects",
    "sign_verify",
    "encrypt_decrypt",
    "digest",
    "keymgmt",
    "random",
)

LOADED: list[str] = []
PROBLEMS: list[tuple[str, str]] = []  # (level, message)


def _load() -> None:
    for chapter in CHAPTERS:
        name = f"{__name__}.{chapter}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                PROBLEMS.append(("warning", f"handler module {name} is not available: its functions "
                                            "return CKR_FUNCTION_NOT_SUPPORTED"))
            else:
                PROBLEMS.append(("error", f"handler module {name} failed to import (its functions return "
                                          f"CKR_FUNCTION_NOT_SUPPORTED):\n{traceback.format_exc()}"))
        except Exception:
            PROBLEMS.append(("error", f"handler module {name} failed to import (its functions return "
                                      f"CKR_FUNCTION_NOT_SUPPORTED):\n{traceback.format_exc()}"))
        else:
            LOADED.append(chapter)


_load()
