"""A Python host that forks while another of its threads is importing a module (the chaos soak
found a child hung on an import lock: the module imports lazily in the host's threads). With the
module loaded, fork waits (bounded) until the import is done, so the child can import and exit."""

from __future__ import annotations

import subprocess

from hostenv import MODULE, PY, ROOT

SCRIPT = r"""
import os, sys, tempfile, threading, time
from tests.p11calls import SO  # run with cwd = the repository root
so = SO(sys.argv[1])
assert so("C_Initialize", None) == 0
d = os.environ["SLOW_MODULES"]  # on the host's import path (PYTHONPATH): its slow modules
ENTERED = threading.Event()
hung = 0
for i in range(5):
    name = f"slow_import_{i}"
    with open(os.path.join(d, name + ".py"), "w") as fh:
        fh.write("import sys, time\nsys.modules['__main__'].ENTERED.set()\ntime.sleep(0.4)\nVALUE = 1\n")
    ENTERED.clear()
    t = threading.Thread(target=__import__, args=(name,))
    t.start()
    assert ENTERED.wait(30)  # the thread is inside the import now, holding its module lock
    pid = os.fork()
    if pid == 0:
        __import__(name)  # hangs on the inherited module lock if fork did not wait
        os._exit(0)
    end = time.monotonic() + 10
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() > end:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            hung += 1
            break
        time.sleep(0.02)
    t.join()
so("C_Finalize", None)
print("hung", hung)
"""


def test_fork_while_another_thread_imports_does_not_hang_the_child(hosts_hsm, tmp_path):
    env = dict(hosts_hsm["env"], SLOW_MODULES=str(tmp_path), PYTHONPATH=str(tmp_path))
    out = subprocess.run([PY, "-c", SCRIPT, MODULE], capture_output=True, text=True, timeout=120,
                         env=env, cwd=ROOT)
    assert out.stdout.strip().endswith("hung 0"), out.stdout + out.stderr
