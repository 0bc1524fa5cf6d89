"""A Python host (host mode) whose main thread makes a call that stalls: py_stall_host.py MODULE.
The test sends SIGINT; Python's own handler is installed, so the host should end with its own
KeyboardInterrupt, as without the module."""
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "security"))
from sodriver import SO  # noqa: E402

so = SO(sys.argv[1])
so.ok("C_Initialize", None)
buf = ctypes.create_string_buffer(512)
rv = so("C_GetTokenInfo", 0, buf)
print("call_returned", hex(rv), file=sys.stderr, flush=True)
