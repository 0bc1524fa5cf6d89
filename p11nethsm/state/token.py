"""Token presence of one slot, driven by `GET /health/state` of the slot's cluster.

The token is present iff the cluster answers "Operational" (pkcs11-setup.txt: "A NetHSM that is
not operational is considered as a slot with the token not present"). An unreachable cluster, or
any other state (Locked, Unprovisioned, Failed), is "absent"; a 412 seen by any call marks the
token absent at once (dispatcher).

    unknown --appear--> present        first poll: Operational
    unknown --vanish--> absent         first poll: anything else / unreachable
    absent  --appear--> present        token inserted   (a slot event)
    present --vanish--> absent         token removed    (a slot event)

Events are sent only on a change, so the transition log reads as the slot's history. Each change
between known states sets `event_pending` for C_WaitForSlotEvent. When the token goes away because
the NetHSM is Locked, Unprovisioned or Failed, the log line says what to do (and for Failed, what
`GET /health/diagnose` reports): `explain(state)`, asked once per change of state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from p11nethsm.log import logger

from p11nethsm.api.errors import NetHSMError
from p11nethsm.state.base import Machine, State

__all__ = ["TokenChart", "TokenPresence"]

OPERATIONAL = "Operational"


class TokenChart(Machine):
    unknown = State(initial=True)
    present = State()
    absent = State()

    appear = unknown.to(present) | absent.to(present)
    vanish = unknown.to(absent) | present.to(absent)


class TokenPresence:
    """Per-slot presence: polls `health_state()` (no more than once per `max_age` seconds)."""

    def __init__(self, name: str, health_state: Callable[[], str],
                 explain: Callable[[str], str] | None = None):
        self.name = name
        self._health_state = health_state
        self._explain = explain
        self.advice: str | None = None  # what to do about the last non-Operational state
        self.machine = TokenChart(name)
        self._poll_lock = threading.RLock()
        self._checked_at = float("-inf")
        self.last_state: str | None = None  # last /health/state answer (or the error text)
        self.event_pending = False

    @property
    def state_id(self) -> str:
        return self.machine.state_id

    def present(self, max_age: float = 1.0) -> bool:
        """Is the token present? Polls the cluster when the last answer is older than max_age."""
        if time.monotonic() - self._checked_at > max_age:
            with self._poll_lock:  # threads arriving together share one poll
                if time.monotonic() - self._checked_at > max_age:
                    self._poll_locked()
        return self.machine.state_id == "present"

    def poll(self) -> str:
        """Ask the cluster now; returns the new presence state id."""
        with self._poll_lock:
            return self._poll_locked()

    def _poll_locked(self) -> str:
        previous = self.last_state
        try:
            state = self._health_state()
            reason = f"/health/state = {state}"
        except NetHSMError as exc:
            state = None
            reason = f"unreachable: {exc.describe()}"
        self._checked_at = time.monotonic()
        self.last_state = state if state is not None else reason
        if state is not None and state != OPERATIONAL:
            if state != previous or self.advice is None:
                self.advice = self._advise(state)
            if self.advice:
                reason = f"{reason}: {self.advice}"
        elif state == OPERATIONAL:
            self.advice = None
        self._set(state == OPERATIONAL, reason)
        return self.machine.state_id

    def _advise(self, state: str) -> str | None:
        if self._explain is None:
            return None
        try:
            return self._explain(state)
        except Exception as exc:  # advice is a courtesy: never fail the poll for it
            return f"(no advice: {type(exc).__name__})"

    def mark_absent(self, reason: str) -> None:
        """A call learned that the cluster is not operational (HTTP 412); asks once why."""
        with self._poll_lock:
            self._checked_at = time.monotonic()
            if self.machine.state_id != "absent" and self._explain is not None:
                try:
                    state = self._health_state()
                except NetHSMError:
                    state = None
                if state is not None and state != OPERATIONAL:
                    self.last_state = state
                    self.advice = self._advise(state)
                    if self.advice:
                        reason = f"{reason}: {self.advice}"
            self._set(False, reason)

    def _set(self, present: bool, reason: str) -> None:
        current = self.machine.state_id
        if present and current != "present":
            self.machine.fire("appear")
        elif not present and current != "absent":
            self.machine.fire("vanish")
        else:
            return
        if current != "unknown":
            self.event_pending = True
        if not present and self.advice:
            logger.warning("{}: token absent ({})", self.name, reason)
        else:
            logger.info("{}: token {} ({})", self.name, "present" if present else "absent", reason)

    def take_event(self) -> bool:
        """Consume the pending slot event, if any."""
        if self.event_pending:
            self.event_pending = False
            return True
        return False
