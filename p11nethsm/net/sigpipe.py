"""Keep SIGPIPE away from the host.

The embedded interpreter installs no signal handlers, so SIGPIPE keeps the host's
disposition, and most C hosts (pkcs11-tool among them) leave it at the default: terminate.
A NetHSM that closes a connection while we write to it makes the kernel raise SIGPIPE in
the writing thread (OpenSSL writes without MSG_NOSIGNAL). So every exchange blocks SIGPIPE
in the calling thread, consumes one that became pending meanwhile, and restores the
thread's mask: the write fails with EPIPE as an ordinary error instead.
tests/net/test_sigpipe.py kills the host without this.
"""

from __future__ import annotations

import signal

_PIPE = {signal.SIGPIPE}


class SigpipeBlocked:
    """Context manager; cheap enough for every request (three syscalls)."""

    __slots__ = ("_old",)

    def __enter__(self):
        self._old = signal.pthread_sigmask(signal.SIG_BLOCK, _PIPE)
        return self

    def __exit__(self, *exc):
        if signal.SIGPIPE in self._old:
            return False  # already blocked by the host: leave everything as it was
        if signal.SIGPIPE in signal.sigpending():
            signal.sigtimedwait(_PIPE, 0)
        signal.pthread_sigmask(signal.SIG_SETMASK, self._old)
        return False
