"""Health checks of unreachable instances: GET /health/ready (200 = Operational and ready).

* With threads: one lazily started daemon thread per slot (`HealthChecker`), woken by failures,
  sleeping on an Event until the earliest back-off expires; `stop()` wakes it and aborts a check
  in progress, so close() returns promptly.
* Without threads: `inline_checks()`, called by the request loop, at most `INLINE_CHECKS` per API
  call with `INLINE_TIMEOUT`-second timeouts (README, configuration reference: retries).
"""

from __future__ import annotations

import socket
import threading
import time

from p11nethsm import hostsignals
from p11nethsm.log import logger
from p11nethsm.net.errors import BodyTooLarge, ExchangeError
from p11nethsm.net.instances import Instance, InstanceSet

INLINE_CHECKS = 3
INLINE_TIMEOUT = 1.0
BACKGROUND_TIMEOUT = 5.0  # upper bound of a background check (less when timeout_seconds is less)
_HEADERS = b"Accept: */*\r\nUser-Agent: p11nethsm\r\n"


def probe(inst: Instance, timeout: float, on_connection=None) -> tuple[bool, str]:
    """One GET /health/ready on a fresh connection (not pooled): (ready, reason)."""
    pool = inst.pool
    conn = pool._new_conn()
    conn.timeout = timeout
    if on_connection is not None:
        on_connection(conn)
    inst.stats.health_checks += 1
    try:
        status, _, _ = pool.exchange("GET", inst.base + "/health/ready", None, _HEADERS, conn=conn,
                                     deadline=time.monotonic() + timeout)
    except (ExchangeError, BodyTooLarge) as exc:
        return False, str(exc)
    finally:
        conn.close()
    return status == 200, f"HTTP {status}"


def check(inst: Instance, timeout: float, on_connection=None) -> bool:
    if not inst.begin_check():
        return inst.usable
    ok, reason = False, "aborted"
    try:
        ok, reason = probe(inst, timeout, on_connection)
    finally:
        inst.end_check(ok, reason)
    return ok


def inline_checks(instances: InstanceSet, budget: int) -> int:
    """Check due unreachable instances in the caller's thread; returns how many were checked."""
    used = 0
    if budget <= 0:
        return 0
    for inst in instances.due(time.monotonic()):
        check(inst, INLINE_TIMEOUT)
        used += 1
        if used >= budget:
            break
    return used


class HealthChecker:
    """The background thread that restores unreachable instances of one slot."""

    def __init__(self, instances: InstanceSet, timeout: float | None):
        self.instances = instances
        self.timeout = min(timeout, BACKGROUND_TIMEOUT) if timeout else BACKGROUND_TIMEOUT
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._active = None  # the connection of the check in progress (to abort it on stop)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """An instance failed: start the thread if needed and let it recompute its schedule."""
        with self._lock:
            if self._stopping:
                return
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="p11nethsm-health", daemon=True)
                with hostsignals.blocked():  # the host's signals go to the host's threads
                    self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        conn = self._active
        sock = getattr(conn, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # our own fresh probe connection: abort it
            except OSError:
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopping:
                self._wake.clear()
                for inst in self.instances.due(time.monotonic()):
                    if self._stopping:
                        return
                    check(inst, self.timeout, self._track)
                    self._active = None
                pending = [inst.next_check for inst in self.instances.all if not inst.usable]
                wait = max(0.05, min(pending) - time.monotonic()) if pending else None
                self._wake.wait(wait)
        except Exception:  # never die silently: the instances would stay unreachable
            logger.exception("health checker stopped")

    def _track(self, conn) -> None:
        self._active = conn
