"""Handlers by spec chapter, each chapter module imported at the first call of one of its functions.

CHAPTERS names the functions each chapter module implements (tests/core/test_dispatch.py checks it
against the modules). Until then the dispatcher holds a stand-in for each of them, which imports
the module (its @handler functions register themselves) and runs the call. So C_Initialize
imports only `general`: the other chapters and what they use (mechanisms, objects, dataclasses,
typing...) take about 12 ms to import, paid by the first call that needs each instead.

Chapter modules register their functions with `@handler` (this package): the dispatcher reads
REGISTERED after importing a chapter and never is imported by one (handlers sit below it).

A chapter module that is missing (not written yet) or fails to import does not stop the module:
its functions answer CKR_FUNCTION_NOT_SUPPORTED, and the problem is logged once, when the first of
them is called (with a traceback for a module that exists but fails to import), and kept in
PROBLEMS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType

from p11nethsm.log import logger

from p11nethsm.ck.functions import FUNCTIONS, INDEX

CHAPTERS: dict[str, tuple[str, ...]] = {
    "general": ("C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionStatus", "C_CancelFunction"),
    "slot_token": ("C_GetSlotList", "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList",
                   "C_GetMechanismInfo", "C_InitToken", "C_InitPIN", "C_WaitForSlotEvent"),
    "session": ("C_OpenSession", "C_CloseSession", "C_CloseAllSessions", "C_GetSessionInfo", "C_Login",
                "C_Logout", "C_SetPIN"),
    "objects": ("C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal", "C_GetAttributeValue",
                "C_GetObjectSize", "C_CreateObject", "C_CopyObject", "C_DestroyObject",
                "C_SetAttributeValue"),
    "sign_verify": ("C_SignInit", "C_Sign", "C_SignUpdate", "C_SignFinal", "C_VerifyInit", "C_Verify",
                    "C_VerifyUpdate", "C_VerifyFinal"),
    "encrypt_decrypt": ("C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal",
                        "C_DecryptInit", "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal"),
    "digest": ("C_DigestInit", "C_Digest", "C_DigestUpdate", "C_DigestKey", "C_DigestFinal"),
    "keymgmt": ("C_GenerateKeyPair", "C_GenerateKey"),
    "random": ("C_SeedRandom", "C_GenerateRandom"),
}

PROBLEMS: list[tuple[str, str]] = []  # (level, message)
REGISTERED: dict[str, Callable[..., None]] = {}  # C function name -> its handler


def handler(fn: Callable[..., None]) -> Callable[..., None]:
    """Register `fn` as the handler of the C function it is named after."""
    try:
        index = INDEX[fn.__name__]
    except KeyError:
        raise ValueError(f"@handler: {fn.__name__} is not a PKCS#11 function") from None
    if not FUNCTIONS[index].forwarded:
        raise ValueError(f"@handler: {fn.__name__} is answered by the shim, never forwarded")
    nargs = len(FUNCTIONS[index].args)
    code = getattr(fn, "__code__", None)
    if code is not None and code.co_argcount != nargs and not code.co_flags & 0x04:
        raise ValueError(f"@handler: {fn.__name__} takes {code.co_argcount} args, the table has {nargs}")
    REGISTERED[fn.__name__] = fn
    return fn


class Hooks:
    """What C_Initialize / C_Finalize tell the dispatcher (set by it at import)."""

    set_metrics: Callable = staticmethod(lambda metrics: None)


HOOKS = Hooks()

_imported: dict[str, ModuleType | None] = {}  # chapter -> module, None if it failed


def load(chapter: str) -> ModuleType | None:
    """The chapter module, imported on the first call; None if it is missing or fails to import.

    No lock of our own (a fork could leave it held): Python's import lock makes concurrent first
    calls import a module once; at worst a broken module is reported twice."""
    if chapter not in _imported:
        _imported[chapter] = _import(chapter)
    return _imported[chapter]


def _import(chapter: str) -> ModuleType | None:
    name = f"{__name__}.{chapter}"
    try:
        __import__(name)  # not importlib.import_module: importlib (and warnings) cost 0.5 ms more
        return sys.modules[name]
    except ModuleNotFoundError as exc:
        if exc.name == name:
            _problem("warning", f"handler module {name} is not available: its functions return "
                                "CKR_FUNCTION_NOT_SUPPORTED")
            return None
        _failed(name)
    except Exception:
        _failed(name)
    return None


def _failed(name: str) -> None:
    import traceback  # lazy: only on this error path; it is not cheap to import

    _problem("error", f"handler module {name} failed to import (its functions return "
                      f"CKR_FUNCTION_NOT_SUPPORTED):\n{traceback.format_exc()}")


def _problem(level: str, message: str) -> None:
    PROBLEMS.append((level, message))
    logger.log(level.upper(), message)
