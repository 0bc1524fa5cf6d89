"""Instance selection, back-off, the health chart and the status table: no sockets."""

from __future__ import annotations

import time

import pytest

from p11nethsm.api import errors
from p11nethsm.ck.constants import CKR
from p11nethsm.net import instances as inst_mod
from p11nethsm.net.instances import Instance, InstanceSet, backoff
from p11nethsm.state.base import TransitionNotAllowed
from p11nethsm.state.instance_health import InstanceHealthMachine

from .conftest import make_slot


def make_set(n: int) -> InstanceSet:
    slot = make_slot([f"https://h{i}:8443/api/v1" for i in range(n)])
    return InstanceSet(tuple(Instance(c, slot) for c in slot.instances))


def test_instance_parses_url_without_io():
    inst = make_set(1).all[0]
    assert (inst.host, inst.port, inst.base) == ("h0", 8443, "/api/v1")
    assert inst._pool is None  # nothing built before the first request


def test_http_url_is_refused():
    slot = make_slot(["http://h:80/api/v1"])
    with pytest.raises(ValueError):
        Instance(slot.instances[0], slot)


def test_round_robin_over_reachable_instances():
    s = make_set(3)
    picks = [s.pick().name for _ in range(6)]
    assert picks == [i.name for i in s.all] * 2


def test_unreachable_instance_is_skipped_while_another_is_reachable():
    s = make_set(3)
    s.all[1].mark_failed("test")
    picks = {s.pick().name for _ in range(12)}
    assert s.all[1].name not in picks and len(picks) == 2


def test_all_unreachable_still_round_robin():
    s = make_set(2)
    for i in s.all:
        i.mark_failed("test")
    assert {s.pick().name for _ in range(4)} == {i.name for i in s.all}
    assert not s.any_usable()


def test_backoff_schedule_grows_jittered_and_caps():
    """Each wait lies in [b/2, b] of the schedule; the cap (30 s) keeps recovery detection prompt."""
    bounds = [1, 1, 2, 5, 10, 30, 30, 30, 30]
    draws = [[backoff(n) for n in range(1, 10)] for _ in range(200)]
    for row in draws:
        assert all(b / 2 <= w <= b for w, b in zip(row, bounds)), row
    assert len({row[5] for row in draws}) > 100  # jittered: processes that failed together spread out
    assert backoff(0) == 0.0


def test_backoff_bounds_at_both_ends_of_the_draw(monkeypatch):
    monkeypatch.setattr(inst_mod, "uniform01", lambda: 0.0)
    assert backoff(7) == 30.0
    monkeypatch.setattr(inst_mod, "uniform01", lambda: 0.999999)
    assert 15.0 <= backoff(7) < 15.001


def test_failures_push_next_check_and_recovery_resets():
    inst = make_set(1).all[0]
    t0 = time.monotonic()
    inst.mark_failed("x")
    inst.mark_failed("x")
    inst.mark_failed("x")
    assert inst.failures == 3 and inst.next_check >= t0 + 1  # third wait: 2 s jittered to [1, 2]
    assert inst.health.state_id == "unreachable" and not inst.usable
    inst.mark_recovered()
    assert inst.usable and inst.failures == 0 and inst.health.state_id == "reachable"


def test_health_check_cycle_goes_through_retrying():
    inst = make_set(1).all[0]
    assert not inst.begin_check()  # reachable: nothing to check
    inst.mark_failed("x")
    assert inst.begin_check() and inst.health.state_id == "retrying"
    inst.end_check(False, "refused")
    assert inst.health.state_id == "unreachable" and inst.failures == 2
    assert inst.begin_check()
    inst.end_check(True)
    assert inst.usable and inst.health.state_id == "reachable"


def test_due_lists_only_expired_backoffs(monkeypatch):
    monkeypatch.setattr(inst_mod, "BACKOFF", (0.0, 100.0))
    s = make_set(2)
    s.all[0].mark_failed("x")  # next check now
    s.all[1].mark_failed("x")
    s.all[1].mark_failed("x")  # next check in 100 s
    assert s.due(time.monotonic()) == [s.all[0]]


def test_chart_is_strict_and_a_probe_of_a_reachable_instance_changes_nothing():
    m = InstanceHealthMachine("t")
    with pytest.raises(TransitionNotAllowed):
        m.fire("no_such_event")
    assert not m.fire("probe") and m.state_id == "reachable"
    assert not m.fire("recover") and m.state_id == "reachable"


@pytest.mark.parametrize(("status", "cls", "ckr"), [
    (400, errors.BadRequest, CKR.FUNCTION_FAILED),
    (401, errors.Unauthorized, CKR.USER_NOT_LOGGED_IN),
    (403, errors.Forbidden, CKR.USER_NOT_LOGGED_IN),
    (404, errors.NotFound, CKR.OBJECT_HANDLE_INVALID),
    (409, errors.Conflict, CKR.FUNCTION_FAILED),
    (412, errors.PreconditionFailed, CKR.TOKEN_NOT_PRESENT),
    (429, errors.TooManyRequests, CKR.PIN_LOCKED),
    (500, errors.ServerError, CKR.DEVICE_ERROR),
    (503, errors.ServerError, CKR.DEVICE_ERROR),
    (418, errors.HTTPStatusError, CKR.DEVICE_ERROR),
])
def test_status_to_error_to_ckr(status, cls, ckr):
    err_cls = errors.error_for_status(status)
    assert err_cls is cls
    assert errors.ckr_for(err_cls("x", status=status)) == ckr


def test_transport_errors_map_to_device_error():
    assert errors.ckr_for(errors.TLSVerificationError("x")) == CKR.DEVICE_ERROR
    assert errors.ckr_for(errors.BadResponse("x")) == CKR.DEVICE_ERROR
