"""The instances of one slot: lazily built pools, health flags, back-off, round-robin choice.

An instance that fails is marked unreachable (p11nethsm.state.instance_health) and is not chosen
while another one is reachable; when none is, they are all used round robin (a request is the only
way to find out). Each failure in a row pushes its next health check further (`backoff`).

The back-off is made for fleets: thousands of processes that lost a NetHSM at the same moment must
not probe it in the same second when it comes back, and must notice it is back soon. So each wait
is drawn from [b/2, b] (jitter) where b follows BACKOFF, which stops growing at 30 s (the cap):
probes of a fleet spread over 15 s windows, and an instance back after any outage is used again
within 30 s. tests/net/fleet_sim.py drives this code with a fake clock for 10,000 processes.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from p11nethsm.log import logger
from urllib3.connection import HTTPConnection

from p11nethsm.config.model import InstanceConfig, SlotConfig
from p11nethsm.net.pool import InstancePool, InstanceStats, keepalive_options
from p11nethsm.net.tls import make_ssl_context
from p11nethsm.state.instance_health import InstanceHealthMachine

# Without max_idle_connections, an instance's idle pool grows with the number of requests that
# ran at once, up to this many (p11nethsm.net.pool.InstancePool._put_conn).
POOL_GROWS_TO = 256

# Upper bound (seconds) of the wait before the next health check after the 1st, 2nd, ... failure
# in a row; the last value is the cap.
BACKOFF: tuple[float, ...] = (1.0, 1.0, 2.0, 5.0, 10.0, 30.0)
JITTER = 0.5  # the wait is drawn uniformly from [(1 - JITTER) * b, b]

# The fleet simulation replaces these (a fake clock, a seeded generator); random.random is
# reseeded in a forked child by the random module itself.
clock = time.monotonic
uniform01 = random.random


def backoff(failures: int) -> float:
    """Seconds until the next health check after `failures` failures in a row (jittered)."""
    if failures <= 0:
        return 0.0
    bound = BACKOFF[min(failures, len(BACKOFF)) - 1]
    return bound * (1.0 - JITTER * uniform01())


class Backoff(NamedTuple):
    """An instance's back-off bookkeeping, replaced whole (one attribute: readers without the
    lock see a consistent pair)."""

    failures: int = 0  # failures in a row
    next_check: float = 0.0  # monotonic time of the next health check (when unreachable)

    def after_failure(self) -> tuple[Backoff, float]:
        """The bookkeeping after one more failure, and the delay drawn."""
        failures = self.failures + 1
        delay = backoff(failures)
        return Backoff(failures, clock() + delay), delay


_NO_BACKOFF = Backoff()


class Instance:
    """One NetHSM of the cluster.

    `usable` is the health machine's current state value (reachable), never set; the per-request
    paths read the chain `inst.health.state_id.value` inline (no call, no lock). `failures` and
    `next_check` read the `Backoff` value."""

    @property
    def usable(self) -> bool:
        return self.health.state_id.value

    @property
    def failures(self) -> int:
        return self.backoff.failures

    @property
    def next_check(self) -> float:
        return self.backoff.next_check

    def __init__(self, cfg: InstanceConfig, slot: SlotConfig):
        parts = urlsplit(cfg.url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"instance url must be https://host[:port]/api/v1, got {cfg.url!r}")
        self.cfg = cfg
        self.slot = slot
        self.name = cfg.url.rstrip("/")
        self.host = parts.hostname
        self.port = parts.port or 443
        self.base = parts.path.rstrip("/")  # "/api/v1"
        self.health = InstanceHealthMachine(f"instance {self.name}")
        self.backoff = _NO_BACKOFF
        self._pool = None
        self._pool_lock = threading.Lock()
        self.caps = None  # p11nethsm.api.firmware.Capabilities, detected at first need
        self.stats = InstanceStats()

    def __repr__(self) -> str:
        return f"Instance({self.name!r}, {self.health.state_id})"

    @property
    def pool(self):
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = self._make_pool()
                pool = self._pool
        return pool

    def _make_pool(self):

        slot, cfg = self.slot, self.cfg
        options = list(HTTPConnection.default_socket_options)
        ka = slot.tcp_keepalive
        if ka is not None:
            options += keepalive_options(ka.time_seconds, ka.interval_seconds, ka.retries)
        return InstancePool(
            self.host, self.port, label=self.name, ssl_context=make_ssl_context(cfg),
            pins=() if cfg.danger_insecure_cert else tuple(cfg.sha256_fingerprints),
            maxsize=max(1, cfg.max_idle_connections or os.cpu_count() or 1),
            grow_to=0 if cfg.max_idle_connections else POOL_GROWS_TO,
            timeout=slot.timeout_seconds, max_idle=slot.connections_max_idle_duration,
            socket_options=options, stats=self.stats)

    def mark_failed(self, reason: str) -> None:
        """A request failed here: unreachable, next health check after the back-off."""
        with self.health.lock:
            was_usable = self.usable
            self.backoff, delay = self.backoff.after_failure()
            self.caps = None  # it may come back on other firmware (an update reboots it)
            self.health.fire("fail")
        self.stats.failures += 1
        if was_usable:
            logger.warning("{}: instance unreachable ({}); health check in {:.1f} s", self.name, reason, delay)
        pool = self._pool
        if pool is not None:
            pool.drain()

    def begin_check(self) -> bool:
        """unreachable -> retrying; False when there is nothing to check (recovered meanwhile)."""
        return self.health.fire("probe")

    def end_check(self, ok: bool, reason: str = "") -> None:
        with self.health.lock:
            if not self.health.fire("passed" if ok else "failed"):
                return  # a request decided meanwhile
            if ok:
                self.backoff = _NO_BACKOFF
            else:
                self.backoff, delay = self.backoff.after_failure()
        if ok:
            logger.info("{}: instance reachable again (health check)", self.name)
        else:
            logger.debug("{}: health check failed ({}); next in {:.1f} s", self.name, reason, delay)

    def mark_recovered(self) -> None:
        """A request succeeded here while it was marked unreachable."""
        with self.health.lock:
            if not self.health.fire("recover"):
                return
            self.backoff = _NO_BACKOFF
        logger.info("{}: instance reachable again", self.name)

    def forget_pool(self) -> None:
        """After fork: drop the pool without closing its sockets (the parent owns them)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.forget()

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()


class InstanceSet:
    """Round-robin choice among the reachable instances of a slot."""

    def __init__(self, instances: tuple[Instance, ...]):
        if not instances:
            raise ValueError("a slot needs at least one instance")
        self.all = instances
        self._single = instances[0] if len(instances) == 1 else None
        self._next = itertools.count()  # next() is atomic under the GIL

    def __len__(self) -> int:
        return len(self.all)

    def pick(self) -> Instance:
        if self._single is not None:
            return self._single
        insts = self.all
        n = len(insts)
        start = next(self._next)
        for k in range(n):
            inst = insts[(start + k) % n]
            if inst.health.state_id.value:  # usable
                return inst
        return insts[start % n]  # none reachable: try them in turn

    def any_usable(self) -> bool:
        return any(inst.health.state_id.value for inst in self.all)

    def any_usable_but(self, failed: Instance) -> bool:
        return any(inst.health.state_id.value for inst in self.all if inst is not failed)

    def due(self, now: float) -> list[Instance]:
        """Unreachable instances whose back-off has expired."""
        return [inst for inst in self.all if not inst.usable and inst.next_check <= now]
