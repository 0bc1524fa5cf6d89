"""Token presence polling: `GET /health/state` of a slot's cluster, fed to its presence machine
(p11nethsm.state.token) as `appear` / `vanish`.

A call that gets HTTP 412 from the NetHSM (not operational) marks the token absent at once
(`precondition_failed`, from p11nethsm.handlers.failures). When the token goes away because the
NetHSM is Locked, Unprovisioned or Failed, the log line says what to do (for Failed, with what
`GET /health/diagnose` reports), asked once per change of state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from p11nethsm.api import firmware
from p11nethsm.api.errors import NetHSMError
from p11nethsm.state.token import TokenPresence

__all__ = ["Presence", "OPERATIONAL", "explain"]

OPERATIONAL = "Operational"


def explain(api, state: str) -> str:
    """What to do about a non-Operational NetHSM; for Failed, with its /health/diagnose."""
    diagnosis = None
    if state == "Failed":
        try:
            diagnosis = firmware.diagnosis_text(api.diagnose()) or "GET /health/diagnose gave no message"
        except NetHSMError as exc:
            diagnosis = f"GET /health/diagnose failed: {exc.describe()}"
    return firmware.advice(state, diagnosis)


class Presence:
    """Polls `health_state()` (no more than once per `max_age` seconds) into a TokenPresence."""

    def __init__(self, name: str, health_state: Callable[[], str],
                 explain: Callable[[str], str] | None = None):
        self.state = TokenPresence(name)
        self._health_state = health_state
        self._explain = explain
        self._poll_lock = threading.RLock()
        self._checked_at = float("-inf")

    # the presence state, read by the handlers
    @property
    def state_id(self) -> str:
        return self.state.state_id

    @property
    def last_state(self) -> str | None:
        return self.state.last_state

    def take_event(self) -> bool:
        return self.state.take_event()

    def present(self, max_age: float = 1.0) -> bool:
        """Is the token present? Polls the cluster when the last answer is older than max_age."""
        if time.monotonic() - self._checked_at > max_age:
            with self._poll_lock:  # threads arriving together share one poll
                if time.monotonic() - self._checked_at > max_age:
                    self._poll_locked()
        return self.state.is_present

    def poll(self) -> str:
        """Ask the cluster now; returns the new presence state id."""
        with self._poll_lock:
            return self._poll_locked()

    def _poll_locked(self) -> str:
        token = self.state
        previous = token.last_state
        try:
            state = self._health_state()
            reason = f"/health/state = {state}"
        except NetHSMError as exc:
            state = None
            reason = f"unreachable: {exc.describe()}"
        self._checked_at = time.monotonic()
        token.last_state = state if state is not None else reason
        if state == OPERATIONAL:
            token.advice = None
            token.appear(reason)
            return token.state_id
        if state is not None:
            if state != previous or token.advice is None:
                token.advice = self._advise(state)
            if token.advice:
                reason = f"{reason}: {token.advice}"
        token.vanish(reason)
        return token.state_id

    def _advise(self, state: str) -> str | None:
        if self._explain is None:
            return None
        try:
            return self._explain(state)
        except Exception as exc:  # advice is a courtesy: never fail the poll for it
            return f"(no advice: {type(exc).__name__})"

    def mark_absent(self, reason: str) -> None:
        """A call learned that the cluster is not operational (HTTP 412); asks once why."""
        token = self.state
        with self._poll_lock:
            self._checked_at = time.monotonic()
            if token.machine.state_id.value is not False and self._explain is not None:  # ask once
                try:
                    state = self._health_state()
                except NetHSMError:
                    state = None
                if state is not None and state != OPERATIONAL:
                    token.last_state = state
                    token.advice = self._advise(state)
                    if token.advice:
                        reason = f"{reason}: {token.advice}"
            token.vanish(reason)
