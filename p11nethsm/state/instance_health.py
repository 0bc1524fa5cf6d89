"""Health of one NetHSM instance, as the network layer sees it.

    reachable ──fail──► unreachable ──probe──► retrying ──recover──► reachable
        ▲                 │  ▲  fail (again:          │
        └────recover──────┘  └── longer back-off) ◄───┘ fail

* fail: a request to it got no usable answer, a 5xx or a 412 (p11nethsm.net.instances).
* probe: a health check (GET /health/ready) starts: background thread, or inline when threads
  are not allowed (p11nethsm.net.health).
* recover: the check passed, or a request it served anyway (no other instance was reachable)
  succeeded.

Only failures and recoveries cost a transition; the hot path reads `Instance.usable`, a plain
flag kept in step with this chart under the machine's lock. The chart runs as its table
(`InstanceHealthMachine`): a fleet simulation (tests/net/fleet_sim.py) makes millions of them.
"""

from __future__ import annotations

import threading

from p11nethsm.state.base import Machine, State, TableMachine


class InstanceHealth(Machine):
    reachable = State(initial=True)
    unreachable = State()
    retrying = State()

    fail = reachable.to(unreachable) | retrying.to(unreachable) | unreachable.to.itself(internal=True)
    probe = unreachable.to(retrying)
    recover = unreachable.to(reachable) | retrying.to(reachable)


class InstanceHealthMachine(TableMachine):
    """The chart's table runner, with the lock the network layer holds around its flags."""

    chart = InstanceHealth
    __slots__ = ("lock",)

    def __init__(self, name: str):
        super().__init__(name)
        self.lock = threading.RLock()

    def fire(self, event: str) -> str:
        with self.lock:
            return self.send(event)
