"""In-process emulator: one shared Device, N serving instances (cluster
members), each with its own fault rules, request log and lock state."""
from __future__ import annotations

import threading

from .faults import Capacity, Fault, FaultSet, RequestLog
from .server import HsmServer
from .state import Device, instance_state
from .tls import TlsIdentity


class Instance:
    """One HTTPS listener. All control methods are safe to call from any thread."""

    def __init__(self, device: Device, host: str, port: int, index: int):
        self.device = device
        self.host, self.port, self.index = host, port, index
        self.faults = FaultSet()
        self.log = RequestLog()
        self.capacity = Capacity()
        self.locked = device.provisioned and device.config["unattended_boot"] != "on"
        self.failure: str | None = None  # the diagnose message while in the 5.0 Failed state
        self._api: str | None = None  # "4.0" / "5.0"; None: the device's default (labels)
        self._server: HsmServer | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------ addresses
    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}/api/v1"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    # ------------------------------------------------------------ up / down
    def up(self):
        """Starts (or restarts) listening on the same port."""
        with self._lock:
            if self._server is not None:
                return
            srv = HsmServer((self.host, self.port), self)
            self.port = srv.server_address[1]
            self._server = srv
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             name=f"nethsm-emulator-{self.port}", daemon=True).start()

    def down(self):
        """Stops accepting (connect refused) and drops open connections."""
        with self._lock:
            srv, self._server = self._server, None
        if srv is None:
            return
        srv.shutdown()
        srv.server_close()
        srv.close_all_connections()
        self.faults.release_stalls()

    # ------------------------------------------------------------ state
    @property
    def state(self) -> str:
        return instance_state(self.device, self)

    def set_state(self, state: str, message: str | None = None):
        """'Locked', 'Operational' or (5.0 API) 'Failed' with the message GET /health/diagnose
        reports (needs a provisioned device). Locked/Operational clear a failure."""
        if state not in ("Locked", "Operational", "Failed"):
            raise ValueError("state must be 'Locked', 'Operational' or 'Failed'")
        if not self.device.provisioned:
            raise ValueError("device is not provisioned")
        if state == "Failed":
            if not self.v5:
                raise ValueError("the Failed state needs the 5.0 API (labels / api_version 5.0)")
            self.failure = message or "cluster store unavailable"
            return
        self.failure = None
        self.locked = state == "Locked"

    # ------------------------------------------------------------ API version
    @property
    def api_version(self) -> str:
        if self._api is not None:
            return self._api
        return "5.0" if self.device.labels_enabled else "4.0"

    @property
    def v5(self) -> bool:
        return self.api_version == "5.0"

    def set_api_version(self, version: str | None):
        """Serve the 4.0 or the 5.0 API on this instance (None: the emulator's default), as a
        cluster member on other firmware would."""
        if version not in (None, "4.0", "5.0"):
            raise ValueError("api version must be '4.0' or '5.0'")
        self._api = version
        if version == "4.0":
            self.failure = None

    def lock(self):
        self.set_state("Locked")

    def unlock(self):
        self.set_state("Operational")

    # ------------------------------------------------------------ faults
    def add_fault(self, kind: str, method=None, path=None, count=None, **kw) -> Fault:
        return self.faults.add(Fault(kind, method, path, count, **kw))

    def add_latency(self, seconds: float, method=None, path=None, count=None) -> Fault:
        return self.add_fault("latency", method, path, count, seconds=seconds)

    def stall(self, method=None, path=None, count=None) -> Fault:
        return self.add_fault("stall", method, path, count)

    def stall_after_processing(self, method=None, path=None, count=None) -> Fault:
        return self.add_fault("stall_after", method, path, count)

    def reset_connections(self, method=None, path=None, count=None,
                          after_processing: bool = False) -> Fault:
        return self.add_fault("reset_after" if after_processing else "reset", method, path, count)

    def fail(self, status: int = 503, method=None, path=None, count=None,
             message: str = "Service unavailable (injected fault)") -> Fault:
        return self.add_fault("error", method, path, count, status=status, message=message)

    def drip(self, seconds: float = 1.0, method=None, path=None, count=None) -> Fault:
        """The request is executed, then its answer goes out one byte every `seconds`."""
        return self.add_fault("drip", method, path, count, seconds=seconds)

    def cut_body(self, method=None, path=None, count=None) -> Fault:
        """The request is executed; the answer stops half-way through its body."""
        return self.add_fault("cut", method, path, count)

    def answer(self, status: int, body: str, method=None, path=None, count=None) -> Fault:
        """Answer with `status` and the raw JSON text `body` instead of processing."""
        return self.add_fault("body", method, path, count, status=status, body=body)

    def clear_faults(self):
        self.faults.clear()

    # ------------------------------------------------------------ capacity model
    def set_capacity(self, concurrent: int | None, service_time: float = 0.0, method=None,
                     path=None) -> dict:
        """At most `concurrent` requests processed at once (others wait in line, FIFO), each taking
        at least `service_time` s. `set_capacity(None)` = unlimited (the default)."""
        self.capacity.set(concurrent, service_time, method, path)
        return self.capacity.to_json()

    def get_capacity(self) -> dict:
        return self.capacity.to_json()

    # ------------------------------------------------------------ request log
    def requests(self) -> list[dict]:
        return self.log.entries()

    def request_count(self, method=None, path=None, status=None) -> int:
        return self.log.count(method, path, status)

    def reset_requests(self):
        """Clears the request log and zeroes the capacity model's counters."""
        self.log.reset()
        self.capacity.reset_stats()


class Emulator:
    def __init__(self, listen=(("127.0.0.1", 0),), state_dir: str | None = None,
                 labels: bool = False, throttle: bool = True):
        self.device = Device(state_dir)
        self.device.labels_enabled = labels
        self.device.throttle_enabled = throttle
        self.device.tls = TlsIdentity(state_dir)
        self.instances = [Instance(self.device, h, p, i) for i, (h, p) in enumerate(listen)]
        self.device.instances = self.instances

    def start(self) -> "Emulator":
        for inst in self.instances:
            inst.up()
        return self

    def stop(self):
        for inst in self.instances:
            inst.down()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def fingerprint(self) -> str:
        return self.device.tls.fingerprint

    @property
    def urls(self) -> list[str]:
        return [i.url for i in self.instances]

    def set_throttle(self, enabled: bool):
        self.device.throttle_enabled = enabled

    def set_state(self, state: str, message: str | None = None):
        for inst in self.instances:
            inst.set_state(state, message)
