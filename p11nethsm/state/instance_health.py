"""Health of one NetHSM instance, as the network layer sees it.

    reachable ──fail──► unreachable ──probe──► retrying ──passed──► reachable
        ▲                 │  ▲  fail / failed (again:   │
        └────recover──────┘  └── longer back-off) ◄─────┘

* fail: a request to it got no usable answer, a 5xx or a 412 (p11nethsm.net.instances).
* probe: a health check (GET /health/ready) starts: background thread, or inline when threads
  are not allowed (p11nethsm.net.health). From reachable or retrying it changes nothing.
* passed / failed: that check's outcome; nothing changes unless the check is still the news
  (a request decided meanwhile).
* recover: a request it served anyway (no other instance was reachable) succeeded.

`Instance.usable` is the current state's value (True only in reachable): the hot path reads it
without a lock, and there is no flag to keep in step. The chart runs as its table
(`InstanceHealthMachine`): a fleet simulation (tests/net/fleet_sim.py) makes millions of them.
"""

from __future__ import annotations

import threading

from p11nethsm.state.base import TableMachine, chart


@chart
def InstanceHealth(Chart, State):
    class InstanceHealth(Chart):
        reachable = State(initial=True)
        unreachable = State()
        retrying = State()
        views = {"reachable": True, "unreachable": False, "retrying": False}  # Instance.usable

        fail = reachable.to(unreachable) | retrying.to(unreachable) | unreachable.to.itself(internal=True)
        probe = unreachable.to(retrying) | reachable.to.itself(internal=True) | retrying.to.itself(internal=True)
        passed = retrying.to(reachable) | reachable.to.itself(internal=True) | unreachable.to.itself(internal=True)
        failed = retrying.to(unreachable) | reachable.to.itself(internal=True) | unreachable.to.itself(internal=True)
        recover = (unreachable.to(reachable) | retrying.to(reachable)
                   | reachable.to.itself(internal=True))
    return InstanceHealth


class InstanceHealthMachine(TableMachine):
    """The chart's table runner, with the lock the network layer holds around its bookkeeping."""

    chart = InstanceHealth
    __slots__ = ("lock",)

    def __init__(self, name: str):
        super().__init__(name)
        self.lock = threading.RLock()

    def fire(self, event: str) -> bool:
        """Send `event` under the lock; whether the state changed."""
        with self.lock:
            source = self.state_id
            return self.send(event) is not source
