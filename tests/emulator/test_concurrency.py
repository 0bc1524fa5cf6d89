"""Concurrency: many keep-alive connections; slow key generation does not block."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from emuclient import Client

ADMIN, OP = ("admin", "Administrator"), ("operator", "opPassphrase")


def test_health_answers_quickly_during_rsa4096_generation(client, hsm):
    result = {}
    sending = threading.Event()

    def gen():
        c = Client(hsm.url, hsm.fingerprint, check=False)  # no in-process validator CPU
        c.get("/health/state")  # connected: the generation request goes out right after the event
        sending.set()
        t = time.monotonic()
        result["status"] = c.post("/keys/generate", ADMIN, {
            "type": "RSA", "length": 4096, "mechanisms": ["RSA_Signature_PKCS1"], "id": "big"}).status
        result["gen_s"] = time.monotonic() - t

    probe = Client(hsm.url, hsm.fingerprint, check=False)  # measure the server, not the validator
    probe.get("/health/state")  # connection already established
    th = threading.Thread(target=gen)
    th.start()
    assert sending.wait(30)
    answered = 0
    while th.is_alive():
        assert probe.get("/health/state").status == 200
        answered += 1
    th.join()
    assert result["status"] == 201
    print(f"\nRSA-4096 generation {result['gen_s']:.2f}s; {answered} health requests answered meanwhile")
    # Counted, not timed: a server blocked by the generation would answer the first probe only
    # when it is done (~0.3-3 s), so at most a couple would be answered while it runs.
    assert answered >= 20


def test_many_parallel_keepalive_connections(client, hsm):
    client.post("/keys/generate", ADMIN, {"type": "Curve25519", "mechanisms": ["EdDSA_Signature"],
                                          "id": "ed"})
    hsm.instances[0].reset_requests()
    clients = [Client(hsm.url, hsm.fingerprint, check=False) for _ in range(32)]

    def work(c):
        return [c.post("/keys/ed/sign", OP, {"mode": "EdDSA", "message": "aGk="}).status
                for _ in range(10)]
    with ThreadPoolExecutor(32) as ex:
        statuses = [s for r in ex.map(work, clients) for s in r]
    assert statuses == [200] * 320
    assert hsm.instances[0].request_count(path="/sign$", status=200) == 320
    # keep-alive: one TLS connection per client pool, reused for all 10 requests
    assert all(c.http.connection_from_url(hsm.url).num_connections == 1 for c in clients)
