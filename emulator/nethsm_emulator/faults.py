"""Per-instance fault rules and the request log used by reliability tests."""
from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

# before the API runs: latency, stall, reset, error, body (answer `status` with the raw `body`)
# after the API ran (request executed, answer withheld or spoiled): stall_after, reset_after,
#   drip (the answer one byte every `seconds`), cut (headers and half the body, then close)
KINDS = ("latency", "stall", "stall_after", "reset", "reset_after", "error", "body", "drip", "cut")
AFTER = ("stall_after", "reset_after", "drip", "cut")


@dataclass
class Fault:
    kind: str
    method: str | None = None     # e.g. "POST"; None = any
    path: str | None = None       # regex searched in the request path (without query)
    count: int | None = None      # apply N times, then the rule disappears; None = until cleared
    seconds: float = 0.0          # latency
    status: int = 503             # error
    message: str = "Service unavailable (injected fault)"
    body: str = ""                # body: the raw answer (application/json)
    _regex: re.Pattern | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {KINDS}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1")
        self._regex = re.compile(self.path) if self.path else None

    def matches(self, method: str, path: str) -> bool:
        return ((self.method is None or self.method.upper() == method)
                and (self._regex is None or self._regex.search(path) is not None))

    def to_json(self) -> dict:
        return {"kind": self.kind, "method": self.method, "path": self.path, "count": self.count,
                "seconds": self.seconds, "status": self.status, "message": self.message,
                "body": self.body}


class FaultSet:
    def __init__(self):
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._release = threading.Event()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def list(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def clear(self):
        with self._lock:
            self._faults.clear()
        self.release_stalls()

    def release_stalls(self):
        """Wakes every stalled request; they then close their connection unanswered."""
        with self._lock:
            old, self._release = self._release, threading.Event()
        old.set()

    def stall_event(self) -> threading.Event:
        with self._lock:
            return self._release

    def pick(self, method: str, path: str):
        """Consumes matching rules: returns (latency seconds, before-fault, after-fault)."""
        latency, before, after = 0.0, None, None
        with self._lock:
            for f in list(self._faults):
                if not f.matches(method, path):
                    continue
                if f.kind == "latency":
                    latency += f.seconds
                elif f.kind in AFTER:
                    if after is not None:
                        continue
                    after = f
                else:
                    if before is not None:
                        continue
                    before = f
                if f.count is not None:
                    f.count -= 1
                    if f.count == 0:
                        self._faults.remove(f)
        return latency, before, after


class Capacity:
    """Per-instance capacity model of an appliance (default off).

    At most `concurrent` matching requests are processed at once (None = no limit); the others wait
    in line, first come first served, like requests queued for a device's crypto engines. Each
    processed request holds its slot for at least `service_time` seconds (it sleeps for the rest
    after the API ran: a device whose crypto is slower than this machine's). `method`/`path` scope
    it like a fault rule (None = every request). Waiting happens after the latency/"before" faults
    and before the API runs; "after" faults come after the slot is released.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._line: deque = deque()  # tickets of the waiting requests, in arrival order
        self._busy = 0               # requests holding a slot (counted only while a limit is set)
        self.concurrent: int | None = None
        self.service_time = 0.0
        self.method: str | None = None
        self.path: str | None = None
        self._regex: re.Pattern | None = None
        self._reset_stats()

    def _reset_stats(self):
        self.processed = 0           # requests that went through the model since set()/reset_stats()
        self.waited = 0              # ... of which had to wait for a slot
        self.line_sum = 0            # sum of the line lengths found on arrival (mean = line_sum/processed)
        self.max_waiting = 0         # longest line seen
        self.max_busy = 0            # most requests holding a slot at once
        self.busy_seconds = 0.0      # total time slots were held

    def set(self, concurrent: int | None = None, service_time: float = 0.0,
            method: str | None = None, path: str | None = None):
        if concurrent is not None and (isinstance(concurrent, bool) or int(concurrent) != concurrent
                                       or concurrent < 1):
            raise ValueError("concurrent must be an integer >= 1 or None")
        service_time = float(service_time or 0.0)
        if service_time < 0:
            raise ValueError("service_time must be >= 0")
        regex = re.compile(path) if path else None
        with self._cond:
            self.concurrent = None if concurrent is None else int(concurrent)
            self.service_time = service_time
            self.method, self.path, self._regex = method, path, regex
            self._reset_stats()
            self._cond.notify_all()  # a raised or removed limit lets waiting requests in

    def clear(self):
        self.set(None, 0.0)

    def reset_stats(self):
        with self._cond:
            self._reset_stats()

    @property
    def active(self) -> bool:
        return self.concurrent is not None or self.service_time > 0

    def _applies(self, method: str, path: str) -> bool:
        return (self.active and (self.method is None or self.method.upper() == method)
                and (self._regex is None or self._regex.search(path) is not None))

    def acquire(self, method: str, path: str):
        """Waits for a slot. Returns a token for release(), or None when the model does not apply."""
        with self._cond:
            if not self._applies(method, path):
                return None
            counted = False
            self.processed += 1
            if self.concurrent is not None:
                if self._line or self._busy >= self.concurrent:
                    self.waited += 1
                self.line_sum += len(self._line)
                ticket = object()
                self._line.append(ticket)
                self.max_waiting = max(self.max_waiting, len(self._line))
                while not (self._line[0] is ticket
                           and (self.concurrent is None or self._busy < self.concurrent)):
                    self._cond.wait()
                self._line.popleft()
                self._busy += 1
                self.max_busy = max(self.max_busy, self._busy)
                counted = True
                self._cond.notify_all()  # the next in line re-checks
            return counted, self.service_time, time.monotonic()

    def release(self, token):
        if token is None:
            return
        counted, service_time, t0 = token
        rest = service_time - (time.monotonic() - t0)
        if rest > 0:
            time.sleep(rest)  # the slot stays taken: the device is still busy
        with self._cond:
            self.busy_seconds += time.monotonic() - t0
            if counted:
                self._busy -= 1
                self._cond.notify_all()

    def to_json(self) -> dict:
        with self._cond:
            return {"concurrent": self.concurrent, "service_time": self.service_time,
                    "method": self.method, "path": self.path, "busy": self._busy,
                    "waiting": len(self._line), "processed": self.processed, "waited": self.waited,
                    "mean_line": round(self.line_sum / self.processed, 3) if self.processed else None,
                    "max_waiting": self.max_waiting, "max_busy": self.max_busy,
                    "busy_seconds": round(self.busy_seconds, 4)}


class RequestLog:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: list[dict] = []

    def record(self, method: str, path: str, status: int | None, fault: str | None = None,
               query: str = ""):
        entry = {"method": method, "path": path, "status": status, "fault": fault}
        if query:  # only when there is one (entries of plain requests keep their shape)
            entry["query"] = query
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def count(self, method: str | None = None, path: str | None = None,
              status: int | None = None) -> int:
        rx = re.compile(path) if path else None
        return sum(1 for e in self.entries()
                   if (method is None or e["method"] == method.upper())
                   and (rx is None or rx.search(e["path"]))
                   and (status is None or e["status"] == status))

    def reset(self):
        with self._lock:
            self._entries.clear()
