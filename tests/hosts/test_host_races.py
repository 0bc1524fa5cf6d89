"""Hostile call patterns from a C host through the .so (issue 10, defect 7): one session shared by
64 threads signing at once, and C_Finalize racing with calls on other threads. Only the return
values the spec allows at each call, never CKR_GENERAL_ERROR, and nothing on the host's stderr."""

from __future__ import annotations

import os
import subprocess

import pytest

from hostenv import need
from p11nethsm.ck.functions import FUNCTIONS
from hostenv import MODULE

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def race_host(tmp_path_factory):
    need("gcc")
    out = str(tmp_path_factory.mktemp("race") / "race_host")
    defs = [f"-DIDX_{f.name}={i}" for i, f in enumerate(FUNCTIONS)]
    subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", "-Werror", *defs, "-o", out,
                    os.path.join(HERE, "race_host.c"), "-pthread", "-ldl"], check=True)
    return out


def run(race_host, hosts_hsm, *args, timeout=240):
    out = subprocess.run([race_host, args[0], MODULE, "0", "opPassphrase", "p256key", *map(str, args[1:])],
                         env=hosts_hsm["env"], capture_output=True, text=True, timeout=timeout)
    print(out.stdout)
    return out


def test_64_threads_sign_on_one_shared_session(race_host, hosts_hsm):
    out = run(race_host, hosts_hsm, "share", 64, 20)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("ok"), out.stdout + out.stderr
    assert out.stderr == ""
    # the race really happened: some threads found the operation taken by another
    assert "rv C_SignInit 0x90 " in out.stdout and "rv C_Sign 0x0 " in out.stdout, out.stdout


def test_finalize_while_other_threads_call(race_host, hosts_hsm):
    out = run(race_host, hosts_hsm, "finalize", 8, 6)
    assert out.returncode == 0 and out.stdout.rstrip().endswith("ok"), out.stdout + out.stderr
    assert out.stderr == "", out.stderr
    # calls ran before and after each C_Finalize
    assert "rv C_Sign 0x0 " in out.stdout and "rv C_OpenSession 0x190 " in out.stdout, out.stdout
