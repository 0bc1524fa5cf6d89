"""The retry policy value object: no sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p11nethsm.api.errors import ServerError, TransportError
from p11nethsm.config.model import RetryConfig
from p11nethsm.net.retry import Failure, RetryPolicy


def fail(maybe: bool, name: str = "a") -> Failure:
    return Failure(name, TransportError("x", instance=name), maybe)


def test_no_config_means_a_single_attempt():
    policy = RetryPolicy.from_config(None, idempotent=True)
    with pytest.raises(TransportError) as exc:
        policy.increment(fail(False))
    assert exc.value.attempts == 1


def test_increment_returns_a_new_policy_and_leaves_the_old_one_alone():
    policy = RetryPolicy.from_config(RetryConfig(2, 0.5), idempotent=True)
    nxt = policy.increment(fail(False))
    assert (policy.remaining, nxt.remaining) == (2, 1)
    assert policy.history == () and len(nxt.history) == 1
    assert nxt.delay == 0.5 and nxt.attempts == 2
    with pytest.raises(AttributeError):
        nxt.remaining = 5  # frozen


def test_exhausted_policy_raises_the_last_error_with_attempts():
    policy = RetryPolicy.from_config(RetryConfig(2, 0), idempotent=True)
    policy = policy.increment(fail(False)).increment(fail(True))
    last = fail(False)
    with pytest.raises(TransportError) as exc:
        policy.increment(last)
    assert exc.value is last.error
    assert exc.value.attempts == 3
    assert exc.value.outcome_unknown  # one attempt may have been processed


def test_not_sent_failures_are_retried_even_for_non_idempotent_calls():
    policy = RetryPolicy.from_config(RetryConfig(3, 0), idempotent=False)
    for _ in range(3):
        policy = policy.increment(fail(False))
    assert policy.remaining == 0


def test_maybe_processed_failure_of_non_idempotent_call_stops_at_once_outcome_unknown():
    policy = RetryPolicy.from_config(RetryConfig(5, 0), idempotent=False)
    err = ServerError("HTTP 500", status=500)
    with pytest.raises(ServerError) as exc:
        policy.increment(Failure("a", err, True))
    assert exc.value.outcome_unknown and exc.value.attempts == 1


def test_maybe_processed_failure_of_idempotent_call_is_retried():
    policy = RetryPolicy.from_config(RetryConfig(1, 0), idempotent=True)
    assert policy.increment(fail(True)).remaining == 0


def test_repr_names_failures_for_log_lines():
    policy = RetryPolicy.from_config(RetryConfig(1, 0), idempotent=True).increment(fail(False, "https://h1"))
    assert "https://h1: TransportError" in repr(policy)


@given(count=st.integers(0, 10), outcomes=st.lists(st.booleans(), min_size=1, max_size=15),
       idempotent=st.booleans())
def test_never_more_than_count_plus_one_attempts(count, outcomes, idempotent):
    policy = RetryPolicy.from_config(RetryConfig(count, 0), idempotent=idempotent)
    attempts = 1
    for maybe in outcomes:
        try:
            policy = policy.increment(fail(maybe))
        except TransportError:
            break
        attempts += 1
    assert attempts <= count + 1
    if not idempotent:
        # a non-idempotent call is never sent again once it may have been processed
        assert all(not f.maybe_processed for f in policy.history)


def test_retry_delay_is_jittered_within_half_to_full(monkeypatch):
    from p11nethsm.net import instances

    p = RetryPolicy(3, 2.0, True)
    monkeypatch.setattr(instances, "uniform01", lambda: 0.0)
    assert p.jittered_delay() == 2.0
    monkeypatch.setattr(instances, "uniform01", lambda: 0.999)
    assert 1.0 <= p.jittered_delay() < 1.01
