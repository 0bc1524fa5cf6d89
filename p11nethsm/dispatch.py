"""The one entry point of the C shim: `entry(index, *args) -> CK_RV`.

`index` is the position of the function in p11nethsm.ck.functions.FUNCTIONS; every argument is
an unsigned 64-bit int (pointers as addresses, CK_BBOOL as 0/1). Handlers register with
`@handler` on a function named like the C function, taking the raw int args in table order,
returning None (CKR_OK) or raising CKRError.

One skeleton for every call (style-anchors §5.2):
- before C_Initialize / after C_Finalize, everything but C_Initialize → CKR_CRYPTOKI_NOT_INITIALIZED;
- a forwarded function without a handler → CKR_FUNCTION_NOT_SUPPORTED; a handler's chapter module
  (p11nethsm.handlers) is imported at the first call of one of its functions;
- CKRError → its rv; NetHSMError → ckr_for(exc) plus a log line naming instance/method/path/status;
  412 (PreconditionFailed) → CKR_DEVICE_REMOVED on an open session, else CKR_TOKEN_NOT_PRESENT,
  and the slot's token-presence machine learns the token is gone;
- anything else → traceback in the log, CKR_GENERAL_ERROR (never kill the host);
- the call and its CKR are logged by name at Debug. Only pointers and lengths are logged, never
  the memory behind them, so PINs never reach the log (their lengths do: ulPinLen).

The log line is built only when `logflags.DEBUG` is set: the undebugged path is a flag test, a list
index and a call.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from p11nethsm.log import logger

from p11nethsm import logflags

from p11nethsm.api.errors import NetHSMError, PreconditionFailed, ckr_for
from p11nethsm.ck.constants import CKR
from p11nethsm.ck.errors import CKRError, FunctionNotSupported
from p11nethsm.ck.functions import FUNCTIONS, INDEX
from p11nethsm import handlers
from p11nethsm import forksafe  # noqa: F401  (registers the wait before a Python host's os.fork)

__all__ = ["entry", "handler", "is_ready", "registered"]

_C_INITIALIZE = INDEX["C_Initialize"]
_NAMES = tuple(f.name for f in FUNCTIONS)
_ARGNAMES = tuple(tuple(a.name for a in f.args) for f in FUNCTIONS)
_HAS_SESSION = tuple(bool(f.args) and f.args[0].name == "hSession" for f in FUNCTIONS)
_HAS_SLOT = tuple(bool(f.args) and f.args[0].name == "slotID" for f in FUNCTIONS)
_CKR_NAMES: dict[int, str] = {int(m): f"CKR_{m.name}" for m in CKR}

_OK = 0
_NOT_INITIALIZED = int(CKR.CRYPTOKI_NOT_INITIALIZED)
_GENERAL_ERROR = int(CKR.GENERAL_ERROR)

_ready = False  # set by the C_Initialize / C_Finalize handlers through mark_ready()


def _make_not_supported(name: str) -> Callable[..., None]:
    def not_supported(*_args):
        raise FunctionNotSupported(f"{name} is not supported")

    not_supported.__name__ = name
    not_supported.registered = False  # type: ignore[attr-defined]
    return not_supported


def _make_loader(name: str, chapter: str) -> Callable[..., None]:
    """Stands for the handler of `name` until its chapter module is imported (handlers/__init__)."""

    def load_and_call(*args):
        return _load_chapter(chapter)[INDEX[name]](*args)

    load_and_call.__name__ = name
    load_and_call.chapter = chapter  # type: ignore[attr-defined]
    return load_and_call


def _load_chapter(chapter: str) -> list[Callable[..., None]]:
    """Import `chapter` and put its handlers in the table (not supported if it failed); the table."""
    module = handlers.load(chapter)
    for name in handlers.CHAPTERS[chapter]:
        fn = getattr(module, name, None)
        _handlers[INDEX[name]] = fn if fn is not None else _make_not_supported(name)
    return _handlers


_handlers: list[Callable[..., None]] = [_make_not_supported(n) for n in _NAMES]
for _chapter, _names in handlers.CHAPTERS.items():
    for _name in _names:
        _handlers[INDEX[_name]] = _make_loader(_name, _chapter)
del _chapter, _names, _name


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
    _handlers[index] = fn
    return fn


def registered(name: str) -> bool:
    """Whether a handler implements `name` (imports its chapter module to know)."""
    fn = _handlers[INDEX[name]]
    chapter = getattr(fn, "chapter", None)
    if chapter is not None:
        fn = _load_chapter(chapter)[INDEX[name]]
    return getattr(fn, "registered", True)


def is_ready() -> bool:
    return _ready


def mark_ready(ready: bool) -> None:
    """Called by C_Initialize (True) and C_Finalize / the fork child (False)."""
    global _ready
    _ready = ready


def entry(index: int, *args: int) -> int:
    """Run the handler of FUNCTIONS[index] on the raw args; return the CK_RV."""
    if not _ready and index != _C_INITIALIZE:
        if logflags.DEBUG:
            _log_call(index, args, _NOT_INITIALIZED, None)
        return _NOT_INITIALIZED
    try:
        _handlers[index](*args)
    except CKRError as exc:
        rv = int(exc.rv)
        if logflags.DEBUG:
            _log_call(index, args, rv, exc)
        return rv
    except NetHSMError as exc:
        rv = _nethsm_error(index, args, exc)
        if logflags.DEBUG:
            _log_call(index, args, rv, exc)
        return rv
    except Exception:
        if not _ready:  # C_Finalize tore the module down under this call: not a module error
            if logflags.DEBUG:
                _log_call(index, args, _NOT_INITIALIZED, None)
            return _NOT_INITIALIZED
        logger.exception("{}: unexpected error, returning CKR_GENERAL_ERROR", _NAMES[index])
        if logflags.DEBUG:
            _log_call(index, args, _GENERAL_ERROR, None)
        return _GENERAL_ERROR
    if logflags.DEBUG:
        _log_call(index, args, _OK, None)
    return _OK


def _nethsm_error(index: int, args: tuple[int, ...], exc: NetHSMError) -> int:
    name = _NAMES[index]
    if isinstance(exc, PreconditionFailed):
        session, slot = _call_target(index, args)
        if slot is not None:
            try:
                slot.token.mark_absent(f"{name}: {exc.describe()}")
            except Exception:
                logger.exception("{}: could not mark the token absent", name)
        rv = CKR.DEVICE_REMOVED if session is not None else CKR.TOKEN_NOT_PRESENT
        logger.warning("{}: NetHSM not operational ({}) -> {}", name, exc.describe(), _CKR_NAMES[rv])
        return int(rv)
    rv = ckr_for(exc)
    logger.warning("{}: NetHSM error {} -> {}", name, exc.describe(), _CKR_NAMES.get(int(rv), hex(rv)))
    return int(rv)


def _call_target(index: int, args: tuple[int, ...]):
    """(open session or None, slot or None) named by the call's first argument."""
    from p11nethsm import library

    lib = library.current()
    if lib is None or not args:
        return None, None
    if _HAS_SESSION[index]:
        session = lib.sessions.get(args[0])
        return session, (session.slot if session is not None else None)
    if _HAS_SLOT[index]:
        return None, lib.slots_by_id.get(args[0])
    return None, None


def _log_call(index: int, args: tuple[int, ...], rv: int, exc: BaseException | None) -> None:
    parts = []
    for name, value in zip(_ARGNAMES[index], args):
        if name[0] == "p" or name == "RandomData" or name == "Notify":
            parts.append(f"{name}={value:#x}" if value else f"{name}=NULL")
        else:
            parts.append(f"{name}={value}")
    rv_name = _CKR_NAMES.get(rv, f"{rv:#x}")
    detail = f" ({exc})" if exc is not None and str(exc) else ""
    logger.debug("{}({}) = {}{}", _NAMES[index], ", ".join(parts), rv_name, detail)


def _after_fork_in_child() -> None:
    """A forked child starts uninitialized: drop sessions, pools and slots without closing the
    parent's connections (closing a TLS socket here would write on the parent's stream)."""
    global _ready
    _ready = False
    try:
        from p11nethsm import library

        library.drop_in_child()
    except Exception:  # pragma: no cover - must never raise in a fork hook
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)
