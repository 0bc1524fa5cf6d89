"""The machines are the truth: each compiled table is its chart (every state and event), the
views the rest of the module reads (role, usable, initialized) are the machines' states and
cannot be set, and one listener sees every transition of every machine kind."""

from __future__ import annotations

import itertools

import pytest
import statemachine.exceptions

from p11nethsm import dispatch, library
from p11nethsm.ck.errors import CKRError, CryptokiAlreadyInitialized
from p11nethsm.config.model import InstanceConfig, SlotConfig
from p11nethsm.net.instances import Instance
from p11nethsm.state.base import TRANSITIONS, TransitionNotAllowed, compile_chart
from p11nethsm.state.instance_health import InstanceHealthMachine
from p11nethsm.state.lifecycle import COMPILED as LIFECYCLE_TABLE, Lifecycle
from p11nethsm.state.lifecycle_chart import LifecycleChart
from p11nethsm.state.login import LoginMachine, TokenLogin
from p11nethsm.state.operation import Operation, OperationChart, OperationMachine
from p11nethsm.state.token import TokenMachine, TokenPresence
from p11nethsm.values import OpKind, Role

PIN = "0123456789"
MACHINES = [LoginMachine, OperationMachine, TokenMachine, InstanceHealthMachine]


def _chart_outcome(chart_cls, state, event):
    """`event` sent to a python-statemachine run of the chart started in `state`."""
    values = {st.id: st.value for st in chart_cls.states}
    machine = chart_cls(start_value=values[state])
    try:
        machine.send(event)
    except CKRError as exc:
        return type(exc), machine.state_id
    except statemachine.exceptions.TransitionNotAllowed:
        return TransitionNotAllowed, machine.state_id
    return None, machine.state_id


def _table_outcome(machine, state, event):
    machine.state_id = machine.compiled.states[state]
    refusal = machine.refusal(event)
    try:
        machine.send(event)
    except (CKRError, TransitionNotAllowed) as exc:
        assert type(exc) is type(refusal)
        return type(exc), str(machine.state_id)
    assert refusal is None
    return None, str(machine.state_id)


def _pairs(chart_cls, compiled):
    states = [st.id for st in chart_cls.states]
    return itertools.product(states, sorted(compiled.events) + ["no_such_event"])


@pytest.mark.parametrize("runner", MACHINES, ids=lambda m: m.__name__)
def test_every_state_event_pair_of_the_table_is_the_charts(runner):
    """For every (state, event), the table moves to the state the chart moves to, or raises the
    same CKR (or TransitionNotAllowed) leaving the state as the chart leaves it; state values
    (what role/usable/initialized read) are the chart's."""
    machine = runner("m")
    chart_cls = runner.chart.cls
    assert sorted(machine.compiled.states) == sorted(st.id for st in chart_cls.states)
    for state, event in _pairs(chart_cls, machine.compiled):
        assert _table_outcome(machine, state, event) == _chart_outcome(chart_cls, state, event), (state, event)
    views = getattr(chart_cls, "views", None)
    for st in chart_cls.states:
        view = views[st.id] if views else (None if st.value == st.id else st.value)
        assert machine.compiled.states[st.id].value == view


def test_the_lifecycle_table_is_its_chart_compiled_and_behaves_as_it():
    """C_Initialize does not import python-statemachine, so the lifecycle's table is written out:
    it must be exactly what its chart compiles to, and behave as the chart for every pair."""
    compiled = compile_chart(LifecycleChart)
    assert compiled.table == LIFECYCLE_TABLE.table
    assert compiled.refusals == LIFECYCLE_TABLE.refusals
    assert (compiled.initial, compiled.events) == (LIFECYCLE_TABLE.initial, LIFECYCLE_TABLE.events)
    assert {k: v.value for k, v in compiled.states.items()} == {k: v.value for k, v in LIFECYCLE_TABLE.states.items()}
    machine = Lifecycle("m")
    for state, event in _pairs(LifecycleChart.cls, LIFECYCLE_TABLE):
        assert _table_outcome(machine, state, event) == _chart_outcome(LifecycleChart.cls, state, event), (state, event)


