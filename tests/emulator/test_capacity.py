"""The per-instance capacity model (set_capacity / --capacity): N requests at once, the others wait
in line, each holding its slot at least service_time seconds."""
from __future__ import annotations

import threading
import time

import pytest
import urllib3

from nethsm_emulator.control import ControlClient
from nethsm_emulator.testing import start_emulator, start_emulator_process


def parallel(url: str, fingerprint: str, n: int = 8, path: str = "/health/state") -> float:
    """n requests at once on n connections; returns the wall time until all are answered."""
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    pool = urllib3.HTTPSConnectionPool(host, int(port), maxsize=n, block=True, cert_reqs="CERT_NONE",
                                       assert_fingerprint=fingerprint, retries=False, timeout=10)
    prefix = "/" + url.split("//", 1)[1].split("/", 1)[1]
    conns = [pool._get_conn() for _ in range(n)]  # open the n connections first (TLS handshakes
    for c in conns:                                 # are not what is measured)
        c.connect()
    for c in conns:
        pool._put_conn(c)
    statuses: list[int] = []
    go = threading.Barrier(n + 1)

    def one():
        go.wait()
        statuses.append(pool.request("GET", prefix + path).status)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join(10)
    took = time.monotonic() - t0
    pool.close()
    assert statuses == [200] * n
    return took


def test_one_slot_serializes_and_clearing_restores():
    # Lower time bounds only (a loaded machine can be slower, never faster); how many requests
    # ran at once is read from the model's counters, not inferred from wall time.
    with start_emulator(instances=2) as run:
        a, b = run.instances
        assert a.get_capacity()["concurrent"] is None  # default off
        a.set_capacity(1, service_time=0.1)
        assert parallel(run.urls[0], run.fingerprint) >= 0.8  # 8 x 100 ms, one at a time
        cap = a.get_capacity()
        assert cap["processed"] == 8 and cap["max_busy"] == 1 and cap["busy"] == 0
        assert cap["max_waiting"] >= 2
        parallel(run.urls[1], run.fingerprint)                # per instance: b has no model
        assert b.get_capacity()["processed"] == 0 and b.get_capacity()["concurrent"] is None
        a.set_capacity(4, service_time=0.1)
        assert parallel(run.urls[0], run.fingerprint) >= 0.2  # 2 waves of 4
        cap = a.get_capacity()
        assert cap["processed"] == 8 and 1 <= cap["max_busy"] <= 4
        a.set_capacity(None)
        parallel(run.urls[0], run.fingerprint)
        assert a.get_capacity()["processed"] == 0             # cleared: nothing goes through it


def test_scoped_by_path_and_validated():
    with start_emulator() as run:
        inst = run.instances[0]
        inst.set_capacity(1, service_time=0.1, method="POST", path=r"/sign$")
        parallel(run.url, run.fingerprint)                    # GET /health/state: not in scope
        assert inst.get_capacity()["processed"] == 0
        with pytest.raises(ValueError):
            inst.set_capacity(0)
        with pytest.raises(ValueError):
            inst.set_capacity(1, service_time=-1)


def test_control_endpoint_and_cli_flag():
    run = start_emulator_process(capacity=1, service_time=0.1)
    try:
        inst = ControlClient(run.control_url).instance(0)
        assert inst.get_capacity()["concurrent"] == 1 and inst.get_capacity()["service_time"] == 0.1
        assert parallel(run.url, run.fingerprint) >= 0.8
        assert inst.set_capacity(None)["concurrent"] is None
        parallel(run.url, run.fingerprint)
        assert inst.get_capacity()["processed"] == 0          # cleared: nothing goes through it
        with pytest.raises(RuntimeError, match="400"):
            inst.set_capacity(0)
    finally:
        run.stop()
