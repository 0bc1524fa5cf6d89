"""Host programs loading the built module against one in-process emulator (p256key, rsakey)."""

import os

import pytest

from hostenv import LABEL, need, slot_yaml, write_config


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
