"""The plain-Python reference of the wire bench: what a sign costs in Python with nothing around it.

One TLS socket per thread (keep-alive), the request in one write, the answer read up to its
Content-Length, then json + base64 as any client must. No pool, no retries, no error handling:
the floor for Python code over the ssl module. Prints RESULT lines like the C harness.
"""
from __future__ import annotations

import argparse
import base64
import json
import socket
import ssl
import sys
import threading
import time


def sign_once(sock, request: bytes, buf: bytes) -> bytes:
    """One plain exchange on a keep-alive socket: write, read up to Content-Length, json +
    base64; returns the bytes already read past the answer."""
    sock.sendall(request)
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(buf) < length:
        buf += sock.recv(65536)
    body, buf = buf[:length], buf[length:]
    base64.b64decode(json.loads(body)["signature"])
    return buf


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--request-file", required=True, help="the exact HTTP request bytes to send")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    a = ap.parse_args(argv)
    request = open(a.request_file, "rb").read()
    ctx = ssl._create_unverified_context()  # loopback peer with a throw-away certificate
    counts = [0] * a.threads
    stop = threading.Event()
    errors: list[str] = []

    def worker(i: int) -> None:
        try:
            sock = ctx.wrap_socket(socket.create_connection((a.host, a.port)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = b""
            while not stop.is_set():
                buf = sign_once(sock, request, buf)
                counts[i] += 1
        except Exception as exc:  # report, stop everyone
            errors.append(repr(exc))
            stop.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.threads)]
    for t in threads:
        t.start()
    time.sleep(a.warmup)
    c0, t0, u0 = sum(counts), time.monotonic(), time.process_time()
    time.sleep(a.seconds)
    c1, t1, u1 = sum(counts), time.monotonic(), time.process_time()
    stop.set()
    if errors:
        print("RESULT " + json.dumps({"error": errors[0]}), flush=True)
        return 2
    print("RESULT " + json.dumps({"cmd": "plain_sign", "threads": a.threads, "ops": c1 - c0,
                                  "per_sec": round((c1 - c0) / (t1 - t0), 1),
                                  "cpu_cores": round((u1 - u0) / (t1 - t0), 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
