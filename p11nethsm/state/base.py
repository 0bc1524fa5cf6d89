"""Common ground for every state machine of the module.

A machine is defined once, as a python-statemachine StateChart (documented, rendered, validated
at import), and run by `TableMachine` from a table compiled from that chart: the library costs
~70 us per transition (measured on this machine), the table a dict lookup. The chart says
everything the runner knows:

* a transition `a --event--> b` becomes `(a, event) -> b`;
* a self-transition whose only validator is `refuse(Error, text)` is a refusal: the event is
  illegal in that state and fails with that CKR (the chart raises it from the validator, the
  table from `(state, event) -> refusal`; the state is unchanged either way);
* a state's `value` (or the chart's `views[state]`) is what the machine's owner derives from it (`TokenLogin.role`,
  `Instance.usable`, `Lifecycle.initialized`): the current state carries it, so reading it is
  one attribute chain, not a shadow attribute kept in step (no value: None);
* anything else (a guard, another validator) is refused at compile time.

`check(event)` raises what `send(event)` would raise without moving: a precondition is a lookup
in the same table. tests/core/test_machines.py runs every (state, event) pair of every chart
through both and compares.

Charts are declared in a function decorated with `@chart` (it gets the strict `Chart` base and
`State`): python-statemachine (~100 ms to import, with asyncio) is imported when a machine of
that kind is first built, not at C_Initialize.

Every transition of every machine goes through ONE listener, `TRANSITIONS`: it logs
`<name>: <source> --<event>--> <target>` (Debug) and tells its observers (tests).
"""

from __future__ import annotations

# typing only for annotations: importing it costs ~8 ms, and this module is on C_Initialize's path
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

from p11nethsm import logflags
from p11nethsm.log import logger

__all__ = ["TableMachine", "TransitionListener", "TRANSITIONS", "TransitionNotAllowed", "refuse",
           "StateId", "compile_chart", "chart", "LazyChart"]


class TransitionNotAllowed(Exception):
    """An event the chart does not define in the current state (a bug of the caller)."""

    def __init__(self, machine: str, state: str, event: str):
        super().__init__(f"{machine}: no transition for {event!r} in state {state!r}")
        self.machine, self.state, self.event = machine, state, event


def refuse(error: type, text: str):
    """A chart validator: the event is refused in this state with `error(text)` (a CKRError)."""

    def validator():
        raise error(text)

    validator.__name__ = validator.__qualname__ = f"refuse_{error.__name__}"
    validator.refuses = (error, text)  # type: ignore[attr-defined]
    return validator


_BASE: list = []  # [Chart, State] once python-statemachine is imported


def _chart_base():
    if not _BASE:
        from statemachine import State, StateChart  # lazy: ~100 ms (asyncio), not at C_Initialize

        class Chart(StateChart):
            """Strict: an event with no transition raises, a validator's error propagates with
            the state unchanged."""

            allow_event_without_transition = False
            catch_errors_as_events = False

            @property
            def state_id(self) -> str:
                (state,) = self.configuration
                return state.id

        _BASE[:] = [Chart, State]
    return _BASE


class LazyChart:
    """A chart declared by a function (Chart, State) -> chart class, built at first use."""

    def __init__(self, declare):
        self._declare = declare
        self._cls = None
        self.__name__ = declare.__name__
        self.__doc__ = declare.__doc__

    @property
    def cls(self):
        if self._cls is None:
            self._cls = self._declare(*_chart_base())
        return self._cls

    def __call__(self, *args, **kwargs):
        """A chart instance run by python-statemachine itself (tests, docs), reporting its
        transitions to TRANSITIONS."""
        kwargs.setdefault("listeners", [ChartListener(args[0] if args else self.__name__)])
        return self.cls(**kwargs)


def chart(declare) -> LazyChart:
    """Decorator: `declare(Chart, State)` returns the chart class."""
    return LazyChart(declare)


class StateId(str):
    """A state's id (compares and hashes as the plain string) carrying the state's `value`."""

    __slots__ = ("value",)

    def __new__(cls, ident: str, value: Any):
        self = super().__new__(cls, ident)
        self.value = value
        return self


class Compiled:
    """A chart's fast form: initial state, {(state, event): target}, {(state, event): refusal}."""

    __slots__ = ("initial", "table", "refusals", "states", "events")

    def __init__(self, initial, table, refusals, states, events):
        self.initial, self.table, self.refusals = initial, table, refusals
        self.states, self.events = states, events


