"""A Python host (host mode) that forks under load: py_fork_host.py MODULE NFORKS.

8 threads make their first calls through the .so (ctypes) and keep signing while the main thread
forks NFORKS children with os.fork at random intervals of 7.5-22.5 ms; each child must get
CKR_CRYPTOKI_NOT_INITIALIZED, then C_Initialize, log in, sign and finalize within 60 s.
"""
import os, sys, threading, time, random, signal
from tests.security.sodriver import SO  # run as `python -m tests.guest.py_fork_host` from the root
from p11nethsm.ck.constants import CKM
so = SO(sys.argv[1])
nforks = int(sys.argv[2])
so.ok("C_Initialize", None)
stop = False
fails = []
def work():
    while not stop:
        try:
            s = so.open(0)
            so.login(s, 1, b"opPassphrase")
            k = so.key(s, b"p256key")
            assert len(so.sign(s, k, CKM.ECDSA, b"\x11" * 32)) == 64
            so("C_CloseSession", s)
        except Exception as e:
            fails.append(repr(e))
ts = [threading.Thread(target=work) for _ in range(8)]
for t in ts: t.start()
kids = []
for i in range(nforks):
    time.sleep(random.uniform(0.0075, 0.0225))
    pid = os.fork()
    if pid == 0:
        signal.alarm(60)
        try:
            assert so("C_GetInfo", None) == 0x190
            so.ok("C_Initialize", None)
            s = so.open(0); so.login(s, 1, b"opPassphrase")
            k = so.key(s, b"p256key")
            assert len(so.sign(s, k, CKM.ECDSA, b"\x11" * 32)) == 64
            so.ok("C_Finalize", None)
            os._exit(0)
        except BaseException as e:
            print("child", os.getpid(), repr(e), file=sys.stderr, flush=True)
            os._exit(1)
    kids.append(pid)
ok = hung = bad = 0
for pid in kids:
    _, st = os.waitpid(pid, 0)
    if os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0: ok += 1
    elif os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGALRM: hung += 1
    else: bad += 1
stop = True
for t in ts: t.join()
so.ok("C_Finalize", None)
print(f"RESULT forks={nforks} ok={ok} hung={hung} failed={bad} thread_failures={len(fails)}", fails[:3])
