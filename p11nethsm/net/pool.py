"""One urllib3 connection pool per instance, and the one request/response exchange on it.

`InstancePool.exchange()` is the single boundary where low-level errors (OSError, ssl, http.client,
urllib3) are caught; it raises `ExchangeError` (net.errors) carrying the *phase* the failure
happened in, which decides whether the request may have reached the server.

The pool subclass adds what urllib3 does not do: pinning several fingerprints, an idle-age limit for
pooled connections (`connections_max_idle_duration`), TCP keepalive options, a quiet `_put_conn`
(a full pool closes the extra connection instead of logging a warning through stdlib logging), and
`drain()` to drop idle connections of an instance that just failed.
"""

from __future__ import annotations

import queue
import select
import socket
import time
from dataclasses import dataclass

from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ClosedPoolError

from p11nethsm.log import logger
from p11nethsm.net.errors import BodyTooLarge, ExchangeError, Phase
from p11nethsm.net.http11 import build_request, read_response
from p11nethsm.net.sigpipe import SigpipeBlocked
from p11nethsm.net.tls import PinMismatch, format_fingerprint, pin_matches

MAX_BODY = 16 * 1024 * 1024  # the largest answer we accept (a cert is <= 1 MiB, a signature is tiny)


def keepalive_options(time_seconds: int | None, interval_seconds: int | None,
                      retries: int | None) -> list[tuple[int, int, int]]:
    """socket options for TCP keepalive (TCP_KEEPIDLE/KEEPINTVL/KEEPCNT; macOS: TCP_KEEPALIVE)."""
    opts = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    idle = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))
    for name_value, value in ((idle, time_seconds),
                              (getattr(socket, "TCP_KEEPINTVL", None), interval_seconds),
                              (getattr(socket, "TCP_KEEPCNT", None), retries)):
        if name_value is not None and value is not None:
            opts.append((socket.IPPROTO_TCP, name_value, int(value)))
    return opts


@dataclass
class InstanceStats:
    """Counters of one instance (plain ints: exact enough under the GIL for tests and benchmarks)."""

    requests: int = 0  # requests written (API calls and health checks)
    connections: int = 0  # TCP+TLS connections opened
    failures: int = 0  # exchanges without a usable answer, and 412/5xx answers
    health_checks: int = 0
    expired: int = 0  # pooled connections dropped for being idle too long
    discarded: int = 0  # connections closed because the pool was full


class NetHSMConnection(HTTPSConnection):
    """HTTPS connection that checks the leaf pin after the handshake and remembers its last use."""

    label: str = ""
    pins: tuple[bytes, ...] = ()
    last_used: float = 0.0
    deadline: float | None = None  # of the exchange that connects (TCP connect + TLS handshake)

    def _new_conn(self):
        sock = super()._new_conn()
        if self.deadline is not None:  # the TLS handshake gets what the TCP connect left
            sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
        return sock

    def connect(self) -> None:
        super().connect()
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        if self.pins:
            der = self.sock.getpeercert(binary_form=True) or b""
            ok, got = pin_matches(der, self.pins)
            if not ok:
                logger.error("{}: TLS certificate fingerprint mismatch: got {}, expected {}", self.label,
                             format_fingerprint(got), " or ".join(format_fingerprint(p) for p in self.pins))
                self.close()
                raise PinMismatch(self.label, got, self.pins)


