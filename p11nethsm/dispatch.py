"""The one entry point of the C shim: `entry(index, *args) -> CK_RV`.

`index` is the position of the function in p11nethsm.ck.functions.FUNCTIONS; every argument is
an unsigned 64-bit int (pointers as addresses, CK_BBOOL as 0/1). Handlers register with
`@p11nethsm.handlers.handler` on a function named like the C function (the dispatcher reads
that registration table; handlers never import it), taking the raw int args in table order,
returning None (CKR_OK) or raising CKRError.

One skeleton for every call:
- before C_Initialize / after C_Finalize, everything but C_Initialize → CKR_CRYPTOKI_NOT_INITIALIZED;
- a forwarded function without a handler → CKR_FUNCTION_NOT_SUPPORTED; a handler's chapter module
  (p11nethsm.handlers) is imported at the first call of one of its functions;
- whether a call may run is the module lifecycle's answer (p11nethsm.state.lifecycle: one
  compare per call);
- CKRError → its rv; NetHSMError → what the domain says it means (p11nethsm.handlers.failures:
  the CKR, a log line, and for a 412 the token's absence);
- anything else → traceback in the log, CKR_GENERAL_ERROR (never kill the host);
- with Debug on, the call runs in a call context (p11nethsm.calllog: call id, slot, session, on
  every line it causes) and ends with one line naming the function, its arguments (mechanism and
  template attributes by name, PINs and secret values never), the CKR and the duration.

All of that happens only when `logflags.DEBUG` is set: the undebugged path is a flag test, a list
index and a call.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

from p11nethsm.log import logger

from p11nethsm import calllog, logflags

from p11nethsm.api.errors import NetHSMError
from p11nethsm.ck.constants import CKR
from p11nethsm.ck.errors import CKRError, FunctionNotSupported
from p11nethsm.ck.functions import FUNCTIONS, INDEX
from p11nethsm import handlers, library
from p11nethsm import forksafe  # noqa: F401  (registers the wait before a Python host's os.fork)
from p11nethsm.handlers import failures, handler  # noqa: F401  (handler: the name tests use)
from p11nethsm.state.lifecycle import INITIALIZED

__all__ = ["entry", "is_ready", "registered"]

_C_INITIALIZE = INDEX["C_Initialize"]
_C_OPEN_SESSION = INDEX["C_OpenSession"]
_NAMES = tuple(f.name for f in FUNCTIONS)
_ARGNAMES = tuple(tuple(a.name for a in f.args) for f in FUNCTIONS)
_HAS_SESSION = tuple(bool(f.args) and f.args[0].name == "hSession" for f in FUNCTIONS)
_HAS_SLOT = tuple(bool(f.args) and f.args[0].name == "slotID" for f in FUNCTIONS)
_CKR_NAMES: dict[int, str] = {int(m): f"CKR_{m.name}" for m in CKR}

_OK = 0
_NOT_INITIALIZED = int(CKR.CRYPTOKI_NOT_INITIALIZED)
_GENERAL_ERROR = int(CKR.GENERAL_ERROR)

_LIFECYCLE = library.LIFECYCLE  # `_LIFECYCLE.state_id is INITIALIZED`: may a call run
_metrics = None  # p11nethsm.metrics.Metrics while metrics_file is configured (set_metrics)


def set_metrics(m) -> None:
    global _metrics
    _metrics = m


handlers.HOOKS.set_metrics = set_metrics


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
        fn = handlers.REGISTERED.get(name) if module is not None else None
        _handlers[INDEX[name]] = fn if fn is not None else _make_not_supported(name)
    return _handlers


_handlers: list[Callable[..., None]] = [_make_not_supported(n) for n in _NAMES]
for _chapter, _names in handlers.CHAPTERS.items():
    for _name in _names:
        _handlers[INDEX[_name]] = _make_loader(_name, _chapter)
del _chapter, _names, _name


def registered(name: str) -> bool:
    """Whether a handler implements `name` (imports its chapter module to know)."""
    fn = _handlers[INDEX[name]]
    chapter = getattr(fn, "chapter", None)
    if chapter is not None:
        fn = _load_chapter(chapter)[INDEX[name]]
    return getattr(fn, "registered", True)


def is_ready() -> bool:
    """Whether calls may run: the module lifecycle is `initialized`."""
    return _LIFECYCLE.state_id is INITIALIZED


def entry(index: int, *args: int) -> int:
    """Run the handler of FUNCTIONS[index] on the raw args; return the CK_RV."""
    if logflags.DEBUG or _metrics is not None:
        return _entry_logged(index, args)
    if _LIFECYCLE.state_id is not INITIALIZED and index != _C_INITIALIZE:
        return _NOT_INITIALIZED
    try:
        _handlers[index](*args)
    except CKRError as exc:
        return int(exc.rv)
    except NetHSMError as exc:
        return _nethsm_error(index, args, exc)
    except Exception:
        return _unexpected(index)
    return _OK


def _unexpected(index: int) -> int:
    if _LIFECYCLE.state_id is not INITIALIZED:  # C_Finalize tore the module down under this call: not a module error
        return _NOT_INITIALIZED
    logger.exception("{}: unexpected error, returning CKR_GENERAL_ERROR", _NAMES[index])
    return _GENERAL_ERROR


def _entry_logged(index: int, args: tuple[int, ...]) -> int:
    """`entry` with Debug on or metrics_file set: with Debug, the call runs in a call context
    (p11nethsm.calllog), so every line it causes carries its call id, slot and session, and ends
    with one call line; with metrics, the call is counted by function and CKR."""
    if logflags.DEBUG:
        slot_id, session_id = _target_ids(index, args)
        ctx = calllog.begin(_NAMES[index], slot_id, session_id)
    else:
        ctx = None
    exc_seen: BaseException | None = None
    try:
        if _LIFECYCLE.state_id is not INITIALIZED and index != _C_INITIALIZE:
            rv = _NOT_INITIALIZED
        else:
            try:
                _handlers[index](*args)
                rv = _OK
            except CKRError as exc:
                rv, exc_seen = int(exc.rv), exc
            except NetHSMError as exc:
                rv, exc_seen = _nethsm_error(index, args, exc), exc
            except Exception:
                rv = _unexpected(index)
        if ctx is not None:
            if rv == _OK and index == _C_OPEN_SESSION and args[4]:  # the new session's lines name it
                ctx.session = ctypes.c_ulong.from_address(args[4]).value
            _log_call(index, args, rv, exc_seen, ctx)
    finally:
        if ctx is not None:
            ctx.end()
    m = _metrics
    if m is not None:
        m.call(_NAMES[index], _CKR_NAMES.get(rv, f"{rv:#x}"))
    return rv


def _target_ids(index: int, args: tuple[int, ...]) -> tuple[int | None, int | None]:
    """(slot id, session handle) a call names, for its log lines."""
    if not args:
        return None, None
    if _HAS_SESSION[index]:
        lib = library.current()
        session = lib.sessions.get(args[0]) if lib is not None else None
        return (session.slot.slot_id if session is not None else None), args[0]
    if _HAS_SLOT[index]:
        return args[0], None
    return None, None


def _nethsm_error(index: int, args: tuple[int, ...], exc: NetHSMError) -> int:
    target = (args[0] if args and _HAS_SLOT[index] else None, args[0] if args and _HAS_SESSION[index] else None)
    return failures.nethsm_error(_NAMES[index], target, exc)


def _log_call(index: int, args: tuple[int, ...], rv: int, exc: BaseException | None, ctx) -> None:
    name = _NAMES[index]
    try:
        text = calllog.describe_args(name, _ARGNAMES[index], args, rv)
    except Exception as err:  # a log line must never change the call's result
        text = f"<arguments not rendered: {type(err).__name__}>"
    rv_name = _CKR_NAMES.get(rv, f"{rv:#x}")
    reason = str(exc) if exc is not None else ""
    ms = (calllog.time.perf_counter() - ctx.start) * 1000.0
    logger.debug("{}({}) = {}{} [{:.1f} ms]", name, text, rv_name, f" ({reason})" if reason else "", ms,
                 kind="call", ckr=rv_name, reason=reason, ms=round(ms, 3))


def _after_fork_in_child() -> None:
    """A forked child starts uninitialized: drop sessions, pools and slots without closing the
    parent's connections (closing a TLS socket here would write on the parent's stream)."""
    global _metrics
    _metrics = None
    try:
        library.drop_in_child()
        metrics = sys.modules.get("p11nethsm.metrics")
        if metrics is not None:
            metrics.drop_in_child()
    except Exception:  # pragma: no cover - must never raise in a fork hook
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)
