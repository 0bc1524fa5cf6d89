"""The module lifecycle as a chart: the definition `p11nethsm.state.lifecycle.COMPILED` is checked
against (tests/core/test_machines.py) and rendered from (docs/state-machines.md). Not imported at
run time: python-statemachine stays out of C_Initialize."""

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
