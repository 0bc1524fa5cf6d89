"""Issue 10, "a fleet of hosts": 10,000 simulated processes lose one NetHSM for 10 minutes
(tests/net/fleet_sim.py drives the real back-off code with a fake clock, no network). The figures
are printed (README, "Reliability") and checked against what the back-off promises."""

from __future__ import annotations

from . import fleet_sim

N = 10_000


def test_ten_thousand_processes_after_a_ten_minute_outage():
    shipped = fleet_sim.simulate(N, outage=600.0, notice=1.0)
    before = fleet_sim.simulate(N, outage=600.0, notice=1.0, schedule=fleet_sim.OLD_SCHEDULE, jitter=0.0)
    print()
    print(fleet_sim.report([("shipped", shipped), ("before (fixed, no jitter)", before)]))
    assert shipped["recovered"] == N
    # the cap: every process uses the instance again within 30 s of its return (+ the 50 ms sleep floor)
    assert shipped["all_back_s"] <= 30.05
    # jitter: waits drawn from [15, 30] s once capped, so probes arrive at no more than
    # N / E[wait] = N / 22.5 s on average at any moment; 30 % above that for the draw's noise
    assert shipped["peak_probes_per_s"] <= N / 22.5 * 1.3
    # the fixed schedule sends the whole fleet in the same second, and the cap halves the wait
    assert before["peak_probes_per_s"] >= 0.9 * N
    assert before["p99_back_s"] > 2 * shipped["p99_back_s"]
