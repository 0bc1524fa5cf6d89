"""Lifecycle of the module in this process (PKCS#11 §5.4: C_Initialize, C_Finalize; fork).

    uninitialized --initialize--> initialized    C_Initialize
    forked --------initialize--> initialized     C_Initialize in a forked child
    initialized --finalize--> finalizing         C_Finalize begins: new calls get NOT_INITIALIZED
    finalizing --finalized--> uninitialized      sessions and slots closed
    any --fork--> forked                         os.fork() child: what it inherited is dropped
Refusals (state unchanged):
    initialized|finalizing --initialize--> CRYPTOKI_ALREADY_INITIALIZED
    uninitialized|forked --finalize--> CRYPTOKI_NOT_INITIALIZED

This chart is the definition; `p11nethsm.state.lifecycle.COMPILED` is its table written out
(C_Initialize must not import python-statemachine, ~100 ms with asyncio), and
tests/core/test_machine_tables.py checks that both are the same. `Lifecycle.initialized` (the
`views` below) is what the dispatcher asks before every call; the C shim's `ready` flag is a
different fact: "the interpreter is up in this process id".
"""

from __future__ import annotations

from p11nethsm.ck.errors import CryptokiAlreadyInitialized, CryptokiNotInitialized
from p11nethsm.state.base import chart, refuse

_already = refuse(CryptokiAlreadyInitialized, "the module is already initialized in this process")
_not = refuse(CryptokiNotInitialized, "the module is not initialized")


@chart
def LifecycleChart(Chart, State):
    class LifecycleChart(Chart):
        uninitialized = State(initial=True)
        initialized = State()
        finalizing = State()
        forked = State()
        views = {"uninitialized": False, "initialized": True, "finalizing": False, "forked": False}

        initialize = (uninitialized.to(initialized) | forked.to(initialized)
                      | initialized.to.itself(validators=_already) | finalizing.to.itself(validators=_already))
        finalize = (initialized.to(finalizing) | uninitialized.to.itself(validators=_not)
                    | forked.to.itself(validators=_not))
        finalized = finalizing.to(uninitialized)
        fork = (uninitialized.to(forked) | initialized.to(forked) | finalizing.to(forked)
                | forked.to.itself())
    return LifecycleChart
