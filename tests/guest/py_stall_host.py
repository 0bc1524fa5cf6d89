"""A Python host (host mode) whose main thread makes a call that stalls: py_stall_host.py MODULE.
The test sends SIGINT; Python's own handler is installed, so the host should end with its own
KeyboardInterrupt, as without the module."""
import ctypes
import os
import sys

from tests.security.sodriver import SO  # run as `python -m tests.guest.py_stall_host` from the root

so = SO(sys.argv[1])
so.ok("C_Initialize", None)
buf = ctypes.create_string_buffer(512)
rv = so("C_GetTokenInfo", 0, buf)
print("call_returned", hex(rv), file=sys.stderr, flush=True)