def compile_chart(chart) -> Compiled:
    """Compile a guard-free chart (refusals allowed) into its table."""
    if isinstance(chart, LazyChart):
        chart = chart.cls
    # python-statemachine gives a state without a value its id as value: that means None here;
    # values must be unique there, so a chart where several states share a view names it in
    # `views` ({state id: value})
    views = getattr(chart, "views", None) or {
        s.id: None if s.value == s.id else s.value for s in chart.states}
    states = {s.id: StateId(s.id, views.get(s.id)) for s in chart.states}
    table: dict[tuple[str, str], StateId] = {}
    refusals: dict[tuple[str, str], tuple[type, str]] = {}
    events: set[str] = set()
    for state in chart.states:
        for transition in state.transitions:
            validators = [spec.func for spec in transition._specs if spec.group.name == "VALIDATOR"]
            conds = [spec for spec in transition._specs if spec.group.name == "COND"]
            refusal = getattr(validators[0], "refuses", None) if len(validators) == 1 else None
            if conds or (validators and refusal is None):
                raise ValueError(f"{chart.__name__}: a guard on {state.id}; charts here are guard-free")
            if refusal is not None and transition.target is not state:
                raise ValueError(f"{chart.__name__}: a refusal must be a self-transition ({state.id})")
            for event in transition.events:
                key = (state.id, str(event))
                events.add(str(event))
                if key in table or key in refusals:
                    raise ValueError(f"{chart.__name__}: {key} is ambiguous")
                if refusal is not None:
                    refusals[key] = refusal
                else:
                    table[key] = states[transition.target.id]
    return Compiled(states[chart.initial_state.id], table, refusals, states, frozenset(events))


class TransitionListener:
    """The one listener of every machine's transitions (logging, and observers for tests)."""

    def __init__(self):
        self.observers: list = []  # callables (machine name, source, event, target)
        self.quiet = False  # in a fork child's hook: the logger's locks may still be held there

    def transition(self, machine: str, source: str, event: str, target: str, context=None) -> None:
        if logflags.DEBUG and not self.quiet:
            extra = "" if context is None else f" ({context})"
            logger.debug("{}: {} --{}--> {}{}", machine, source, event, target, extra, kind="transition",
                         machine=machine, source=str(source), event=event, target=str(target))
        for observer in self.observers:
            observer(machine, str(source), event, str(target))


TRANSITIONS = TransitionListener()
_observers = TRANSITIONS.observers  # the hot path tests this list (empty: only Debug can listen)


class TableMachine:
    """Runner of a chart's compiled table: same states, events, refusals as the chart.

    `state_id` is a StateId: `state_id.value` is the state's value. Subclasses set `chart`.
    """

    chart: ClassVar[Any]  # a LazyChart: compiled when the first machine is built
    compiled: ClassVar[Compiled | None] = None
    _table: ClassVar[dict]
    _refusals: ClassVar[dict]

    __slots__ = ("name", "state_id")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("compiled") is not None:
            cls._table, cls._refusals = cls.compiled.table, cls.compiled.refusals

    @classmethod
    def compile(cls) -> Compiled:
        if cls.__dict__.get("compiled") is None:
            compiled = compile_chart(cls.chart)
            cls._table, cls._refusals = compiled.table, compiled.refusals
            cls.compiled = compiled
        return cls.compiled

    def __init__(self, name: str):
        self.name = name
        compiled = self.__class__.__dict__.get("compiled") or self.compile()
        self.state_id = compiled.initial

    def send(self, event: str, context=None) -> StateId:
        source = self.state_id
        try:
            target = self._table[(source, event)]
        except KeyError:
            raise self.refusal(event) from None
        self.state_id = target
        if target is not source and (logflags.DEBUG or _observers):  # self-transitions change nothing
            TRANSITIONS.transition(self.name, source, event, target, context)
        return target

    def refusal(self, event: str, state: str | None = None) -> Exception | None:
        """What `send(event)` raises in `state` (default: the current one); None if it is legal."""
        state = self.state_id if state is None else state
        if (state, event) in self._table:
            return None
        refused = self._refusals.get((state, event))
        if refused is not None:
            error, text = refused
            return error(text)
        return TransitionNotAllowed(self.name, state, event)

    def check(self, event: str) -> None:
        """Raise what `send(event)` would raise, without changing anything."""
        if (self.state_id, event) not in self._table:
            raise self.refusal(event)


class ChartListener:
    """Adapter: a chart run by python-statemachine itself (tests, docs) reports to TRANSITIONS."""

    def __init__(self, name: str):
        self.name = name

    def after_transition(self, event, source, target):
        TRANSITIONS.transition(self.name, source.id, str(event), target.id)
