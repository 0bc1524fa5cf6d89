"""The retry policy of one API call: an immutable value object, testable without sockets.

Like urllib3's `Retry`: `increment(failure)` returns the policy for the next attempt or raises the
failure's error. Every failure is classified by what it says about the request:

* not processed (`maybe_processed=False`): connect refused, TLS failure, send error, a 412 answer (the
  state gate runs before anything else on the device): fail over freely, whatever the call
  (a connection refused outright while another instance is reachable does not even reach this
  policy: net.failover hands it to the next instance without using up a retry);
* maybe processed (read timeout, connection lost while waiting, 5xx): retried only when the call is
  idempotent. A non-idempotent call raises at once with `outcome_unknown=True` on the error, and its
  caller resolves the outcome by looking (see NetHSM.generate_key / move_key), never by repeating it.

The errors are the caller's (p11nethsm.api.errors via the api's error mapper): this module only
sets their `outcome_unknown` and `attempts`.

Bounds (README.md, Configuration, "Network behaviour"): at most `count + 1` API requests
per call (plus at most 3 inline health checks when threads are not allowed), so at most
`(count + 1) * timeout_seconds + 3` seconds: each attempt ends `timeout_seconds` after it starts
(connect, send, read together; p11nethsm.net.tls.DeadlineSSLSocket), and `delay_seconds` (jittered
to [delay/2, delay]) before a retry that has no reachable instance to go to (failing over to a
reachable one does not wait) is cut short, and retries stop, at that bound (net.failover).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from p11nethsm.config.model import RetryConfig
from p11nethsm.net import instances


class Failure(NamedTuple):
    """One failed attempt, as kept in the policy's history."""

    instance: str
    error: Exception  # carries `outcome_unknown` and `attempts` (set by increment)
    maybe_processed: bool


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    remaining: int  # retries left (retries.count at the start of a call)
    delay: float = 0.0  # seconds to wait before a retry that cannot fail over to a reachable instance
    idempotent: bool = True
    history: tuple[Failure, ...] = ()

    @classmethod
    def from_config(cls, cfg: RetryConfig | None, *, idempotent: bool) -> RetryPolicy:
        if cfg is None:
            return cls(0, 0.0, idempotent)
        return cls(max(0, int(cfg.count)), max(0.0, float(cfg.delay_seconds)), idempotent)

    @property
    def attempts(self) -> int:
        return len(self.history) + 1

    def increment(self, failure: Failure) -> RetryPolicy:
        """The policy for the next attempt; raises `failure.error` when it must not be retried."""
        history = self.history + (failure,)
        err = failure.error
        if failure.maybe_processed and not self.idempotent:
            err.outcome_unknown = True
            err.attempts = len(history)
            raise err
        if self.remaining <= 0:
            err.outcome_unknown = failure.maybe_processed or any(f.maybe_processed for f in self.history)
            err.attempts = len(history)
            raise err
        return replace(self, remaining=self.remaining - 1, history=history)

    def jittered_delay(self) -> float:
        """The wait before a retry: drawn from [delay/2, delay] (like the health back-off), so the
        processes of a fleet that failed at the same moment do not retry at the same moment."""
        return self.delay * (1.0 - instances.JITTER * instances.uniform01())

    def out_of_time(self) -> RetryPolicy:
        """The call's deadline passed: no retry left (the next failure ends the call)."""
        return replace(self, remaining=0)

    def __repr__(self) -> str:
        return (f"RetryPolicy(remaining={self.remaining}, delay={self.delay}, idempotent={self.idempotent}, "
                f"failed={[f'{f.instance}: {type(f.error).__name__}' for f in self.history]})")