def test_precheck_raises_the_tables_refusal_for_every_state_and_user():
    for state, role, ro in itertools.product(("public", "user", "so"), Role, (0, 1)):
        login = TokenLogin("l")
        login.machine.state_id = login.machine.compiled.states[state]
        event = "login_user" if role is Role.OPERATOR else ("login_so_ro" if ro else "login_so")
        refusal = login.machine.refusal(event)
        if refusal is None:
            login.precheck(role, ro_sessions=ro)
        else:
            with pytest.raises(type(refusal)):
                login.precheck(role, ro_sessions=ro)
        assert login.state_id == state


# --- derived views ------------------------------------------------------------------------------
def _instance() -> Instance:
    cfg = InstanceConfig(url="https://127.0.0.1:1/api/v1")
    return Instance(cfg, SlotConfig(label="s", instances=(cfg,)))


def test_role_is_the_login_state_and_cannot_be_set():
    login = TokenLogin("l")
    with pytest.raises(AttributeError):
        login.role = Role.OPERATOR
    assert not hasattr(login, "__dict__")  # no instance attribute can shadow the view
    login.login(Role.ADMINISTRATOR, PIN, session=1)
    assert login.role is Role.ADMINISTRATOR and login.machine.state_id == "so"
    login.reset()
    assert login.role is None


def test_usable_and_backoff_are_the_health_state_and_cannot_be_set():
    inst = _instance()
    for name in ("usable", "failures", "next_check"):
        with pytest.raises(AttributeError):
            setattr(inst, name, 0)
    assert inst.usable and "usable" not in vars(inst)
    inst.mark_failed("test")
    assert not inst.usable and inst.health.state_id == "unreachable" and inst.failures == 1
    assert inst.begin_check() and not inst.usable
    inst.end_check(True)
    assert inst.usable and inst.backoff.failures == 0


def test_initialized_is_the_lifecycle_state_and_cannot_be_set():
    life = Lifecycle("m")
    with pytest.raises(AttributeError):
        life.initialized = True
    assert not life.initialized
    life.send("initialize")
    assert life.initialized
    with pytest.raises(CryptokiAlreadyInitialized):
        life.check("initialize")
    life.forked()
    assert life.state_id == "forked" and not life.initialized


def test_the_dispatcher_asks_the_lifecycle(init, call):
    """No flag of its own: calls run exactly while the module lifecycle is `initialized`."""
    assert library.LIFECYCLE.state_id == "uninitialized" and not dispatch.is_ready()
    assert call("C_GetInfo", 0) == 0x190  # CKR_CRYPTOKI_NOT_INITIALIZED
    init()
    assert library.LIFECYCLE.state_id == "initialized" and dispatch.is_ready()
    assert call("C_Initialize", 0) == 0x191  # CKR_CRYPTOKI_ALREADY_INITIALIZED, from the table
    assert call("C_Finalize", 0) == 0
    assert library.LIFECYCLE.state_id == "uninitialized" and not dispatch.is_ready()
    assert call("C_Finalize", 0) == 0x190  # CKR_CRYPTOKI_NOT_INITIALIZED


# --- one listener -------------------------------------------------------------------------------
def test_one_listener_sees_every_transition_of_every_machine_kind():
    seen = []
    TRANSITIONS.observers.append(lambda *t: seen.append(t))
    try:
        login = TokenLogin("login[7]")
        login.login(Role.OPERATOR, PIN, session=1)
        login.logout(session=1)
        op = Operation(OpKind.SIGN, "op[7]")
        op.begin("c")
        op.finish()
        TokenPresence("token[7]").appear("up")
        inst = _instance()
        inst.mark_failed("down")
        life = Lifecycle("module[7]")
        life.send("initialize")
        OperationChart("chart[7]").send("begin")  # a chart run by python-statemachine itself
    finally:
        TRANSITIONS.observers.clear()
    assert seen == [
        ("login[7]", "public", "login_user", "user"), ("login[7]", "user", "logout", "public"),
        ("op[7]", "idle", "begin", "active"), ("op[7]", "active", "finish", "idle"),
        ("token[7]", "unknown", "appear", "present"),
        (inst.health.name, "reachable", "fail", "unreachable"),
        ("module[7]", "uninitialized", "initialize", "initialized"),
        ("chart[7]", "idle", "begin", "active"),
    ]
