"""Lifecycle of the module in this process (PKCS#11 §5.4: C_Initialize, C_Finalize; fork).

    uninitialized --initialize--> initialized    C_Initialize
    forked --------initialize--> initialized     C_Initialize in a forked child
    initialized --finalize--> finalizing         C_Finalize begins: new calls get NOT_INITIALIZED
    finalizing --finalized--> uninitialized      sessions and slots closed
    any --fork--> forked                         os.fork() child: what it inherited is dropped
Refusals (state unchanged):
    initialized|finalizing --initialize--> CRYPTOKI_ALREADY_INITIALIZED
    uninitialized|forked --finalize--> CRYPTOKI_NOT_INITIALIZED

`initialized` is the current state's value: the dispatcher's "may this call run?" (one compare
per call). It is not the shim's C `ready` flag, which means "the interpreter is up in this pid"
(docs/state-machines.md). The chart is `LifecycleChart` (p11nethsm.state.lifecycle_chart); the
table below is its compiled form, written out because C_Initialize must not import
python-statemachine (~100 ms with asyncio); tests/core/test_machines.py checks that both agree.
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
