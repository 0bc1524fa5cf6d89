"""Fixtures for the "good guest" tests: a C host compiled from guest_host.c, an emulator with an
EC key, and config files for both."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from guestenv import HERE, MODULE, slot_yaml, write_config

from p11nethsm.ck.functions import FUNCTIONS  # noqa: E402


@pytest.fixture(autouse=True)
def _need_module():
    if not os.path.exists(MODULE):
        pytest.skip(f"{MODULE} not built (make build)")


@pytest.fixture(scope="session")
def guest_host(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("guest") / "guest_host")
    defs = [f"-DIDX_{f.name}={i}" for i, f in enumerate(FUNCTIONS)]
    subprocess.run(["gcc", "-std=gnu11", "-O2", "-Wall", *defs, "-o", out, os.path.join(HERE, "guest_host.c"),
                    "-pthread", "-ldl"], check=True)
    return out


@pytest.fixture(scope="module")
def hsm():
    from nethsm_emulator.provision import STANDARD_KEYS
    from nethsm_emulator.testing import start_emulator

    with start_emulator(provisioned=True, keys={"p256key": STANDARD_KEYS["p256key"]}, throttle=False) as emu:
        yield emu


@pytest.fixture
def hsm_config(hsm, tmp_path):
    """(config path, log path) for one slot on the emulator, operator password in the config."""
    log = tmp_path / "module.log"
    conf = write_config(tmp_path / "p11nethsm.conf", [slot_yaml("Guest", hsm.url, hsm.fingerprint)],
                        log_file=log, level="Info")
    return conf, log

