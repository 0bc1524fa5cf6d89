"""Prometheus metrics in a text file (`metrics_file`, node_exporter's textfile collector).

With `metrics_file: PATH` the module keeps a few counters and rewrites PATH every
`metrics_interval_seconds` (a daemon thread; without threads, at the first call after the
interval) and at C_Finalize, writing a temporary file next to it and renaming it over PATH so a
reader never sees half a file. `{pid}` in PATH is replaced by the process id (one file per
process: counters are per process).

Per instance (labels `slot`, `instance`): requests answered, errors by kind, retries,
failovers, health (1 reachable, 0 unreachable), request latency histogram. Per process: PKCS#11
calls by function and CKR. Without `metrics_file` nothing here runs: the request loop and the
dispatcher test one flag.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import Counter

from p11nethsm import hostsignals
from p11nethsm.log import logger

__all__ = ["Metrics", "configure", "current", "shutdown"]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_metrics: Metrics | None = None  # the process's registry while metrics_file is configured


class _Latency:
    __slots__ = ("counts", "total", "n")

    def __init__(self):
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0
        self.n = 0


class Metrics:
    def __init__(self, path: str, interval: float, library=None):
        self.path = path.replace("{pid}", str(os.getpid()))
        self.interval = interval
        self.library = library
        self.lock = threading.Lock()
        self.requests: Counter = Counter()  # (slot, instance) -> answered requests
        self.errors: Counter = Counter()  # (slot, instance, kind)
        self.retries: Counter = Counter()  # (slot, instance): retries after a failure there
        self.failovers: Counter = Counter()  # (slot, instance): calls moved on from this instance
        self.latency: dict[tuple[str, str], _Latency] = {}
        self.calls: Counter = Counter()  # (function, CKR name)
        self.last_write = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- recording (called on the request and call paths) ------------------------------------
    def request(self, slot: str, instance: str, seconds: float) -> None:
        key = (slot, instance)
        with self.lock:
            self.requests[key] += 1
            lat = self.latency.get(key)
            if lat is None:
                lat = self.latency[key] = _Latency()
            lat.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
            lat.total += seconds
            lat.n += 1

    def error(self, slot: str, instance: str, kind: str) -> None:
        with self.lock:
            self.errors[(slot, instance, kind)] += 1

    def retry(self, slot: str, instance: str) -> None:
        with self.lock:
            self.retries[(slot, instance)] += 1

    def failover(self, slot: str, instance: str) -> None:
        with self.lock:
            self.failovers[(slot, instance)] += 1

    def call(self, function: str, ckr: str) -> None:
        with self.lock:
            self.calls[(function, ckr)] += 1
        if self._thread is None and time.monotonic() - self.last_write >= self.interval:
            self.write()

    # ---- output ------------------------------------------------------------------------------
    def _health(self) -> dict[tuple[str, str], int]:
        out = {}
        lib = self.library
        for slot in getattr(lib, "slots", ()):
            api = slot._api
            for inst in getattr(api, "instances", ()) or ():
                out[(slot.config.label, inst.name)] = 1 if inst.usable else 0
        return out

    def render(self) -> str:
        with self.lock:
            requests, errors = dict(self.requests), dict(self.errors)
            retries, failovers, calls = dict(self.retries), dict(self.failovers), dict(self.calls)
            latency = {k: (list(v.counts), v.total, v.n) for k, v in self.latency.items()}
        health = self._health()
        lines: list[str] = []

        def family(name, kind, help_text, samples):
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in sorted(samples.items()):
                lines.append(f"{name}{_labels(labels)} {_num(value)}")

        inst_labels = ("slot", "instance")
        family("p11nethsm_requests_total", "counter", "NetHSM REST requests answered, by instance.",
               {tuple(zip(inst_labels, k)): v for k, v in requests.items()})
        family("p11nethsm_request_errors_total", "counter",
               "NetHSM REST requests that failed, by instance and kind (transport, tls, bad_response, http_NNN).",
               {tuple(zip((*inst_labels, "kind"), k)): v for k, v in errors.items()})
        family("p11nethsm_retries_total", "counter", "Requests repeated after a failure on this instance.",
               {tuple(zip(inst_labels, k)): v for k, v in retries.items()})
        family("p11nethsm_failovers_total", "counter", "Requests moved on to another instance from this one.",
               {tuple(zip(inst_labels, k)): v for k, v in failovers.items()})
        family("p11nethsm_instance_up", "gauge", "Health of the instance as the module sees it (1 reachable, 0 not).",
               {tuple(zip(inst_labels, k)): v for k, v in health.items()})
        name = "p11nethsm_request_duration_seconds"
        lines.append(f"# HELP {name} Latency of answered NetHSM REST requests.")
        lines.append(f"# TYPE {name} histogram")
        for key in sorted(latency):
            counts, total, n = latency[key]
            base = tuple(zip(inst_labels, key))
            running = 0
            for bound, count in zip(BUCKETS, counts):
                running += count
                lines.append(f"{name}_bucket{_labels(base + (('le', _num(bound)),))} {running}")
            lines.append(f"{name}_bucket{_labels(base + (('le', '+Inf'),))} {n}")
            lines.append(f"{name}_sum{_labels(base)} {_num(total)}")
            lines.append(f"{name}_count{_labels(base)} {n}")
        family("p11nethsm_calls_total", "counter", "PKCS#11 calls of this process, by function and CKR.",
               {(("function", f), ("ckr", c)): v for (f, c), v in calls.items()})
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        """Write the file atomically (temp file + rename); a failure is logged, never raised."""
        self.last_write = time.monotonic()
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            text = self.render()
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.path)
        except Exception as exc:  # metrics must never break a PKCS#11 call
            logger.warning("metrics_file {}: not written: {}", self.path, exc)
            try:
                os.unlink(tmp)
            except OSError:
                pass

    # ---- the writer thread ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="p11nethsm-metrics", daemon=True)
        with hostsignals.blocked():  # the host's signals go to the host's threads
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write()

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)


def _esc(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs) -> str:
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in pairs) + "}" if pairs else ""


def _num(value) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def current() -> Metrics | None:
    return _metrics


def configure(config, library, *, threads: bool) -> Metrics | None:
    """C_Initialize: start metrics if the config asks for them."""
    global _metrics
    shutdown(write=False)
    path = getattr(config, "metrics_file", None)
    if not path:
        return None
    m = Metrics(path, float(config.metrics_interval_seconds), library)
    _metrics = m
    if threads:
        m.start()
    return m


def shutdown(write: bool = True) -> None:
    """C_Finalize: a last write, then stop."""
    global _metrics
    m, _metrics = _metrics, None
    if m is None:
        return
    m.stop()
    if write:
        m.write()


def drop_in_child() -> None:
    """fork child: the parent's counters and thread are not the child's."""
    global _metrics
    _metrics = None
