"""Issue 10, defect 1: the module never installs, changes or leaves changed any signal disposition
or the signal mask of its host, and Ctrl-C (SIGINT) during a stalled call ends the host exactly as
it would without the module.

Driven from a C host (guest_host.c) through the built .so against the emulator over TLS.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading

import pytest

from guestenv import MODULE, PY, ROOT, host_env
from guestenv import write_config

from shutil import which


def test_dispositions_and_mask_untouched_by_init_sign_finalize(guest_host, hsm_config):
    conf, log = hsm_config
    r = subprocess.run([guest_host, "signals", MODULE, "0", "opPassphrase", "p256key"], env=host_env(conf),
                       capture_output=True, text=True, timeout=120)
    assert r.stdout == ""
    assert r.returncode == 0 and "RESULT ok" in r.stderr, r.stderr + log.read_text()[-2000:]
    assert "RESULT signals_compared=31 differences=0" in r.stderr


class StallingPeer:
    """Accepts TCP connections and never sends a byte (a NetHSM that hangs)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = threading.Event()
        self.hello = threading.Event()  # the client's first TLS bytes arrived: it now waits for ours
        self.conns = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            self.accepted.set()
            threading.Thread(target=self._await_hello, args=(conn,), daemon=True).start()

    def _await_hello(self, conn):
        try:
            if conn.recv(1, socket.MSG_PEEK):
                self.hello.set()
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def stalled_config(tmp_path):
    peer = StallingPeer()
    slot = f"""  - label: Stalled
    operator: {{username: operator, password: opPassphrase}}
    timeout_seconds: 60
    retries: {{count: 0, delay_seconds: 0}}
    instances:
      - url: "https://127.0.0.1:{peer.port}/api/v1"
        danger_insecure_cert: true
"""
    conf = write_config(tmp_path / "stall.conf", [slot], log_file=tmp_path / "module.log", level="Info")
    yield conf, peer
    peer.close()


def _interrupt_stalled_call(guest_host, conf, peer, *extra):
    p = subprocess.Popen([guest_host, "stall", MODULE, "0", *extra], env=host_env(conf),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert peer.accepted.wait(30), "the module never connected to the stalling peer"
        assert peer.hello.wait(30), "the module sent nothing to the stalling peer"
        assert p.poll() is None, p.communicate()  # the call is blocked reading from the peer
        p.send_signal(signal.SIGINT)
        # The slot's timeout_seconds is 60: a host still alive 10 s after the signal ignored it.
        out, err = p.communicate(timeout=10)
        return p.returncode, out, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_ctrl_c_during_a_stalled_call_ends_the_host(guest_host, stalled_config):
    """Host without a SIGINT handler: SIG_DFL, so the kernel ends it (status: killed by SIGINT),
    no KeyboardInterrupt traceback, no CKR_GENERAL_ERROR returned."""
    conf, peer = stalled_config
    rc, out, err = _interrupt_stalled_call(guest_host, conf, peer)
    assert rc == -signal.SIGINT, f"rc={rc}\n{err}"
    assert "call_returned" not in err and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert out == ""


def test_ctrl_c_runs_the_hosts_own_handler(guest_host, stalled_config):
    conf, peer = stalled_config
    rc, out, err = _interrupt_stalled_call(guest_host, conf, peer, "handler")
    assert rc == 42 and "host handler ran" in err, f"rc={rc}\n{err}"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_ctrl_c_in_a_python_host_is_the_hosts_keyboardinterrupt(stalled_config):
    """A Python host (its SIGINT handler raises KeyboardInterrupt): the interrupt raised inside
    the module's code during the stalled call is handed back to the host, which ends with its own
    KeyboardInterrupt; the module prints nothing and does not turn it into CKR_GENERAL_ERROR."""
    conf, peer = stalled_config
    p = subprocess.Popen([PY, "-m", "tests.guest.py_stall_host", MODULE], env=host_env(conf),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert peer.accepted.wait(30), "the module never connected to the stalling peer"
        assert peer.hello.wait(30), "the module sent nothing to the stalling peer"
        assert p.poll() is None
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGINT, f"rc={p.returncode}\n{err}"
    assert err.rstrip().endswith("KeyboardInterrupt") and "py_stall_host.py" in err, err
    assert "call_returned" not in err and "p11nethsm" not in err, err


@pytest.mark.skipif(which("pkcs11-tool") is None, reason="pkcs11-tool not installed")
def test_ctrl_c_ends_pkcs11_tool_during_a_stalled_call(stalled_config):
    """The real host of the report: pkcs11-tool -L stalls on the token info; Ctrl-C ends it."""
    conf, peer = stalled_config
    p = subprocess.Popen(["pkcs11-tool", "--module", MODULE, "-L"], env=host_env(conf),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert peer.accepted.wait(30), "the module never connected to the stalling peer"
        assert peer.hello.wait(30), "the module sent nothing to the stalling peer"
        assert p.poll() is None
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGINT, f"rc={p.returncode}\n{out}\n{err}"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def test_rest_of_the_process_state_untouched(guest_host, hsm_config):
    """Not a reported defect, the same promise: locale, umask, cwd, environment, the flags of fds
    0-2 and resource limits are the same after init + sign + finalize as before (a guard: an
    embedded CPython configured differently would set LC_CTYPE from the environment)."""
    conf, log = hsm_config
    r = subprocess.run([guest_host, "process", MODULE, "0", "opPassphrase", "p256key"], env=host_env(conf),
                       capture_output=True, text=True, timeout=120)
    assert r.stdout == ""
    assert r.returncode == 0 and "RESULT ok" in r.stderr, r.stderr + log.read_text()[-2000:]


def test_process_signals_go_to_the_hosts_threads_not_the_modules(guest_host, hsm, tmp_path):
    """The module's threads (here its health-check thread: the slot's first instance is down)
    block the asynchronous signals, so a signal sent to the process reaches the host's thread that
    waits for it. Before, 199 of 200 SIGUSR1 ran the host's handler in the module's thread (and a
    host blocked in epoll_wait would not have seen its EINTR)."""
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens there: connection refused
    slot = f"""  - label: Guest
    operator: {{username: operator, password: opPassphrase}}
    timeout_seconds: 10
    retries: {{count: 2, delay_seconds: 0}}
    instances:
      - url: "https://127.0.0.1:{port}/api/v1"
        sha256_fingerprints: ["{hsm.fingerprint}"]
      - url: "{hsm.url}"
        sha256_fingerprints: ["{hsm.fingerprint}"]
"""
    conf = write_config(tmp_path / "p.conf", [slot], log_file=tmp_path / "module.log", level="Info")
    r = subprocess.run([guest_host, "sigthread", MODULE, "0", "opPassphrase", "p256key"], env=host_env(conf),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "RESULT ok" in r.stderr, r.stderr
    assert "usr1_in_module_threads=0" in r.stderr
