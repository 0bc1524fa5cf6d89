"""The threads the module starts take none of the host's signals.

A process-directed signal (SIGTERM, SIGHUP, SIGINT, SIGUSR1... sent with kill) goes to any thread
that does not block it. Delivered to one of our threads, the host's handler would run there and the
host's own thread would not see the EINTR it waits for (nginx, for one, notices a reload or
shutdown through an interrupted epoll_wait). So every thread the module starts is started with the
asynchronous signals blocked (a new thread inherits the mask of the thread that starts it; the
caller's mask is restored right after): the kernel then delivers them to the host's threads only.
Synchronous signals (a fault in that thread itself) stay unblocked.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager

__all__ = ["blocked"]

_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT,
                signal.SIGSYS}
_ASYNC = signal.valid_signals() - _SYNCHRONOUS


@contextmanager
def blocked():
    """Block the asynchronous signals in this thread while threads are started in the block."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _ASYNC)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
