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

import _signal  # signal's C functions: the signal module's wrappers turn every mask into Enum sets

_PIPE = {_signal.SIGPIPE}
_SIGPIPE = _signal.SIGPIPE
_BLOCK, _SETMASK = _signal.SIG_BLOCK, _signal.SIG_SETMASK
_sigmask, _sigpending, _sigtimedwait = _signal.pthread_sigmask, _signal.sigpending, _signal.sigtimedwait


class SigpipeBlocked:
    """Context manager; cheap enough for every request (three syscalls)."""

    __slots__ = ("_old",)

    def __enter__(self):
        self._old = _sigmask(_BLOCK, _PIPE)
        return self

    def __exit__(self, *exc):
        old = self._old
        if _SIGPIPE in old:
            return False  # already blocked by the host: leave everything as it was
        if _SIGPIPE in _sigpending():
            _sigtimedwait(_PIPE, 0)
        _sigmask(_SETMASK, old)
        return False
