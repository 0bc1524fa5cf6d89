"""Fixtures for the emulator's own tests. Every response seen by `Client` is
validated against the v4.0 OpenAPI spec (nethsm_emulator.validation)."""
from __future__ import annotations

import pytest

from emuclient import Client
from nethsm_emulator.provision import STANDARD_KEYS
from nethsm_emulator.testing import start_emulator


@pytest.fixture
def emu():
    """Unprovisioned emulator, one instance."""
    with start_emulator() as run:
        yield run


@pytest.fixture
def hsm():
    """Provisioned (admin + operator), no keys; throttle on."""
    with start_emulator(provisioned=True) as run:
        yield run


@pytest.fixture
def client(hsm):
    return Client(hsm.url, hsm.fingerprint)


@pytest.fixture(scope="session")
def std():
    """Provisioned with STANDARD_KEYS; shared by read-only tests (don't mutate keys)."""
    with start_emulator(provisioned=True, keys=STANDARD_KEYS) as run:
        yield run


@pytest.fixture
def sclient(std):
    return Client(std.url, std.fingerprint)

