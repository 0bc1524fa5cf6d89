"""Lifecycle of one cryptographic operation slot of a session (find/sign/verify/...).

The chart (python-statemachine) is the one definition; `OperationMachine` runs its compiled table
(p11nethsm.state.base), because a C_Sign takes two transitions and the library costs ~70 us per
transition. The CKR preconditions are in the chart, as refusals:

    idle --begin--> active            C_*Init (active|updating: OPERATION_ACTIVE)
    active --update--> updating       C_*Update (multi-part)
    updating --update--> updating
    active|updating --finish--> idle  C_*Final, single-shot C_Sign/C_Encrypt..., C_FindObjectsFinal
    any but closed --abort--> idle    an error that terminates the operation, C_*Init(NULL)
    any --close--> closed             the session was closed or the module finalized
    active --single--> active         a single-shot call may run (updating: OPERATION_ACTIVE)
    active|updating --claim--> same   a multi-part step or Final may run
    idle: update, finish, single, claim -> OPERATION_NOT_INITIALIZED
    closed: every event but abort/close -> SESSION_CLOSED

Single-shot calls (C_Sign, C_Encrypt, C_Decrypt, C_Digest, C_Verify) after an update are refused
with CKR_OPERATION_ACTIVE and the operation stays as it was (spec 3.0 §5.13: "C_Sign cannot be
used to terminate a multi-part operation"; kryoptic answers the same way). `single` and `claim`
are only checked (`TableMachine.check`), never sent: they do not move the machine.
"""

from __future__ import annotations

import threading
from typing import Any

from p11nethsm.ck.errors import CKRError, OperationActive, OperationNotInitialized, SessionClosed
from p11nethsm.state.base import TableMachine, chart, refuse
from p11nethsm.values import OpKind

__all__ = ["OperationChart", "OperationMachine", "Operation", "OpKind"]

_running = refuse(OperationActive, "an operation of this kind is already active")
_multipart = refuse(OperationActive, "the operation is multi-part; finish it with the Final call")
_none = refuse(OperationNotInitialized, "no operation of this kind is active")
_closed = refuse(SessionClosed, "the session was closed")


@chart
def OperationChart(Chart, State):
    class OperationChart(Chart):
        """The operation lifecycle (documentation, validation and the source of the fast table)."""

        idle = State(initial=True)
        active = State()
        updating = State()
        closed = State()

        begin = (idle.to(active) | active.to.itself(validators=_running)
                 | updating.to.itself(validators=_running) | closed.to.itself(validators=_closed))
        update = (active.to(updating) | updating.to(updating) | idle.to.itself(validators=_none)
                  | closed.to.itself(validators=_closed))
        finish = (active.to(idle) | updating.to(idle) | idle.to.itself(validators=_none)
                  | closed.to.itself(validators=_closed))
        abort = active.to(idle) | updating.to(idle) | idle.to.itself(internal=True) | closed.to.itself(internal=True)
        close = idle.to(closed) | active.to(closed) | updating.to(closed) | closed.to.itself(internal=True)
        single = (active.to.itself(internal=True) | updating.to.itself(validators=_multipart)
                  | idle.to.itself(validators=_none) | closed.to.itself(validators=_closed))
        claim = (active.to.itself(internal=True) | updating.to.itself(internal=True)
                 | idle.to.itself(validators=_none) | closed.to.itself(validators=_closed))
    return OperationChart


class OperationMachine(TableMachine):
    chart = OperationChart
    __slots__ = ()


_ANY = object()  # finish()/abort() without naming the context: whatever runs


class Operation:
    """One operation slot (one kind) of one session.

    Applications should serialize the calls on a session, but some share one session between
    threads. So a call *claims* the running operation (`single`, `claim`, `update_mark`) and gives
    it back when it ends (`finish`, `abort`) or keeps it running (`release`: size query,
    CKR_BUFFER_TOO_SMALL, a multi-part step). While one call holds it, another thread's call on
    the same operation gets CKR_OPERATION_ACTIVE at once (no waiting behind a network call), and
    a call whose operation was ended under it (session closed, C_Finalize, C_*Init with a NULL
    mechanism) gets CKR_SESSION_CLOSED or CKR_OPERATION_NOT_INITIALIZED, never a broken machine.
    """

    __slots__ = ("kind", "machine", "_context", "_lock", "_busy")

    def __init__(self, kind: OpKind, name: str):
        self.kind = kind
        self.machine = OperationMachine(name)
        self._context: Any = None
        self._lock = threading.Lock()
        self._busy = False     # a call is using the context

    @property
    def active(self) -> bool:
        return self.machine.state_id in _RUNNING

    def require_idle(self) -> None:
        """What C_*Init would get (OperationActive, SessionClosed), checked before its work."""
        self.machine.check("begin")

    def begin(self, context: Any) -> None:
        """C_*Init: OperationActive if an operation of this kind is running."""
        with self._lock:
            self.machine.send("begin")
            self._context = context

    def _gone(self) -> CKRError:
        """The error of a call whose operation was ended (or replaced) under it."""
        return self.machine.refusal("claim") or OperationNotInitialized(f"no {self.kind.value} operation is active")

    @property
    def context(self) -> Any:
        """The running operation's context (not claimed); OperationNotInitialized if none."""
        with self._lock:
            self.machine.check("claim")
            return self._context

    def claim(self, *, single: bool = False, update: bool = False) -> Any:
        """The running operation's context, held by this call until finish/abort/release.

        OperationNotInitialized when none runs; OperationActive when another call holds it, or for
        a single-shot call (`single`) after a multi-part step. `update` records a multi-part step."""
        with self._lock:
            machine = self.machine
            machine.check("single" if single else "claim")
            if self._busy:
                raise OperationActive(f"another call on this session is using its {self.kind.value} operation")
            if update:
                machine.send("update")
            self._busy = True
            return self._context

    def single(self) -> Any:
        """Single-shot C_Sign/C_Encrypt/...: the claimed context, or OperationActive after an update."""
        return self.claim(single=True)

    def update_mark(self) -> Any:
        """C_*Update: record a multi-part step; returns the claimed context."""
        return self.claim(update=True)

    def release(self, ctx: Any) -> None:
        """The call holding `ctx` returns and the operation stays active."""
        with self._lock:
            if self._context is ctx:
                self._busy = False

    def finish(self, ctx: Any = _ANY) -> None:
        """The operation ended (successfully or with a terminating error). With `ctx`: only that
        operation; if it was ended under the call, SessionClosed / OperationNotInitialized."""
        with self._lock:
            if ctx is not _ANY and self._context is not ctx:
                raise self._gone()
            self.machine.send("finish")
            self._context = None
            self._busy = False

    def abort(self, ctx: Any = _ANY, *, closed: bool = False) -> None:
        """End the operation if one is running (no error when idle). With `ctx`: only if that
        operation still runs. `closed`: the session is gone; calls still holding it learn so."""
        with self._lock:
            if closed:
                self.machine.send("close")
            elif ctx is not _ANY and self._context is not ctx:
                return
            else:
                self.machine.send("abort")
            ctx, self._context = self._context, None
            self._busy = False
        close = getattr(ctx, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a context's cleanup must not break the session
                pass


_RUNNING = frozenset(("active", "updating"))
