"""Starts `nethsm-emulator` (same arguments) for the benchmarks, with TCP_NODELAY on every accepted
connection.

Why: the stdlib HTTP server writes a response's header block and its body in two writes. Without
TCP_NODELAY the body waits, by Nagle's algorithm, for the client's delayed ACK of the headers
(40 ms on Linux), so every request costs >= 40 ms and a single-thread client tops out near 22
requests/s whatever it does: both columns of P1 would measure that timer, not the module. Setting
TCP_NODELAY is idempotent, so this wrapper stays harmless once the emulator sets it itself.
"""
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "emulator"))

from nethsm_emulator import server  # noqa: E402

_setup = server.HsmHandler.setup


def _setup_nodelay(self):
    try:
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    _setup(self)


server.HsmHandler.setup = _setup_nodelay

from nethsm_emulator.cli import main  # noqa: E402

sys.exit(main())
