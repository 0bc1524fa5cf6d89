"""The module's logger: loguru, imported on the first line that is actually written.

Importing loguru costs about 55 ms and 12 MB (it pulls in asyncio and ssl): more than the rest
of C_Initialize together, and most processes that load the module at the default level (Warn)
never write a line. So every module logs through `p11nethsm.log.logger`, a stand-in whose
level methods first ask whether anyone would see the line:

- our logger is loaded: forward, and its sinks filter as usual;
- else only lines at or above `logflags.LEVEL_NO` (the lowest level of our configured sinks)
  import loguru, run the sink set-up that logging_setup.configure() left pending, and forward.

Everything else (`opt`, `bind`, `add`, `remove`...) is loguru's own, loaded on first use.

The logger is the module's own: a loguru Logger on a Core of its own, not the process-wide
`loguru.logger`, which belongs to the host when the host is a Python program. So the module never
adds to or removes from the host's handlers (its default stderr handler stays), the host's sinks
never see the module's records and the module's sinks never see the host's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from p11nethsm import forksafe, logflags

__all__ = ["logger", "loaded", "on_load", "real"]

_real = None
_lock = threading.Lock()
_pending: list[Callable] = []  # set-up steps waiting for loguru (run once, in order)

# loguru's level numbers
TRACE, DEBUG, INFO, SUCCESS, WARNING, ERROR, CRITICAL = 5, 10, 20, 25, 30, 40, 50
_LEVEL_NO = {"TRACE": TRACE, "DEBUG": DEBUG, "INFO": INFO, "SUCCESS": SUCCESS, "WARNING": WARNING,
             "ERROR": ERROR, "CRITICAL": CRITICAL}


def loaded() -> bool:
    return _real is not None


def _own_logger():
    """A loguru Logger with a Core of its own (loguru builds its global `logger` the same way)."""
    try:
        from loguru._logger import Core, Logger  # lazy: loguru only when a line is first written

        return Logger(core=Core(), exception=None, depth=0, record=False, lazy=False, colors=False,
                      raw=False, capture=True, patchers=[], extra={})
    except (ImportError, TypeError):  # a loguru whose internals moved: share the global logger,
        from loguru import logger  # lazy: as above; never touching its handlers (our sinks filter our records)

        return logger


def real():
    """Our loguru logger, with our pending sink set-up applied."""
    global _real
    if _real is not None:
        return _real
    with _lock:
        if _real is None:
            own = _own_logger()
            forksafe.register_after("loguru")
            for step in _pending:
                step(own)
            _pending.clear()
            _real = own
    return _real


def on_load(step: Callable) -> None:
    """Run `step(loguru_logger)` now if loguru is loaded, else when it first is."""
    with _lock:
        if _real is None:
            _pending.append(step)
            return
    step(_real)


def discard_pending() -> None:
    with _lock:
        _pending.clear()


def _wanted(no: int) -> bool:
    return _real is not None or no >= logflags.LEVEL_NO


def _level_method(no: int, name: str, **opt):
    """A logger method: one flag test, and only when the level is wanted, loguru (the caller's
    frame is the record's: depth=1)."""
    def method(self, message, *args, **kwargs):
        if _wanted(no):
            getattr(real().opt(depth=1, **opt), name)(message, *args, **kwargs)

    method.__name__ = name
    return method


class _Logger:
    """Stand-in for loguru's logger (see the module docstring)."""

    __slots__ = ()

    trace = _level_method(TRACE, "trace")
    debug = _level_method(DEBUG, "debug")
    info = _level_method(INFO, "info")
    success = _level_method(SUCCESS, "success")
    warning = _level_method(WARNING, "warning")
    error = _level_method(ERROR, "error")
    critical = _level_method(CRITICAL, "critical")
    exception = _level_method(ERROR, "error", exception=True)

    def log(self, level, message, *args, **kwargs):
        no = level if isinstance(level, int) else _LEVEL_NO.get(str(level).upper(), WARNING)
        if _wanted(no):
            real().opt(depth=1).log(level, message, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(real(), name)


logger = _Logger()
