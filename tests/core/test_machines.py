"""The login, token presence and operation machines: every transition, loud failures."""

from __future__ import annotations

import time

import pytest
import statemachine.exceptions

from p11nethsm.api.errors import TransportError
from p11nethsm.ck.errors import (
    OperationActive,
    OperationNotInitialized,
    SessionClosed,
    SessionReadOnlyExists,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
    UserNotLoggedIn,
)
from p11nethsm.presence import Presence
from p11nethsm.state.base import TRANSITIONS, TransitionNotAllowed
from p11nethsm.state.login import LoginChart, LoginMachine, TokenLogin
from p11nethsm.state.operation import Operation
from p11nethsm.values import OpKind, Role
from p11nethsm.state.token import TokenPresence

PIN = "0123456789"


@pytest.mark.parametrize(
    ("start", "event", "kwargs", "exc"),
    [
        ("user", Role.OPERATOR, {}, UserAlreadyLoggedIn),
        ("so", Role.ADMINISTRATOR, {}, UserAlreadyLoggedIn),
        ("so", Role.OPERATOR, {}, UserAnotherAlreadyLoggedIn),
        ("user", Role.ADMINISTRATOR, {}, UserAnotherAlreadyLoggedIn),
        ("public", Role.ADMINISTRATOR, {"ro_sessions": 1}, SessionReadOnlyExists),
    ],
)
def test_illegal_login_raises_the_spec_ckr_and_keeps_the_state(start, event, kwargs, exc):
    login = TokenLogin("login[0]")
    if start != "public":
        login.login(Role.OPERATOR if start == "user" else Role.ADMINISTRATOR, PIN, session=1)
    with pytest.raises(exc):
        login.precheck(event, **kwargs)
    with pytest.raises(exc):
        login.login(event, "other-pin-123", session=2, **kwargs)
    assert login.state_id == start
    if start != "public":
        assert login.pin(Role.OPERATOR if start == "user" else Role.ADMINISTRATOR) == PIN


def test_login_logout_cycle():
    login = TokenLogin("login[0]")
    login.login(Role.OPERATOR, PIN, session=1)
    assert (login.state_id, login.role, login.pin(Role.OPERATOR)) == ("user", Role.OPERATOR, PIN)
    login.logout(session=1)
    assert (login.state_id, login.role, login.pin(Role.OPERATOR)) == ("public", None, None)
    login.login(Role.ADMINISTRATOR, PIN, session=1, ro_sessions=0)
    assert login.role is Role.ADMINISTRATOR
    login.reset()
    assert login.state_id == "public"
    login.reset()  # no error when already public


def test_logout_when_public_is_user_not_logged_in():
    login = TokenLogin("login[0]")
    with pytest.raises(UserNotLoggedIn):
        login.logout(session=1)


def test_unknown_or_unlisted_events_fail_loudly():
    machine = LoginMachine("login[x]")
    with pytest.raises(TransitionNotAllowed):
        machine.send("no_such_event")
    chart = LoginChart("login[x]")
    with pytest.raises(statemachine.exceptions.TransitionNotAllowed):
        chart.send("no_such_event")
    assert machine.state_id == "public" and chart.state_id == "public"


LOGIN_MD = """\
| State  | Event       | Guard | Target |
| ------ | ----------- | ----- | ------ |
| Public | Login user  |       | User   |
| Public | Login so    |       | So     |
| Public | Login so ro |       | Public |
| Public | Logout      |       | Public |
| User   | Login user  |       | User   |
| User   | Login so    |       | User   |
| User   | Login so ro |       | User   |
| User   | Logout      |       | Public |
| User   | Reset       |       | Public |
| So     | Login user  |       | So     |
| So     | Login so    |       | So     |
| So     | Login so ro |       | So     |
| So     | Logout      |       | Public |
| So     | Reset       |       | Public |
"""
TOKEN_MD = """\
| State   | Event  | Guard | Target  |
| ------- | ------ | ----- | ------- |
| Unknown | Appear |       | Present |
| Unknown | Vanish |       | Absent  |
| Present | Vanish |       | Absent  |
| Absent  | Appear |       | Present |
"""


