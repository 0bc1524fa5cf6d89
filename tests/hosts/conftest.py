"""Host programs loading the built module against one in-process emulator (p256key, rsakey)."""

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "security"))

from secenv import MODULE, slot_yaml, write_config  # noqa: E402

LABEL = "HostsHSM"


def need(*tools):
    if not os.path.exists(MODULE):
        pytest.skip(f"{MODULE} not built (make build)")
    for t in tools:
        if shutil.which(t) is None:
            pytest.skip(f"{t} not installed")


@pytest.fixture(scope="session")
def hosts_hsm(tmp_path_factory):
    need()
    from nethsm_emulator.provision import STANDARD_KEYS
    from nethsm_emulator.testing import start_emulator

    d = tmp_path_factory.mktemp("hosts")
    keys = {k: STANDARD_KEYS[k] for k in ("p256key", "rsakey")}
    with start_emulator(provisioned=True, keys=keys, throttle=False) as hsm:
        c = hsm.client()
        pems = {}
        for k in keys:
            pems[k] = d / f"{k}.pub.pem"
            pems[k].write_bytes(c.request("GET", f"/keys/{k}/public.pem", hsm.operator).data)
        # login required (no configured operator password): the hosts really log in
        conf = write_config(d / "p11nethsm.conf", [slot_yaml(LABEL, hsm.url, hsm.fingerprint, passwords=False)],
                            log_file=d / "module.log", level="Debug")
        yield {"hsm": hsm, "conf": conf, "pems": pems, "dir": d,
               "env": dict(os.environ, P11NETHSM_CONFIG_FILE=conf)}
