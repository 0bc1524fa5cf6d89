"""Failover and retries: the loop every API call of a slot runs through.

`Failover.call()` picks an instance (round robin over the reachable ones, net.instances), makes
one exchange on its pool (net.pool), then returns the answer as a `Response`, fails over to the
next instance, or retries as the immutable `RetryPolicy` allows (net.retry):

* a connection refused outright while another instance is reachable: nothing was sent and no
  time was spent, so going to the next member is failover, not a retry (no retry is used up);
* not processed (connect/TLS/send failure, a 412 answer: the device's state gate runs first):
  fail over whatever the call; a 412 from every instance ends the call;
* maybe processed (read timeout, connection lost while waiting, 5xx): retried only when the call
  is idempotent; otherwise the error is raised at once with `outcome_unknown=True` and the caller
  resolves the outcome by looking, never by repeating the call.

Each attempt ends `timeout_seconds` after it starts (connect, send and read together:
net.tls.DeadlineSSLSocket); the whole call, retry delays and inline health checks included, ends
`(retries.count + 1) * timeout_seconds + 3` seconds after it starts (README.md, Configuration,
"Network behaviour"). A failed instance is marked (net.instances) and the health
checker (net.health) woken; a success on an instance marked unreachable marks it recovered.

The loop knows HTTP, not the NetHSM's error tree: the `ErrorMapper` given by the caller (the api
layer) turns a transport failure or an error answer into the exception to raise.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, NamedTuple, Protocol

from p11nethsm import logflags
from p11nethsm.config.model import SlotConfig
from p11nethsm.log import logger
from p11nethsm.net.errors import BodyTooLarge, ExchangeError
from p11nethsm.net.health import INLINE_CHECKS, HealthChecker, inline_checks
from p11nethsm.net.instances import Instance, InstanceSet
from p11nethsm.net.retry import Failure, RetryPolicy

__all__ = ["CALL_SLACK", "ErrorMapper", "Failover", "Response"]

CALL_SLACK = 3.0  # seconds beyond (retries.count + 1) * timeout_seconds that one API call may take

_monotonic = time.monotonic


class Response(NamedTuple):
    """One HTTP answer: status, content type (the one header the API's answers need), body, and
    the instance (URL) that gave it. Read by name (`r.status`, `r.body`), never by index.

    Immutable like a frozen dataclass, made here with `tuple.__new__`: a tenth of the cost of a
    frozen dataclass's __init__ on the per-signature path (0.28 vs 3.5 us measured side by side
    on the loaded bench machine, tests/net/test_call.py::test_response_is_an_immutable_value)."""

    status: int
    content_type: str
    body: bytes
    instance: str


_response = tuple.__new__  # Response without NamedTuple's __new__ (a Python function)


class ErrorMapper(Protocol):
    """What the layer above makes of a failed attempt (p11nethsm.api.mapping). The errors it
    returns get `outcome_unknown` and `attempts` set here."""

    def transport(self, instance: str, method: str, path: str, exc: ExchangeError) -> Exception: ...

    def answer(self, response: Response, method: str, path: str, who: Any) -> Exception: ...

    def bad(self, instance: str, method: str, path: str, status: int | None, reason: str) -> Exception: ...


class Failover:
    """The instances of one slot and the request loop over them. Thread-safe."""

    def __init__(self, slot: SlotConfig, errors: ErrorMapper, *, threads: bool, metrics=None):
        self.slot = slot
        self.label = slot.label
        self.threads = threads
        self._errors = errors
        self._metrics = metrics  # p11nethsm.metrics.Metrics, or None
        self.instances = InstanceSet(tuple(Instance(cfg, slot) for cfg in slot.instances))
        self._policies = {True: RetryPolicy.from_config(slot.retries, idempotent=True),
                          False: RetryPolicy.from_config(slot.retries, idempotent=False)}
        t = slot.timeout_seconds
        self.timeout = t if t and math.isfinite(t) and t > 0 else None
        self.budget = ((self._policies[True].remaining + 1) * self.timeout + CALL_SLACK
                       if self.timeout else None)
        self._checker = None
        self._checker_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        self._closed = True
        checker, self._checker = self._checker, None
        if checker is not None:
            checker.stop()
        for inst in self.instances.all:
            inst.close()

    def drop_after_fork(self) -> None:
        """In a forked child: forget pools and the health thread, touching no socket."""
        for inst in self.instances.all:
            inst.forget_pool()
        self.instances = InstanceSet(tuple(Instance(cfg, self.slot) for cfg in self.slot.instances))
        self._checker = None
        self._checker_lock = threading.Lock()

    def call(self, method: str, path: str, head: bytes, body: bytes | Callable[[Instance], bytes] | None,
             who: Any = None, idempotent: bool = True, recovers: bool = True) -> Response:
        """One API call: the first answer below 300, or the mapped error of the last attempt.
        `head`: the encoded header lines; `body`: bytes, or a function of the chosen instance
        returning them (a request built for the firmware that receives it); `who`: handed to
        the error mapper (the credentials); `recovers`: a success marks the instance recovered."""
        timeout = self.timeout
        end = _monotonic() + self.budget if timeout else None  # the call's deadline
        policy = self._policies[idempotent]
        inline = 0 if self.threads else INLINE_CHECKS  # health checks in the caller's thread
        locked: set[str] | None = None  # instances that answered 412 during this call
        while True:
            if inline:
                inline = self._inline_checks(inline)
            inst = self.instances.pick()
            deadline = min(_monotonic() + timeout, end) if timeout else None
            try:
                data = body(inst) if callable(body) else body
                started = _monotonic()
                status, ctype, data = inst.pool.exchange(method, inst.base + path, data, head, deadline=deadline)
            except ExchangeError as exc:
                policy = self._unreachable(inst, method, path, exc, policy, end)
                continue
            except BodyTooLarge:
                raise self._errors.bad(inst.name, method, path, None, "answer larger than the size limit") from None
            if self._metrics is not None:
                self._metrics.request(self.label, inst.name, _monotonic() - started)
            if status < 300:
                if recovers and not inst.usable:
                    inst.mark_recovered()
                if logflags.DEBUG:
                    _log_answer(method, inst.name, path, status, ctype, data, _monotonic() - started)
                return _response(Response, (status, ctype, data, inst.name))
            err = self._errors.answer(_response(Response, (status, ctype, data, inst.name)), method, path, who)
            if status == 412:
                locked = (locked or set()) | {inst.name}
                if len(locked) == len(self.instances):  # every member is Locked/Unprovisioned
                    inst.mark_failed("412")
                    self._kick_checker()
                    err.attempts = len(policy.history) + 1
                    raise err
            elif status < 500:  # an answer that settles the call
                err.outcome_unknown = any(f.maybe_processed for f in policy.history)
                err.attempts = len(policy.history) + 1
                raise err
            policy = self._failed(inst, policy, err, status >= 500, end)

    def _unreachable(self, inst: Instance, method: str, path: str, exc: ExchangeError,
                     policy: RetryPolicy, end: float | None) -> RetryPolicy:
        err = self._errors.transport(inst.name, method, path, exc)
        if exc.refused and self.instances.any_usable_but(inst):
            # Nothing was sent and no time was spent: failover, not a retry (one node down must
            # not fail calls).
            if self._metrics is not None:
                self._metrics.failover(self.label, inst.name)
            inst.mark_failed(str(exc))
            self._kick_checker()
            return policy
        return self._failed(inst, policy, err, exc.phase.maybe_processed, end)

    def _failed(self, inst: Instance, policy: RetryPolicy, err: Exception, maybe_processed: bool,
                end: float | None) -> RetryPolicy:
        """Mark the instance, then the next policy (raises when the call must stop: retries used
        up, or the call's deadline `end` reached)."""
        status = getattr(err, "status", None)
        inst.mark_failed(f"{status}" if status else str(err.args[0] if err.args else err))
        self._kick_checker()
        if self._metrics is not None:
            self._metrics.retry(self.label, inst.name)
            if self.instances.any_usable_but(inst):
                self._metrics.failover(self.label, inst.name)
        if end is not None and _monotonic() >= end:
            policy = policy.out_of_time()
        policy = policy.increment(Failure(inst.name, err, maybe_processed))
        if policy.delay and not self.instances.any_usable():
            delay = policy.jittered_delay()  # hosts that failed together do not retry together
            time.sleep(delay if end is None else max(0.0, min(delay, end - _monotonic())))
        return policy

    def _inline_checks(self, budget: int) -> int:
        for inst in self.instances.all:
            if not inst.usable:
                return budget - inline_checks(self.instances, budget)
        return budget

    def _kick_checker(self) -> None:
        if not self.threads or self._closed:
            return
        checker = self._checker
        if checker is None:
            with self._checker_lock:
                if self._checker is None:
                    self._checker = HealthChecker(self.instances, self.slot.timeout_seconds)
                checker = self._checker
        checker.notify()


def _log_answer(method: str, instance: str, path: str, status: int, ctype: str, data: bytes,
                seconds: float) -> None:
    ms = seconds * 1000.0
    logger.debug("{} {}{} -> {} ({:.1f} ms)", method, instance, path, status, ms, kind="request",
                 instance=instance, method=method, path=path, status=status, ms=round(ms, 3))
    if logflags.TRACE:  # sizes and types only: bodies can hold secrets
        logger.trace("{} {}{}: {} bytes of {} answered", method, instance, path, len(data),
                     ctype or "no content type")