def test_chart_snapshots():
    """The self-transitions of the login chart exist only to raise the spec's CKR (validators)."""
    from p11nethsm.state.token import TokenChart

    assert f"{LoginChart.cls:md}" == LOGIN_MD
    assert f"{TokenChart.cls:md}" == TOKEN_MD


# --- token presence -------------------------------------------------------------------------------
def test_token_presence_transitions_and_events():
    answers = ["Operational"]

    def health():
        a = answers[0]
        if isinstance(a, Exception):
            raise a
        return a

    tp = Presence("token[0]", health)
    assert tp.state_id == "unknown"
    assert tp.present(max_age=0) and tp.state_id == "present"
    assert not tp.take_event()  # unknown -> present is not an event
    answers[0] = "Locked"
    assert not tp.present(max_age=0)
    assert tp.take_event() and not tp.take_event()
    answers[0] = TransportError("down")
    assert tp.poll() == "absent" and not tp.take_event()  # absent -> absent: nothing
    answers[0] = "Operational"
    assert tp.poll() == "present" and tp.take_event()
    tp.mark_absent("412")
    assert tp.state_id == "absent" and tp.take_event()


def test_token_presence_caches_answers():
    n = []
    tp = Presence("token[0]", lambda: n.append(1) or "Operational")
    tp.present(max_age=10)
    tp.present(max_age=10)
    assert len(n) == 1


def test_token_appear_when_present_changes_nothing():
    token = TokenPresence("t")
    token.appear("first")
    token.appear("again")
    assert token.state_id == "present" and not token.take_event()
    token.vanish("gone")
    assert token.take_event()


# --- operations -----------------------------------------------------------------------------------
def test_operation_lifecycle():
    op = Operation(OpKind.SIGN, "op[sign]")
    with pytest.raises(OperationNotInitialized):
        op.context
    with pytest.raises(OperationNotInitialized):
        op.single()
    op.begin("ctx")
    with pytest.raises(OperationActive):
        op.begin("other")
    assert op.single() == "ctx"
    op.release("ctx")  # e.g. a size query: the operation stays active
    assert op.update_mark() == "ctx"
    op.release("ctx")
    with pytest.raises(OperationActive):
        op.single()  # C_Sign after C_SignUpdate
    assert op.context == "ctx"
    op.finish()
    assert not op.active
    with pytest.raises(OperationNotInitialized):
        op.finish()  # a second finish (another thread's) is a spec error, not a broken machine
    op.abort()  # no error when idle


def test_a_claimed_operation_is_busy_for_other_calls():
    """One session shared by threads: while a call holds the operation, another call gets
    OPERATION_ACTIVE at once; one whose operation was ended under it learns why."""
    op = Operation(OpKind.SIGN, "op[sign]")
    op.begin("ctx")
    assert op.single() == "ctx"
    with pytest.raises(OperationActive):
        op.single()
    with pytest.raises(OperationActive):
        op.require_idle()
    op.abort()  # C_SignInit(NULL) from another thread ends it under the call
    with pytest.raises(OperationNotInitialized):
        op.finish("ctx")
    op.begin("next")
    op.abort("ctx")  # the old call's clean-up leaves the new operation alone
    assert op.context == "next"
    assert op.single() == "next"
    op.abort(closed=True)  # the session is closed under the call
    with pytest.raises(SessionClosed):
        op.finish("next")


def test_abort_closes_the_context():
    closed = []

    class Ctx:
        def close(self):
            closed.append(True)

    op = Operation(OpKind.FIND, "op[find]")
    op.begin(Ctx())
    op.abort()
    assert closed and not op.active


def test_one_sign_is_two_transitions():
    """init + final of one sign: two table transitions, nothing else (its cost is in the bench)."""
    seen = []
    op = Operation(OpKind.SIGN, "op[sign]")
    TRANSITIONS.observers.append(lambda *t: seen.append(t[2]))
    try:
        op.begin("ctx")
        assert op.single() == "ctx"
        op.finish("ctx")
    finally:
        TRANSITIONS.observers.clear()
    assert seen == ["begin", "finish"]


def test_concurrent_presence_checks_share_one_poll():
    import threading

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.1)
        return "Operational"

    tp = Presence("token[0]", slow)
    threads = [threading.Thread(target=tp.present, args=(1.0,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and tp.state_id == "present"
