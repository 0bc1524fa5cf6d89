"""Throughput of NetHSM.sign vs raw urllib3 POSTs against the same loopback HTTPS stub.

    .venv/bin/python -m tests.net.bench_client [seconds]

Both sides send the same request (POST /keys/k/sign, Basic auth, JSON body) over pooled keep-alive
connections with the same TLS settings (pinned cert); the stub answers a fixed signature.
"""

from __future__ import annotations

import base64
import json
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

import urllib3
from p11nethsm.log import logger

from p11nethsm.api.client import Credentials, NetHSM

from .certs import make_cert
from .conftest import make_slot
from .stub_server import StubServer

ANSWER = (200, "application/json", json.dumps({"signature": base64.b64encode(b"s" * 64).decode()}).encode())


def run(fn, threads: int, seconds: float) -> float:
    stop = threading.Event()
    counts = [0] * threads

    def loop(i):
        n = 0
        while not stop.is_set():
            fn()
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def main(seconds: float = 3.0) -> None:
    logger.remove()
    d = Path(tempfile.mkdtemp())
    pair, _, _ = make_cert("keyfender")
    (d / "c.pem").write_bytes(pair.cert_pem)
    (d / "k.pem").write_bytes(pair.key_pem)
    srv = StubServer(str(d / "c.pem"), str(d / "k.pem"), route=lambda h: ANSWER).start()
    try:
        client = NetHSM(make_slot([srv.url], pins=[pair.sha256], max_conns=8, timeout=10), threads=True)
        creds = Credentials("operator", "opPassphrase")
        msg = b"\x11" * 32
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        pool = urllib3.HTTPSConnectionPool("127.0.0.1", srv.port, maxsize=8, block=False, ssl_context=ctx,
                                           retries=False)
        headers = {"Authorization": "Basic " + base64.b64encode(b"operator:opPassphrase").decode(),
                   "Content-Type": "application/json", "Accept": "*/*"}

        def raw():
            body = json.dumps({"mode": "ECDSA", "message": base64.b64encode(msg).decode()})
            r = pool.urlopen("POST", "/api/v1/keys/k/sign", body=body, headers=headers)
            base64.b64decode(json.loads(r.data)["signature"])

        def ours():
            client.sign(creds, "k", "ECDSA", msg)

        import warnings
        warnings.simplefilter("ignore")
        for threads in (1, 8):
            run(raw, threads, 0.5)
            run(ours, threads, 0.5)
            r1 = run(raw, threads, seconds)
            o1 = run(ours, threads, seconds)
            r2 = run(raw, threads, seconds)
            o2 = run(ours, threads, seconds)
            raw_rate, our_rate = (r1 + r2) / 2, (o1 + o2) / 2
            print(f"{threads} thread(s): raw urllib3 {raw_rate:8.0f}/s  NetHSM.sign {our_rate:8.0f}/s  "
                  f"ratio {our_rate / raw_rate:.2f}  "
                  f"(per request: raw {1e6 / raw_rate:.0f} us, ours {1e6 / our_rate:.0f} us)")
        # client-side CPU per call, without the server: time spent outside the socket wait
        client.close()
    finally:
        srv.stop()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
