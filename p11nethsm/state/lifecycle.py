"""The module lifecycle's machine (chart, states and meaning: p11nethsm.state.lifecycle_chart).

`Lifecycle.initialized` is the current state's value: the dispatcher's "may this call run?"
(one compare per call). It is not the shim's C `ready` flag ("the interpreter is up in this
pid"). The table below is `LifecycleChart` compiled, written out because C_Initialize must not
import python-statemachine (~100 ms with asyncio); tests/core/test_machine_tables.py checks that
both are the same.
"""

from __future__ import annotations

import threading

from p11nethsm.ck.errors import CryptokiAlreadyInitialized, CryptokiNotInitialized
from p11nethsm.state.base import TRANSITIONS, Compiled, StateId, TableMachine

__all__ = ["Lifecycle", "COMPILED"]

_STATES = {"uninitialized": False, "initialized": True, "finalizing": False, "forked": False}
S = {name: StateId(name, value) for name, value in _STATES.items()}
_ALREADY = (CryptokiAlreadyInitialized, "the module is already initialized in this process")
_NOT = (CryptokiNotInitialized, "the module is not initialized")

COMPILED = Compiled(
    initial=S["uninitialized"],
    table={
        ("uninitialized", "initialize"): S["initialized"],
        ("forked", "initialize"): S["initialized"],
        ("initialized", "finalize"): S["finalizing"],
        ("finalizing", "finalized"): S["uninitialized"],
        **{(state, "fork"): S["forked"] for state in _STATES},
    },
    refusals={
        ("initialized", "initialize"): _ALREADY,
        ("finalizing", "initialize"): _ALREADY,
        ("uninitialized", "finalize"): _NOT,
        ("forked", "finalize"): _NOT,
    },
    states=S,
    events=frozenset(("initialize", "finalize", "finalized", "fork")),
)
INITIALIZED = S["initialized"]


class Lifecycle(TableMachine):
    """The module's lifecycle; `lock` serializes C_Initialize and C_Finalize (whole flows)."""

    compiled = COMPILED
    __slots__ = ("lock",)

    def __init__(self, name: str = "module"):
        super().__init__(name)
        self.lock = threading.RLock()

    @property
    def initialized(self) -> bool:
        return self.state_id.value

    def forked(self) -> None:
        """In a fork child's hook: a parent's thread may have held the lock at fork(), and the
        logger's handler locks are still held until its own hook runs (so: not logged)."""
        self.lock = threading.RLock()
        TRANSITIONS.quiet = True
        try:
            self.send("fork")
        finally:
            TRANSITIONS.quiet = False
