"""Helpers and pytest fixtures for test suites that need a NetHSM.

    from nethsm_emulator.testing import start_emulator
    with start_emulator(instances=2, provisioned=True) as hsm:
        hsm.urls, hsm.fingerprint, hsm.instances[0].stall(path="/keys/generate")

Fixtures (enable with `pytest_plugins = ["nethsm_emulator.testing"]` in a conftest):
  nethsm_emulator          function-scoped, unprovisioned, 1 instance
  nethsm_provisioned       function-scoped, provisioned: admin + operator, no keys
  nethsm_standard_session  session-scoped, provisioned with STANDARD_KEYS (do not mutate)
"""
from __future__ import annotations


import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from .control import ControlClient, ControlServer
from .emulator import Emulator
from .provision import ADMIN, OPERATOR, STANDARD_KEYS, UNLOCK_PASSPHRASE, NetHSM, provision_standard


@dataclass
class RunningEmulator:
    urls: list            # ["https://127.0.0.1:PORT/api/v1", ...], one per instance
    fingerprint: str      # "AB:CD:..." SHA-256 of the TLS certificate
    instances: list       # Instance (in-process) or RemoteInstance (process): same methods
    control_url: str | None = None
    emulator: Emulator | None = None           # in-process only
    process: subprocess.Popen | None = None    # separate process only
    admin: tuple = ADMIN
    operator: tuple = OPERATOR
    unlock_passphrase: str = UNLOCK_PASSPHRASE
    state_dir: str | None = None
    _stoppers: list = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def control(self):
        """Instance control of instance 0."""
        return self.instances[0]

    def client(self, index: int = 0) -> NetHSM:
        return NetHSM(self.urls[index], self.fingerprint)

    def set_throttle(self, enabled: bool):
        if self.emulator is not None:
            self.emulator.set_throttle(enabled)
        else:
            ControlClient(self.control_url).set_throttle(enabled)

    def stop(self):
        for fn in reversed(self._stoppers):
            fn()
        self._stoppers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_emulator(instances: int = 1, *, provisioned: bool = False, keys: dict | None = None,
                   operator: tuple | None = OPERATOR, state_dir: str | None = None,
                   labels: bool = False, throttle: bool = True,
                   control_port: int | None = None) -> RunningEmulator:
    """Starts an in-process emulator on free loopback ports.

    provisioned=True provisions with admin/Administrator, unlock passphrase
    UnlockPassphrase and creates `operator` (default operator/opPassphrase), then
    generates `keys` (default: none; pass STANDARD_KEYS for the standard set).
    control_port (0 = free port) also starts the HTTP control endpoint."""
    emu = Emulator([("127.0.0.1", 0)] * instances, state_dir=state_dir, labels=labels,
                   throttle=throttle).start()
    run = RunningEmulator(emu.urls, emu.fingerprint, emu.instances, emulator=emu,
                          state_dir=state_dir)
    run._stoppers.append(emu.stop)
    if control_port is not None:
        ctl = ControlServer(emu, "127.0.0.1", control_port).start()
        run.control_url = ctl.url
        run._stoppers.append(ctl.stop)
    if provisioned:
        try:
            provision_standard(emu.urls[0], fingerprint=emu.fingerprint, operator=operator,
                               keys=keys or {})
        except Exception:
            run.stop()
            raise
    return run


_LISTEN = re.compile(r"^listening (\S+) sha256 (\S+)$")


def start_emulator_process(instances: int = 1, *, provisioned: bool = False,
                           state_dir: str | None = None, labels: bool = False,
                           throttle: bool = True, timeout: float = 60,
                           capacity: int | None = None, service_time: float = 0.0) -> RunningEmulator:
    """Starts `python -m nethsm_emulator` as a separate process with a control endpoint.
    provisioned=True uses --provision (standard users and STANDARD_KEYS); capacity/service_time
    pass --capacity/--service-time (the capacity model of every instance)."""
    state_dir = state_dir or tempfile.mkdtemp(prefix="nethsm-emulator-")
    cmd = [sys.executable, "-m", "nethsm_emulator", "--state-dir", state_dir,
           "--control", "127.0.0.1:0"]
    for _ in range(instances):
        cmd += ["--listen", "127.0.0.1:0"]
    if labels:
        cmd.append("--labels")
    if not throttle:
        cmd.append("--no-throttle")
    if provisioned:
        cmd.append("--provision")
    if capacity is not None:
        cmd += ["--capacity", str(capacity)]
    if service_time:
        cmd += ["--service-time", str(service_time)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    urls, fp, control_url = [], None, None
    lines: queue.Queue = queue.Queue()
    # a reader thread, because select() does not see lines already in Python's buffer
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    deadline = time.monotonic() + timeout
    while control_url is None:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic())).strip()
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"emulator process did not start (rc={proc.poll()})") from None
        m = _LISTEN.match(line)
        if m:
            urls.append(m.group(1))
            fp = m.group(2)
        elif line.startswith("control "):
            control_url = line.split()[1]
    ctl = ControlClient(control_url)
    run = RunningEmulator(urls, fp, ctl.instances, control_url=control_url, process=proc,
                          state_dir=state_dir)

    def _stop():
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    run._stoppers.append(_stop)
    return run


# ---------------------------------------------------------------- pytest fixtures

try:
    import pytest
except ImportError:  # pragma: no cover - the helpers work without pytest
    pytest = None

if pytest is not None:
    @pytest.fixture
    def nethsm_emulator():
        with start_emulator() as run:
            yield run

    @pytest.fixture
    def nethsm_provisioned():
        with start_emulator(provisioned=True) as run:
            yield run

    @pytest.fixture(scope="session")
    def nethsm_standard_session():
        with start_emulator(provisioned=True, keys=STANDARD_KEYS) as run:
            yield run


__all__ = ["RunningEmulator", "start_emulator", "start_emulator_process", "STANDARD_KEYS",
           "ADMIN", "OPERATOR", "UNLOCK_PASSPHRASE"]

