"""Fork safety: a child must not inherit a lock that a thread of the parent held at fork().

A host may fork() while other threads are in the middle of a call. Two kinds of locks would stay
locked in the child, with no thread left to release them, so its first use of them waits forever:

- importlib's per-module locks: the module imports its parts at first use, so threads making their
  first calls are importing (CPython's own fork handling resets only the global import lock);
- OpenSSL's process-wide locks, held by a thread that released the GIL inside a TLS handshake or
  while loading a trust store. Those sections put their thread id in `_busy` (`native_section`;
  list.append/remove are single C calls: atomic under the GIL, and nesting works).

Before a fork, the module waits (at most `WAIT_SECONDS`) until neither is in progress in another
thread: in a C host the shim's pthread_atfork handler does it in C with the GIL held (it reads
`_busy` and importlib's `_module_locks` without running Python code); in a Python host (host mode,
no pthread_atfork handlers) `_before_fork` does it, registered with os.register_at_fork.

A blocked read on an open connection holds no global lock and is not a section: a stalled NetHSM
never delays a fork.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager

__all__ = ["native_section", "WAIT_SECONDS"]

WAIT_SECONDS = 2.0  # the shim's FORK_QUIET_WAIT_US says the same
C_HANDLERS = 0  # set to 1 by the shim when it owns the interpreter (its atfork handlers do the wait)
_busy: list[int] = []  # read by the shim (name and type are part of its contract)


@contextmanager
def native_section():
    tid = threading.get_ident()
    _busy.append(tid)
    try:
        yield
    finally:
        _busy.remove(tid)


def _imports_in_progress(me: int) -> bool:
    locks = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None)
    if not locks:
        return False
    for ref in list(locks.values()):
        lock = ref()
        owner = getattr(lock, "owner", None)
        if owner is not None and owner != me:  # our own import (a fork at import time) is ours
            return True
        if owner is None and lock is not None:
            for name in ("lock", "wakeup"):
                locked = getattr(getattr(lock, name, None), "locked", None)
                if locked is not None and locked():
                    return True
    return False


def prepare() -> None:
    """At C_Initialize in a Python host: import now the modules that register fork hooks of their
    own when the module first uses them. Imported by another thread while `_before_fork` waits,
    their "after" hook would run without their "before" hook (Python snapshots the list):
    concurrent.futures would release a lock it never took."""
    if not C_HANDLERS:
        import concurrent.futures.thread  # noqa: F401  # lazy: only in a Python host (the key enumeration's thread pool)


def _before_fork() -> None:
    if C_HANDLERS:
        return
    me = threading.get_ident()
    deadline = time.monotonic() + WAIT_SECONDS
    while any(t != me for t in _busy) or _imports_in_progress(me):
        if time.monotonic() >= deadline:
            return
        time.sleep(0.0005)


_registered_after: set[str] = set()


def register_after(library: str) -> None:
    """Register the wait again once `library` registered its own fork hooks: "before" hooks run
    in reverse order of registration, and the wait must come before any hook that takes locks
    (loguru acquires all its handler locks), or the threads we wait for could block on them."""
    if library not in _registered_after:
        _registered_after.add(library)
        os.register_at_fork(before=_before_fork)


def _after_fork_child() -> None:
    """In the child: an import that another thread of the parent was running at fork() leaves
    its module lock owned by a thread that does not exist here, and the half-run module in
    sys.modules, so the child's first import of it would wait forever. The wait above makes that
    rare, not impossible (a Python host's other fork hooks run Python code after it, and the wait
    is bounded). Forget both, and the child imports the module afresh: CPython itself resets only
    its global import lock. Runs from PyOS_AfterFork_Child, in C hosts (the shim calls it) and
    Python hosts alike."""
    try:
        _forget_orphaned_imports()
    except Exception:  # noqa: BLE001  (a fork hook's exception would be printed on the host's stderr)
        pass


def _forget_orphaned_imports() -> None:
    locks = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None)
    if not locks:
        return
    me = threading.get_ident()
    for name, ref in list(locks.items()):
        lock = ref()
        if lock is None:
            continue
        owner = getattr(lock, "owner", None)
        # the lock's own mutex: a Lock on 3.11 and 3.13; an RLock without locked() on 3.12
        locked = getattr(getattr(lock, "lock", None), "locked", None)
        orphaned = (owner is not None and owner != me) or (
            owner is None and locked is not None and locked())
        if not orphaned:
            continue
        locks.pop(name, None)
        module = sys.modules.get(name)
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            sys.modules.pop(name, None)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_child)
