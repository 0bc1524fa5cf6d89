"""A PKCS#11 session: its slot, R/W flag, state (§6.7) and operation slots."""

from __future__ import annotations

from p11nethsm.ck.constants import CKS
from p11nethsm.ck.errors import SessionReadOnly
from p11nethsm.state.operation import Operation
from p11nethsm.values import OpKind, Role

__all__ = ["Session"]


class Session:
    __slots__ = ("handle", "slot", "rw", "flags", "_ops", "__weakref__")

    def __init__(self, handle: int, slot: Slot, rw: bool, flags: int):
        self.handle = handle
        self.slot = slot
        self.rw = rw
        self.flags = flags
        self._ops: dict[OpKind, Operation] = {}

    @property
    def state(self) -> CKS:
        """CK_STATE per spec §6.7, from the token's login state and the session's R/W flag.

        Not logged in but the default user's password is configured: the session is already
        usable as that user, so it reports USER functions (operator) or, for an
        administrator-only slot, SO functions on R/W sessions (as the vendor module; OpenDNSSEC
        checks for it)."""
        slot = self.slot
        login = slot._login
        role = login.machine.state_id.value if login is not None else None  # login.role, inline
        if role is None and slot._default_pw:
            role = slot._default_role
            if role is Role.ADMINISTRATOR and not self.rw:
                role = None
        if role is Role.OPERATOR:
            return CKS.RW_USER_FUNCTIONS if self.rw else CKS.RO_USER_FUNCTIONS
        if role is Role.ADMINISTRATOR:
            return CKS.RW_SO_FUNCTIONS
        return CKS.RW_PUBLIC_SESSION if self.rw else CKS.RO_PUBLIC_SESSION

    def can_see_private(self) -> bool:
        """Logged in, or the default user's password is configured."""
        login = self.slot._login
        return (login is not None and login.machine.state_id.value is not None) or self.slot._default_pw

    def require_rw(self) -> None:
        if not self.rw:
            raise SessionReadOnly(f"session {self.handle} is read-only")

    def op(self, kind: OpKind) -> Operation:
        op = self._ops.get(kind)
        if op is None:
            # setdefault: two threads sharing the session get the same operation
            op = self._ops.setdefault(kind, Operation(kind, f"op[{kind.value} slot {self.slot.slot_id} session {self.handle}]"))
        return op

    def abort_all(self) -> None:
        """The session is closed: end its operations; calls still running on it get SESSION_CLOSED."""
        for op in list(self._ops.values()):
            op.abort(closed=True)

    def __repr__(self) -> str:
        return f"<Session {self.handle} slot={self.slot.slot_id} {'RW' if self.rw else 'RO'}>"
