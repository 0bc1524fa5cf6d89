"""Emulator sign throughput (not a test).

Starts the emulator as a SEPARATE PROCESS (python -m nethsm_emulator, one instance,
standard keys) and drives it with urllib3 clients over keep-alive HTTPS
connections, one connection per client thread. Prints signatures per second for
ECDSA P-256 and RSA-2048 PKCS1 with 1 and 8 client threads.

    .venv/bin/python bench/emulator_bench.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import threading
import time

import urllib3

from nethsm_emulator.testing import start_emulator_process

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
DIGEST_INFO_SHA256 = bytes.fromhex("3031300d060960864801650304020105000420")
CASES = {
    "ECDSA P-256": ("p256key", {"mode": "ECDSA",
                                "message": base64.b64encode(hashlib.sha256(b"x").digest()).decode()}),
    "RSA-2048 PKCS1": ("rsakey", {"mode": "PKCS1", "message": base64.b64encode(
        DIGEST_INFO_SHA256 + hashlib.sha256(b"x").digest()).decode()}),
}


def run_case(url, fp, key, body, threads, seconds):
    headers = {**urllib3.make_headers(basic_auth="operator:opPassphrase"),
               "Content-Type": "application/json"}
    payload = json.dumps(body).encode()
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i):
        http = urllib3.PoolManager(cert_reqs="CERT_NONE", assert_fingerprint=fp, maxsize=1)
        while time.monotonic() < stop:
            r = http.request("POST", f"{url}/keys/{key}/sign", body=payload, headers=headers)
            assert r.status == 200, r.data
            counts[i] += 1
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    run = start_emulator_process(provisioned=True, throttle=False)
    try:
        url, fp = run.urls[0], run.fingerprint
        print("emulator: separate process; client: urllib3, keep-alive, this process")
        print(f"{'operation':<16} {'threads':>7} {'sign/s':>9}")
        for name, (key, body) in CASES.items():
            for threads in (1, 8):
                rate = run_case(url, fp, key, body, threads, args.seconds)
                print(f"{name:<16} {threads:>7} {rate:>9.0f}", flush=True)
    finally:
        run.stop()


if __name__ == "__main__":
    main()
