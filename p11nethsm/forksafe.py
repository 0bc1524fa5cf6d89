"""Fork safety: which threads are inside native code that holds process-wide locks.

A host may fork() while other threads are in the middle of a call. The shim's fork handler
(libshim/shim.c, atfork_prepare) takes the GIL, which stops all Python code, but a thread that
released the GIL inside OpenSSL (a TLS handshake, loading trust stores) may hold one of
OpenSSL's global locks at that moment; the child inherits it locked, with no thread left to
release it, and its first handshake then waits forever. So these sections put their thread id
in `_busy` (list.append/remove are single C calls: atomic under the GIL, and nesting works),
and the fork handler waits, bounded, until `_busy` is empty; it does the same for imports in
progress (importlib's per-module locks). The shim reads `_busy` with the GIL held, without
running any Python code.

A blocked read on an open connection holds no global lock and is not a section: a stalled
NetHSM never delays a fork.
"""

from __future__ import annotations

import ssl
import threading
from contextlib import contextmanager

__all__ = ["native_section", "SectionSSLSocket"]

_busy: list[int] = []  # read by the shim (name and type are part of its contract)


@contextmanager
def native_section():
    tid = threading.get_ident()
    _busy.append(tid)
    try:
        yield
    finally:
        _busy.remove(tid)


class SectionSSLSocket(ssl.SSLSocket):
    """SSLContext.sslsocket_class whose handshake is a native section."""

    def do_handshake(self, *args, **kwargs):
        with native_section():
            return super().do_handshake(*args, **kwargs)
