"""Fault injection and request counters, via the Python API and the HTTP control endpoint."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import urllib3
from emuclient import Client

from nethsm_emulator.control import ControlClient

ADMIN, OP = ("admin", "Administrator"), ("operator", "opPassphrase")
GEN = {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]}


def test_latency_scoped_by_path_and_count(client, hsm):
    inst = hsm.instances[0]
    rule = inst.add_latency(0.3, method="GET", path=r"^/api/v1/keys$", count=1)
    client.get("/health/state")
    client.post("/keys/generate", ADMIN, {**GEN, "id": "lat"})
    assert inst.faults.list() == [rule] and rule.count == 1  # other paths and methods unaffected
    t = time.monotonic()
    assert client.get("/keys", ADMIN).status == 200
    assert time.monotonic() - t >= 0.3  # a lower bound: a loaded machine is slower, never faster
    assert inst.faults.list() == []     # count exhausted: the rule is gone


def test_stall_after_processing_executes_the_request(client, hsm):
    """Simulated read timeout on key generation: the key exists, no answer came."""
    inst = hsm.instances[0]
    inst.stall_after_processing(method="POST", path="/keys/generate", count=1)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        client.post("/keys/generate", ADMIN, {**GEN, "id": "ghost"}, timeout=0.5)
    assert client.get("/keys/ghost", ADMIN).status == 200
    stalled = [e for e in inst.requests() if e["fault"] == "stall_after"]
    assert stalled == [{"method": "POST", "path": "/api/v1/keys/generate", "status": None,
                        "fault": "stall_after"}]
    inst.clear_faults()


def test_stall_before_processing_does_not_execute(client, hsm):
    inst = hsm.instances[0]
    inst.stall(path="/keys/generate")
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        client.post("/keys/generate", ADMIN, {**GEN, "id": "never"}, timeout=0.5)
    inst.clear_faults()
    assert client.get("/keys/never", ADMIN).status == 404


def test_reset_and_5xx_faults(client, hsm):
    inst = hsm.instances[0]
    client.check = False  # injected faults are not spec responses
    inst.reset_connections(path="/health/state", count=1)
    with pytest.raises((urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError)):
        client.get("/health/state")
    assert client.get("/health/state").status == 200
    inst.fail(503, method="GET", path="/keys", count=2)
    assert [client.get("/keys", ADMIN).status for _ in range(3)] == [503, 503, 200]


def test_answer_drip_and_cut_faults(client, hsm):
    """Malformed answers, a slow-drip peer and a body cut half-way (the chaos soak's faults)."""
    inst = hsm.instances[0]
    client.check = False
    inst.answer(200, '[{"id": ""}]', method="GET", path=r"^/api/v1/keys$", count=1)
    r = client.get("/keys", ADMIN)
    assert (r.status, r.data) == (200, b'[{"id": ""}]')
    inst.drip(0.05, method="GET", path="/health/state", count=1)
    t = time.monotonic()
    r = client.get("/health/state")
    assert r.status == 200 and b"Operational" in r.data
    assert time.monotonic() - t >= 0.05 * 100  # >= 100 bytes of status line, headers and body
    inst.cut_body(method="POST", path="/keys/generate", count=1)
    fresh = Client(hsm.url, hsm.fingerprint, check=False)  # the drip closed the pooled connection
    with pytest.raises(urllib3.exceptions.ProtocolError, match="IncompleteRead"):
        fresh.post("/keys/generate", ADMIN, {**GEN, "id": "halfway"})
    assert client.get("/keys/halfway", ADMIN).status == 200  # executed, answer cut
    assert [e["fault"] for e in inst.requests() if e["fault"]] == ["body", "drip", "cut"]


def test_down_refuses_connections_and_up_restores_same_port(client, hsm):
    inst = hsm.instances[0]
    port = inst.port
    inst.down()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    inst.up()
    assert inst.port == port
    assert Client(hsm.url, hsm.fingerprint).get("/health/state").status == 200


def test_switch_state_and_request_counters(client, hsm):
    inst = hsm.instances[0]
    inst.lock()
    assert client.get("/keys", ADMIN).status == 412
    inst.unlock()
    inst.reset_requests()
    for _ in range(3):
        client.get("/keys", ADMIN)
    client.get("/health/state")
    assert inst.request_count() == 4
    assert inst.request_count(method="GET", path=r"/keys$", status=200) == 3
    assert inst.requests()[-1] == {"method": "GET", "path": "/api/v1/health/state",
                                   "status": 200, "fault": None}
    inst.reset_requests()
    assert inst.request_count() == 0


def test_cluster_instances_share_data_but_not_faults():
    from nethsm_emulator.testing import start_emulator
    with start_emulator(instances=2, provisioned=True) as run:
        # injected 5xx are not spec responses: no validation for these clients
        a, b = (Client(u, run.fingerprint, check=False) for u in run.urls)
        for inst in run.instances:
            inst.reset_requests()  # forget the provisioning traffic
        assert a.post("/keys/generate", ADMIN, {**GEN, "id": "shared"}).status == 201
        assert b.get("/keys/shared", OP).status == 200
        run.instances[0].fail(500)
        assert a.get("/health/state").status == 500
        assert b.get("/health/state").status == 200
        run.instances[1].lock()
        assert b.get("/health/state").json()["state"] == "Locked"
        assert run.instances[0].request_count() == 2   # generate, health (500)
        assert run.instances[1].request_count() == 3   # get key, health, health


def test_http_control_endpoint():
    from nethsm_emulator.testing import start_emulator
    with start_emulator(provisioned=True, control_port=0) as run:
        ctl = ControlClient(run.control_url)
        assert ctl.fingerprint == run.fingerprint
        inst = ctl.instance(0)
        c = Client(run.url, run.fingerprint, check=False)
        inst.fail(502, path="/keys", count=1)
        assert c.get("/keys", ADMIN).status == 502
        assert c.get("/keys", ADMIN).status == 200
        inst.stall_after_processing(path="/keys/generate")
        done = threading.Event()

        def gen():
            try:
                c.post("/keys/generate", ADMIN, {**GEN, "id": "viactl"}, timeout=5)
            except Exception:
                pass
            done.set()
        threading.Thread(target=gen, daemon=True).start()
        deadline = time.monotonic() + 5
        while c.get("/keys/viactl", ADMIN).status != 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not done.is_set()                 # key exists, answer still withheld
        inst.clear_faults()                      # releases the stalled request
        assert done.wait(5)
        inst.set_state("Locked")
        assert inst.state == "Locked"
        inst.unlock()
        assert inst.request_count(method="GET", path="/keys$") == 2
        inst.down()
        assert not inst.is_up
        inst.up()
        assert c.get("/health/state").status == 200
        inst.reset_requests()
        assert inst.requests() == []
