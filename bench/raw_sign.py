"""Raw REST baseline for P1/P5: POST /keys/{id}/sign with urllib3, nothing else.

Runs as its own process (the driver starts it), so its GIL is neither the module's nor the
emulator's. It sends the request the module sends for CKM_ECDSA / CKM_RSA_PKCS: JSON
{"mode": ..., "message": <b64 of the same number of bytes>} with HTTP Basic auth of the operator,
over one keep-alive pool per instance of `--threads` connections (block=True: N threads on N
connections), TLS pinned by SHA-256 fingerprint. Each response is parsed (json + base64), as any
client must. With several --url, requests go round-robin over the instances (P5).

Output: one "RESULT {json}" line per measured window, the same shape as the C harness prints.
"""
from __future__ import annotations

import argparse
import base64
import itertools
import json
import sys
import threading
import time

import urllib3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", action="append", required=True, help="https://127.0.0.1:PORT/api/v1")
    ap.add_argument("--fingerprint", action="append", default=[], help="SHA-256 of the TLS cert")
    ap.add_argument("--user", default="operator")
    ap.add_argument("--password", default="opPassphrase")
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", required=True, help="ECDSA | PKCS1 | ...")
    ap.add_argument("--message-hex", required=True, help="the exact bytes the module is given to sign")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args(argv)

    for u in a.url:
        if not u.startswith("https://127.0.0.1:"):
            raise SystemExit("raw_sign: loopback only")
    fps = a.fingerprint or [None] * len(a.url)
    pools = []
    for url, fp in zip(a.url, fps):
        host_port = url.split("//", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        kw = {"assert_fingerprint": fp} if fp else {}
        pools.append((urllib3.HTTPSConnectionPool(
            host, int(port), maxsize=a.threads, block=True, cert_reqs="CERT_NONE",
            assert_hostname=False, retries=False, timeout=urllib3.Timeout(connect=10, read=60), **kw),
            "/" + url.split("//", 1)[1].split("/", 1)[1].rstrip("/")))
    urllib3.disable_warnings()

    msg = bytes.fromhex(a.message_hex)
    # compact JSON and these three headers: byte for byte what p11nethsm/api/client.py sends
    body = json.dumps({"mode": a.mode, "message": base64.b64encode(msg).decode()},
                      separators=(",", ":")).encode()
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{a.user}:{a.password}".encode()).decode(),
        "Content-Type": "application/json",
        "Accept": "*/*",
    }
    counts = [0] * a.threads
    stop = threading.Event()
    errors: list = []
    rr = itertools.cycle(range(len(pools)))
    rr_lock = threading.Lock()
    sig_len = [0]

    def worker(i: int):
        try:
            while not stop.is_set():
                with rr_lock:
                    pool, prefix = pools[next(rr)]
                r = pool.urlopen("POST", f"{prefix}/keys/{a.key}/sign", body=body, headers=headers,
                                 preload_content=True, release_conn=True)
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {r.data[:200]!r}")
                sig = base64.b64decode(json.loads(r.data)["signature"])
                sig_len[0] = len(sig)
                counts[i] += 1
        except Exception as e:  # report, stop everyone
            errors.append(repr(e))
            stop.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.threads)]
    for t in threads:
        t.start()
    time.sleep(a.warmup)
    for r in range(a.rounds):
        print("MARK start", flush=True)  # the driver samples the emulator's CPU time at the marks
        c0, t0, u0 = sum(counts), time.monotonic(), time.process_time()
        time.sleep(a.seconds)
        c1, t1, u1 = sum(counts), time.monotonic(), time.process_time()
        print("MARK end", flush=True)
        if errors:
            break
        print("RESULT " + json.dumps({"cmd": "raw_sign", "threads": a.threads, "round": r, "ops": c1 - c0,
                                      "seconds": round(t1 - t0, 4), "per_sec": round((c1 - c0) / (t1 - t0), 1),
                                      "sig_len": sig_len[0], "instances": len(pools),
                                      "cpu_cores": round((u1 - u0) / (t1 - t0), 3)}), flush=True)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    if errors:
        print("RESULT " + json.dumps({"error": errors[0]}), flush=True)
        print(f"raw_sign: {errors[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
