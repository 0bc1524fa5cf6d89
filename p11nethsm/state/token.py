"""Token presence of one slot: what the polling above (p11nethsm.presence) learned.

The token is present iff the slot's cluster answers "Operational" (README, configuration
reference: a NetHSM that is not operational is a slot without its token). This module does no
I/O: it only receives `appear` and `vanish`.

    unknown --appear--> present        first poll: Operational
    unknown --vanish--> absent         first poll: anything else / unreachable
    absent  --appear--> present        token inserted   (a slot event)
    present --vanish--> absent         token removed    (a slot event)
    present --appear--> present, absent --vanish--> absent: nothing changes

Each change between known states sets `event_pending` for C_WaitForSlotEvent.
"""

from __future__ import annotations

from p11nethsm.log import logger

from p11nethsm.state.base import TableMachine, chart

__all__ = ["TokenChart", "TokenMachine", "TokenPresence"]


@chart
def TokenChart(Chart, State):
    class TokenChart(Chart):
        unknown = State(initial=True)  # value None: not asked yet
        present = State(value=True)
        absent = State(value=False)

        appear = unknown.to(present) | absent.to(present) | present.to.itself(internal=True)
        vanish = unknown.to(absent) | present.to(absent) | absent.to.itself(internal=True)
    return TokenChart


class TokenMachine(TableMachine):
    chart = TokenChart
    __slots__ = ()


class TokenPresence:
    """Per-slot presence state, the last answer of the cluster and the pending slot event."""

    def __init__(self, name: str):
        self.name = name
        self.machine = TokenMachine(name)
        self.advice: str | None = None  # what to do about the last non-Operational state
        self.last_state: str | None = None  # last /health/state answer (or the error text)
        self.event_pending = False

    @property
    def state_id(self) -> str:
        return self.machine.state_id

    @property
    def is_present(self) -> bool:
        return self.machine.state_id.value is True

    def appear(self, reason: str) -> None:
        self._send("appear", reason)

    def vanish(self, reason: str) -> None:
        self._send("vanish", reason)

    def _send(self, event: str, reason: str) -> None:
        source = self.machine.state_id
        target = self.machine.send(event, reason)
        if target is source:
            return
        if source != "unknown":
            self.event_pending = True
        if event == "vanish" and self.advice:
            logger.warning("{}: token absent ({})", self.name, reason)
        else:
            logger.info("{}: token {} ({})", self.name, target, reason)

    def take_event(self) -> bool:
        """Consume the pending slot event, if any."""
        if self.event_pending:
            self.event_pending = False
            return True
        return False
