"""Lifecycle of one cryptographic operation slot of a session (find/sign/verify/...).

The chart (python-statemachine) is the one definition; `OperationMachine` is its table-compiled
runner (p11nethsm.state.base.TableMachine), because a C_Sign takes two transitions and the
library costs ~70 us per transition.

    idle --begin--> active            C_*Init
    active --update--> updating       C_*Update (multi-part)
    updating --update--> updating
    active|updating --finish--> idle  C_*Final, single-shot C_Sign/C_Encrypt..., C_FindObjectsFinal
    active|updating --abort--> idle   an error that terminates the operation, session close

Single-shot calls (C_Sign, C_Encrypt, C_Decrypt, C_Digest, C_Verify) after an update are refused
with CKR_OPERATION_ACTIVE and the operation stays as it was (spec 3.0 §5.13: "C_Sign cannot be
used to terminate a multi-part operation"; kryoptic answers the same way).
"""

from __future__ import annotations

import threading
from typing import Any

from p11nethsm.ck.errors import CKRError, OperationActive, OperationNotInitialized, SessionClosed
from p11nethsm.values import OpKind
from p11nethsm.state.base import Machine, State, TableMachine

__all__ = ["OperationChart", "OperationMachine", "Operation", "OpKind"]


class OperationChart(Machine):
    """The operation lifecycle (documentation, validation and the source of the fast table)."""

    idle = State(initial=True)
    active = State()
    updating = State()

    begin = idle.to(active)
    update = active.to(updating) | updating.to(updating)
    finish = active.to(idle) | updating.to(idle)
    abort = active.to(idle) | updating.to(idle)


class OperationMachine(TableMachine):
    chart = OperationChart


_IDLE = "idle"
_UPDATING = "updating"
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

    __slots__ = ("kind", "machine", "_context", "_lock", "_busy", "_closed")

    def __init__(self, kind: OpKind, name: str):
        self.kind = kind
        self.machine = OperationMachine(name)
        self._context: Any = None
        self._lock = threading.Lock()
        self._busy = False     # a call is using the context
        self._closed = False   # the session was closed (or the module finalized)

    @property
    def active(self) -> bool:
        return self.machine.state_id != _IDLE

    def require_idle(self) -> None:
        """OperationActive if an operation of this kind is running (C_*Init checks first)."""
        if self.machine.state_id != _IDLE:
            raise OperationActive(f"a {self.kind.value} operation is already active")

    def begin(self, context: Any) -> None:
        """C_*Init: OperationActive if an operation of this kind is running."""
        with self._lock:
            if self._closed:
                raise SessionClosed("the session was closed")
            if self.machine.state_id != _IDLE:
                raise OperationActive(f"a {self.kind.value} operation is already active")
            self.machine.send("begin")
            self._context = context

    def _gone(self) -> CKRError:
        if self._closed:
            return SessionClosed("the session was closed during the call")
        return OperationNotInitialized(f"no {self.kind.value} operation is active")

    @property
    def context(self) -> Any:
        """The running operation's context (not claimed); OperationNotInitialized if none."""
        with self._lock:
            if self.machine.state_id == _IDLE:
                raise self._gone()
            return self._context

    def claim(self, *, single: bool = False, update: bool = False) -> Any:
        """The running operation's context, held by this call until finish/abort/release.

        OperationNotInitialized when none runs; OperationActive when another call holds it, or for
        a single-shot call (`single`) after a multi-part step. `update` records a multi-part step."""
        with self._lock:
            state = self.machine.state_id
            if state == _IDLE:
                raise self._gone()
            if self._busy:
                raise OperationActive(f"another call on this session is using its {self.kind.value} operation")
            if single and state == _UPDATING:
                raise OperationActive(f"the {self.kind.value} operation is multi-part; finish it with the Final call")
            if update:
                self.machine.send("update")
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
            if self.machine.state_id == _IDLE or (ctx is not _ANY and self._context is not ctx):
                raise self._gone()
            self.machine.send("finish")
            self._context = None
            self._busy = False

    def abort(self, ctx: Any = _ANY, *, closed: bool = False) -> None:
        """End the operation if one is running (no error when idle). With `ctx`: only if that
        operation still runs. `closed`: the session is gone; calls still holding it learn so."""
        with self._lock:
            if closed:
                self._closed = True
            if ctx is not _ANY and self._context is not ctx:
                return
            if self.machine.state_id != _IDLE:
                self.machine.send("abort")
            ctx, self._context = self._context, None
            self._busy = False
        close = getattr(ctx, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a context's cleanup must not break the session
                pass