class InstancePool(HTTPSConnectionPool):
    """The pool of one instance (maxsize = max_idle_connections, never blocking; without
    max_idle_connections it starts at the number of CPUs and grows with the concurrency seen)."""

    ConnectionCls = NetHSMConnection

    def __init__(self, host: str, port: int | None, *, label: str, ssl_context, pins: tuple[bytes, ...],
                 maxsize: int, timeout: float | None, max_idle: float | None,
                 socket_options: list[tuple[int, int, int]], stats: InstanceStats, grow_to: int = 0):
        super().__init__(host, port, maxsize=maxsize, block=False, retries=False, ssl_context=ssl_context,
                         socket_options=socket_options)
        self.label = label
        self.host_line = f"Host: {host}:{port}\r\n".encode("idna" if not host.isascii() else "ascii")
        self.pins = pins
        self.request_timeout = timeout
        self.max_idle = max_idle
        self.stats = stats
        self.grow_to = grow_to  # > maxsize: the idle pool grows on demand up to this many

    def _new_conn(self) -> NetHSMConnection:
        conn = super()._new_conn()
        conn.label = self.label
        conn.pins = self.pins
        conn.timeout = self.request_timeout
        return conn

    def _get_conn(self, timeout: float | None = None) -> NetHSMConnection:
        """urllib3's _get_conn (never blocking) with a cheaper liveness check: one poll() on the
        connection's own poll object instead of a new one per request; plus the idle-age limit."""
        pool = self.pool
        if pool is None:
            raise ClosedPoolError(self, "Pool is closed.")
        with pool.mutex:  # pool.get(block=False) without the Condition calls: see _put_conn
            idle = pool.queue
            conn = idle.pop() if idle else None
        if conn is None:
            return self._new_conn()
        if conn.sock is not None:
            if self.max_idle is not None and time.monotonic() - conn.last_used > self.max_idle:
                conn.close()  # reconnects on use
                self.stats.expired += 1
            elif conn.poller.poll(0):  # readable while idle: closed by the peer (or garbage)
                conn.close()
        return conn

    def _put_conn(self, conn) -> None:
        if conn is None:
            return
        conn.last_used = time.monotonic()
        pool = self.pool
        if pool is not None:
            # The LifoQueue's list under its own mutex, as Queue.put(block=False) does, without
            # the Condition enter/notify around it (2.6 of 3.7 us per get+put, measured): no
            # thread ever blocks on this queue (block=False; urllib3 only takes from it at close).
            with pool.mutex:
                idle = pool.queue
                if len(idle) < pool.maxsize or pool.maxsize <= 0:
                    idle.append(conn)
                    return
                if self.grow_to > pool.maxsize:
                    # Default size: as many idle connections as requests ran at once. Closing
                    # this one would make the next request of that many threads open a new
                    # TLS connection: churn (the vendor module's issue #157).
                    pool.maxsize += 1
                    idle.append(conn)
                    return
            self.stats.discarded += 1
        conn.close()

    def drain(self) -> int:
        """Close the idle connections (an instance that failed: they are suspect). Returns how many."""
        pool, closed = self.pool, 0
        if pool is None:
            return 0
        taken = []
        try:
            while True:
                taken.append(pool.get(block=False))
        except queue.Empty:
            pass
        for conn in taken:
            if conn is not None and conn.sock is not None:
                conn.close()
                closed += 1
            try:
                pool.put(None, block=False)
            except queue.Full:
                break
        return closed

    def forget(self) -> None:
        """After fork: drop every pooled connection without closing it (the parent still owns it)."""
        self.pool = None

    def exchange(self, method: str, url: str, body: bytes | None, head: bytes,
                 conn: NetHSMConnection | None = None, deadline: float | None = None) -> tuple[int, str, bytes]:
        """`_exchange` with SIGPIPE blocked in this thread (see p11nethsm.net.sigpipe)."""
        with SigpipeBlocked():
            return self._exchange(method, url, body, head, conn, deadline)

    def _exchange(self, method: str, url: str, body: bytes | None, head: bytes,
                  conn: NetHSMConnection | None = None, deadline: float | None = None) -> tuple[int, str, bytes]:
        """Send one request, read the whole answer: (status, content type, body).

        `head` is the encoded header lines (each ending in CRLF; built once per credentials, not
        per request). The request goes out in one write and the answer is read and parsed by
        p11nethsm.net.http11 (http.client's email-based parsing was the biggest single cost).
        Raises ExchangeError (no usable answer) or BodyTooLarge. With `conn`, use that
        connection (a health check on a fresh, unpooled connection) and never pool it.
        `deadline` (monotonic seconds): the whole exchange, connect and TLS handshake included,
        ends by then whatever the peer does (tls.DeadlineSSLSocket); a per-read timeout alone
        would let a peer that drips bytes keep it alive forever.
        """
        pooled = conn is None
        if pooled:
            conn = self._get_conn()
        phase = Phase.CONNECT
        try:
            sock = conn.sock
            if sock is None:
                if deadline is not None:
                    conn.timeout = max(deadline - time.monotonic(), 0.001)
                conn.deadline = deadline
                conn.connect()
                self.stats.connections += 1
                sock = conn.sock
            sock.deadline = deadline
            phase = Phase.SEND
            self.stats.requests += 1
            sock.sendall(build_request(method, url, self.host_line, head, body))
            phase = Phase.READ
            status, ctype, data, reusable = read_response(sock.recv, MAX_BODY)
            if not reusable:
                conn.close()
        except BaseException as exc:
            conn.close()
            if pooled:
                self._put_conn(conn)
            if isinstance(exc, BodyTooLarge) or not isinstance(exc, Exception):
                raise
            raise ExchangeError(phase, exc) from exc
        if pooled:
            self._put_conn(conn)
        return status, ctype, data
