"""fork() in a Python host: let other threads finish their imports first.

A child forked while another thread is importing a module inherits that module's importlib lock
held, with no thread left to release it: the child's first import of the module waits forever
(found by the chaos soak, tests/soak: a Python host forking while its threads made calls). The
shim's own fork handler waits for that in C hosts; in a Python host CPython runs the fork and
the shim stays out of the way, so this `os.register_at_fork(before=...)` hook waits instead,
bounded, sleeping so the other threads can run. It also waits for threads inside OpenSSL
(p11nethsm.forksafe native sections). Light on purpose: imported by the dispatcher.
"""

from __future__ import annotations

import sys
import threading
import time

WAIT_SECONDS = 2.0  # bound: a stuck import must not stall the host's fork()


def _imports_busy(me: int) -> bool:
    locks = getattr(sys.modules.get("_frozen_importlib"), "_module_locks", None) or {}
    try:
        refs = list(locks.values())
    except RuntimeError:  # changed while copied: look again
        return True
    for ref in refs:
        owner = getattr(ref(), "owner", None)
        if owner is not None and owner != me:
            return True
    return False


def _sections_busy(me: int) -> bool:
    busy = getattr(sys.modules.get("p11nethsm.forksafe"), "_busy", None) or ()
    return any(tid != me for tid in list(busy))


def before_fork() -> None:
    me = threading.get_ident()
    end = time.monotonic() + WAIT_SECONDS
    while (_imports_busy(me) or _sections_busy(me)) and time.monotonic() < end:
        time.sleep(0.001)
