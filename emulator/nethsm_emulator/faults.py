"""Per-instance fault rules and the request log used by reliability tests."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

# before the API runs: latency, stall, reset, error
# after the API ran (request executed, answer withheld): stall_after, reset_after
KINDS = ("latency", "stall", "stall_after", "reset", "reset_after", "error")


@dataclass
class Fault:
    kind: str
    method: str | None = None     # e.g. "POST"; None = any
    path: str | None = None       # regex searched in the request path (without query)
    count: int | None = None      # apply N times, then the rule disappears; None = until cleared
    seconds: float = 0.0          # latency
    status: int = 503             # error
    message: str = "Service unavailable (injected fault)"
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
                "seconds": self.seconds, "status": self.status, "message": self.message}


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
                elif f.kind in ("stall_after", "reset_after"):
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


class RequestLog:
    def __init__(self):
        self._lock = threading.Lock()
        self._entries: list[dict] = []

    def record(self, method: str, path: str, status: int | None, fault: str | None = None):
        with self._lock:
            self._entries.append({"method": method, "path": path, "status": status, "fault": fault})

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
