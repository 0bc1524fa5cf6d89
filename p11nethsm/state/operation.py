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

from typing import Any

from p11nethsm.ck.errors import OperationActive, OperationNotInitialized
from p11nethsm.library import OpKind
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


class Operation:
    """One operation slot (one kind) of one session. Not shared between threads on purpose:
    PKCS#11 calls on one session are serialized by the application."""

    __slots__ = ("kind", "machine", "_context")

    def __init__(self, kind: OpKind, name: str):
        self.kind = kind
        self.machine = OperationMachine(name)
        self._context: Any = None

    @property
    def active(self) -> bool:
        return self.machine.state_id != _IDLE

    def begin(self, context: Any) -> None:
        """C_*Init: OperationActive if an operation of this kind is running."""
        if self.machine.state_id != _IDLE:
            raise OperationActive(f"a {self.kind.value} operation is already active")
        self.machine.send("begin")
        self._context = context

    @property
    def context(self) -> Any:
        """The running operation's context; OperationNotInitialized if none."""
        if self.machine.state_id == _IDLE:
            raise OperationNotInitialized(f"no {self.kind.value} operation is active")
        return self._context

    def update_mark(self) -> Any:
        """C_*Update: record a multi-part step; returns the context."""
        ctx = self.context
        self.machine.send("update")
        return ctx

    def single(self) -> Any:
        """Single-shot C_Sign/C_Encrypt/...: the context, or OperationActive after an update."""
        state = self.machine.state_id
        if state == _IDLE:
            raise OperationNotInitialized(f"no {self.kind.value} operation is active")
        if state == _UPDATING:
            raise OperationActive(f"the {self.kind.value} operation is multi-part; finish it with the Final call")
        return self._context

    def finish(self) -> None:
        """The operation ended (successfully or with a terminating error)."""
        self.machine.send("finish")
        self._context = None

    def abort(self) -> None:
        """End the operation if one is running (no error when idle)."""
        if self.machine.state_id != _IDLE:
            self.machine.send("abort")
        ctx, self._context = self._context, None
        close = getattr(ctx, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # a context's cleanup must not break the session
                pass
