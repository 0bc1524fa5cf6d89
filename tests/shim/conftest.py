"""Fixtures for the C-shim tests (helpers: shim_helpers.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

import shim_helpers as H
from shim_helpers import HERE, TABLE, _require_tools, build_shim, make_overlay


@pytest.fixture(scope="session")
def shim_dir(tmp_path_factory):
    _require_tools()
    d = str(tmp_path_factory.mktemp("shim"))
    H.CONFIG_FILE = os.path.join(d, "p11nethsm.conf")
    with open(H.CONFIG_FILE, "w") as f:
        f.write(H.CONFIG_YAML)
    return d


@pytest.fixture(scope="session")
def shim_so(shim_dir):
    """The shim, built with no baked-in venv (so discovery is really tested)."""
    return build_shim(os.path.join(shim_dir, "plain", "libnethsm_pkcs11.so"))


@pytest.fixture(scope="session")
def host_bin(shim_dir):
    out = os.path.join(shim_dir, "host")
    defs = [f"-DIDX_{f.name}={i}" for i, f in enumerate(TABLE.FUNCTIONS)]
    defs += [f"-DN_FUNCTIONS={len(TABLE.FUNCTIONS)}", f"-DN_FUNCTIONS_240={TABLE.N_V240}"]
    subprocess.run(
        ["gcc", "-std=gnu11", "-O2", "-g", "-Wall", *defs, "-o", out, os.path.join(HERE, "host.c"), "-pthread", "-ldl"],
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def overlay_venv(shim_dir, fake_venv):
    """Venv the shim runs against. Default: the live p11nethsm tree (real
    dispatcher). P11NETHSM_SHIM_TEST_DISPATCH=fake: the test dispatcher
    (tests/shim/fake_dispatch.py), to test the shim alone."""
    if os.environ.get("P11NETHSM_SHIM_TEST_DISPATCH", "real") == "fake":
        return fake_venv
    return make_overlay(os.path.join(shim_dir, "venv"))


@pytest.fixture(scope="session")
def fake_venv(shim_dir):
    """Overlay whose p11nethsm is a test package (misbehaving dispatcher)."""
    return make_overlay(os.path.join(shim_dir, "fakevenv"), with_repo=False)


