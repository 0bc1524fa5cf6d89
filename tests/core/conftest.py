"""Core fixtures: a module initialized on a fake NetHSM, driven through dispatch.entry."""

from __future__ import annotations

import pytest

from p11nethsm import dispatch, library, logging_setup
from p11nethsm.ck.constants import CKR

from core_fakes import BOTH_USERS_NO_PASSWORDS, CLUSTERS, Caller, FakeNetHSM



@pytest.fixture(autouse=True)
def _clean_module(monkeypatch):
    """Every test starts uninitialized, with the fake api and no log sinks."""
    CLUSTERS.clear()
    monkeypatch.setattr(library, "api_factory", FakeNetHSM)
    monkeypatch.delenv("P11NETHSM_CONFIG_FILE", raising=False)
    yield
    if dispatch.is_ready():
        dispatch.entry(1, 0)  # C_Finalize
    logging_setup.reset()


@pytest.fixture
def call():
    return Caller(dispatch.entry)


@pytest.fixture
def init(call, write_config, monkeypatch):
    """init(yaml=BOTH_USERS_NO_PASSWORDS) -> Caller, after a successful C_Initialize."""

    def do(text: str = BOTH_USERS_NO_PASSWORDS, name: str = "p11nethsm.conf"):
        monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(text, name))
        rv = call("C_Initialize", None)
        assert rv == CKR.OK, CKR(rv).name
        return call

    return do
