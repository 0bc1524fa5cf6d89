"""Common ground for every state machine of the module.

Machines are python-statemachine StateCharts configured to fail loudly: an event with no
transition raises TransitionNotAllowed, and an error in an action propagates with the state
unchanged. One shared listener logs every transition with the machine's name (slot/session ids).

Hot paths (one operation lifecycle per C_Sign) cannot afford the library's ~70 us per
transition (measured on this machine), so `TableMachine` runs a guard-free machine from a
transition table compiled from the very same StateChart class: the chart stays the one
definition (documented, rendered, validated at import), the table is only its fast form.
tests/state/test_table_machine.py checks that both behave the same.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from p11nethsm.log import logger
from statemachine import State, StateChart
from statemachine.exceptions import TransitionNotAllowed

from p11nethsm import logflags

__all__ = ["Machine", "TableMachine", "TransitionLog", "State", "TransitionNotAllowed"]


class TransitionLog:
    """Listener: logs each transition as `<name>: <source> --<event>--> <target>` (with the
    fields machine/source/event/target for the JSON log; the call that caused it, its slot and
    session come from the call context, p11nethsm.calllog)."""

    def __init__(self, name: str):
        self.name = name

    def after_transition(self, event, source, target):
        logger.debug("{}: {} --{}--> {}", self.name, source.id, event, target.id, kind="transition",
                     machine=self.name, source=source.id, event=str(event), target=target.id)


class Machine(StateChart):
    """Base for the module's machines: strict, and logged by TransitionLog.

    Use `send()` under `self.lock` when threads may share the machine: the library's own
    lock makes a concurrent send return at once and run on the other thread.
    """

    allow_event_without_transition = False
    catch_errors_as_events = False

    def __init__(self, name: str, *args, **kwargs):
        self.name = name
        self.lock = threading.RLock()
        kwargs.setdefault("listeners", [TransitionLog(name)])
        super().__init__(*args, **kwargs)

    @property
    def state_id(self) -> str:
        (state,) = self.configuration
        return state.id

    def fire(self, event: str, *args, **kwargs):
        with self.lock:
            return self.send(event, *args, **kwargs)


def compile_table(chart: type[StateChart]) -> tuple[str, dict[tuple[str, str], str]]:
    """(initial state id, {(state id, event id): target id}) of a guard-free chart."""
    table: dict[tuple[str, str], str] = {}
    for state in chart.states:
        for transition in state.transitions:
            for event in transition.events:
                key = (state.id, str(event))
                if key in table:
                    raise ValueError(f"{chart.__name__}: {key} is ambiguous; TableMachine needs no guards")
                table[key] = transition.target.id
    return chart.initial_state.id, table


class TableMachine:
    """Fast runner of a guard-free chart: same states, events and errors as the chart."""

    chart: ClassVar[type[StateChart]]
    _initial: ClassVar[str]
    _table: ClassVar[dict[tuple[str, str], str]]

    __slots__ = ("name", "state_id")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._initial, cls._table = compile_table(cls.chart)

    def __init__(self, name: str):
        self.name = name
        self.state_id = self._initial

    def send(self, event: str) -> str:
        source = self.state_id
        try:
            target = self._table[(source, event)]
        except KeyError:
            raise TransitionNotAllowed(_EventName(event), {_StateName(source)}) from None
        self.state_id = target
        if logflags.DEBUG:
            logger.debug("{}: {} --{}--> {}", self.name, source, event, target, kind="transition",
                         machine=self.name, source=source, event=event, target=target)
        return target


class _EventName(str):
    """What TransitionNotAllowed wants of an event: a `.name`."""

    @property
    def name(self) -> str:
        return str(self)


class _StateName(str):
    @property
    def name(self) -> str:
        return str(self)
