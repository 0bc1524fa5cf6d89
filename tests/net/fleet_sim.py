"""A fleet of processes against one NetHSM outage, simulated: no network, a fake clock.

N processes each lose the same NetHSM instance within `notice` seconds (their next call fails),
it stays down for `outage` seconds, then comes back. Each process runs the module's real back-off
code (p11nethsm.net.instances: Instance.mark_failed, InstanceSet.due, Instance.begin_check /
end_check, backoff) exactly as its health-check thread does (p11nethsm.net.health.HealthChecker:
probe every due instance, then sleep until the next one is due); only the clock, the random
generator and the probe's answer (refused during the outage, ready after it) are simulated.

Reported: the peak number of probes per second reaching the NetHSM once it is back, the probes
per second it takes while down, and the time after its return until 50/99/100 % of the processes
use it again. Processes that make calls notice a recovery at their next call as well; the
simulation leaves calls out, so its times are the worst case of idle processes.

    .venv/bin/python tests/net/fleet_sim.py [--processes 10000] [--outage 600] [--notice 1]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections import Counter

from p11nethsm.config.model import InstanceConfig, SlotConfig
from p11nethsm.net import instances as inst_mod

OLD_SCHEDULE = (1.0, 1.0, 2.0, 5.0, 10.0, 60.0, 300.0)  # before: fixed waits, no jitter


def simulate(processes: int = 10_000, outage: float = 600.0, notice: float = 1.0, seed: int = 1,
             schedule: tuple[float, ...] | None = None, jitter: float | None = None) -> dict:
    """Run the scenario; `schedule`/`jitter` replace the module's BACKOFF/JITTER (None: as shipped)."""
    rng = random.Random(seed)
    now = [0.0]
    saved = (inst_mod.clock, inst_mod.uniform01, inst_mod.BACKOFF, inst_mod.JITTER)
    inst_mod.clock, inst_mod.uniform01 = (lambda: now[0]), rng.random
    if schedule is not None:
        inst_mod.BACKOFF = schedule
    if jitter is not None:
        inst_mod.JITTER = jitter
    try:
        slot = SlotConfig(label="fleet", instances=(InstanceConfig(url="https://nethsm.example:8443/api/v1"),))
        fleet = [inst_mod.InstanceSet((inst_mod.Instance(slot.instances[0], slot),)) for _ in range(processes)]
        wakeups: list[tuple[float, int]] = []  # (time a process's health thread wakes up, process)
        for i in sorted(range(processes), key=lambda _: rng.random()):
            now[0] = rng.uniform(0.0, notice)  # its next call fails: the instance is marked unreachable
            fleet[i].all[0].mark_failed("connection refused")
            heapq.heappush(wakeups, (fleet[i].all[0].next_check, i))
        probes_up: Counter[int] = Counter()
        probes_down = 0
        back: list[float] = []
        while wakeups:
            t, i = heapq.heappop(wakeups)
            now[0] = t
            for inst in fleet[i].due(t):  # HealthChecker._run: check every due instance
                if not inst.begin_check():
                    continue
                ready = t >= outage
                inst.end_check(ready, "ready" if ready else "connection refused")
                if ready:
                    probes_up[int(t - outage)] += 1
                    back.append(t - outage)
                else:
                    probes_down += 1
            pending = [inst.next_check for inst in fleet[i].all if not inst.usable]
            if pending:
                heapq.heappush(wakeups, (max(t + 0.05, min(pending)), i))  # its 50 ms minimum sleep
    finally:
        inst_mod.clock, inst_mod.uniform01, inst_mod.BACKOFF, inst_mod.JITTER = saved
    back.sort()

    def quantile(q: float) -> float:
        return back[max(0, math.ceil(q * len(back)) - 1)]

    return {
        "processes": processes,
        "outage_s": outage,
        "peak_probes_per_s": max(probes_up.values()),
        "down_probes_per_s": probes_down / outage,
        "p50_back_s": quantile(0.50),
        "p99_back_s": quantile(0.99),
        "all_back_s": back[-1],
        "recovered": len(back),
    }


def report(rows: list[tuple[str, dict]]) -> str:
    head = f"{'back-off':<34} {'peak probes/s':>13} {'probes/s down':>13} {'50% back':>9} {'99% back':>9} {'100%':>7}"
    lines = [head]
    for name, r in rows:
        lines.append(f"{name:<34} {r['peak_probes_per_s']:>13} {r['down_probes_per_s']:>13.0f} "
                     f"{r['p50_back_s']:>8.1f}s {r['p99_back_s']:>8.1f}s {r['all_back_s']:>6.1f}s")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=10_000)
    ap.add_argument("--outage", type=float, default=600.0)
    ap.add_argument("--notice", type=float, default=1.0, help="processes notice the outage within this many s")
    a = ap.parse_args()
    rows = [("shipped (jitter [b/2, b], cap 30 s)", simulate(a.processes, a.outage, a.notice)),
            ("before (fixed 1,1,2,5,10,60,300 s)", simulate(a.processes, a.outage, a.notice, schedule=OLD_SCHEDULE,
                                                            jitter=0.0))]
    print(f"{a.processes} processes, one NetHSM down for {a.outage:g} s (noticed within {a.notice:g} s)")
    print(report(rows))


if __name__ == "__main__":
    main()
