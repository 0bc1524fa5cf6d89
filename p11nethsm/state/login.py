"""Login state of one token (slot), shared by every session of the application (PKCS#11 §6.7:
"the login state is per token, not per session").

    public --login_user--> user        C_Login(CKU_USER) verified against the NetHSM
    public --login_so----> so          C_Login(CKU_SO) with no read-only session open
    user|so --logout-----> public      C_Logout
    user|so --reset------> public      last session of the token closed, C_Finalize
    public --reset-------> public      (nothing to undo)

Refused events (self-transitions whose validator names the spec's CKR; state unchanged):
  user --login_user--> USER_ALREADY_LOGGED_IN      so --login_so--> USER_ALREADY_LOGGED_IN
  so --login_user--> USER_ANOTHER_ALREADY_LOGGED_IN user --login_so--> USER_ANOTHER_ALREADY_LOGGED_IN
  public --login_so_ro--> SESSION_READ_ONLY_EXISTS (C_Login(CKU_SO) while a read-only session is open)
  public --logout--> USER_NOT_LOGGED_IN

The chart runs as its compiled table (p11nethsm.state.base); `precheck()` asks the same table.
Network I/O (the PIN check) happens between `precheck()` and `login()`, so a failed check never
moves the machine. `role` is the current state's value: read-only, nothing to keep in step.
"""

from __future__ import annotations

import threading

from p11nethsm.ck.errors import (
    SessionReadOnlyExists,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
    UserNotLoggedIn,
)
from p11nethsm.state.base import TableMachine, chart, refuse
from p11nethsm.values import Role

__all__ = ["Role", "LoginChart", "LoginMachine", "TokenLogin"]

_already = refuse(UserAlreadyLoggedIn, "this user type is already logged in to the token")
_another = refuse(UserAnotherAlreadyLoggedIn, "another user type is logged in to the token; C_Logout first")
_ro_open = refuse(SessionReadOnlyExists, "a read-only session is open; the SO needs R/W sessions only")
_not_in = refuse(UserNotLoggedIn, "no user is logged in to the token")


@chart
def LoginChart(Chart, State):
    class LoginChart(Chart):
        public = State(initial=True)  # value None: nobody logged in
        user = State(value=Role.OPERATOR)
        so = State(value=Role.ADMINISTRATOR)

        login_user = public.to(user) | user.to.itself(validators=_already) | so.to.itself(validators=_another)
        login_so = public.to(so) | so.to.itself(validators=_already) | user.to.itself(validators=_another)
        login_so_ro = (public.to.itself(validators=_ro_open) | so.to.itself(validators=_already)
                       | user.to.itself(validators=_another))
        logout = user.to(public) | so.to(public) | public.to.itself(validators=_not_in)
        reset = user.to(public) | so.to(public) | public.to.itself(internal=True)
    return LoginChart


class LoginMachine(TableMachine):
    chart = LoginChart
    __slots__ = ()


def _event(role: Role, ro_sessions: int) -> str:
    if role is Role.OPERATOR:
        return "login_user"
    return "login_so_ro" if ro_sessions else "login_so"


class TokenLogin:
    """Login state + the PINs given to C_Login, per slot.

    `lock` serializes whole login/logout flows (check, network I/O, transition).
    """

    __slots__ = ("name", "machine", "lock", "_pins")

    @property
    def role(self) -> Role | None:
        """The logged-in Role (None when public): the current state's value. Per-call paths
        read the chain `login.machine.state_id.value` inline (no call)."""
        return self.machine.state_id.value

    def __init__(self, name: str):
        self.name = name
        self.machine = LoginMachine(name)
        self.lock = threading.RLock()
        self._pins: dict[Role, str] = {}

    @property
    def state_id(self) -> str:
        return self.machine.state_id

    def pin(self, role: Role) -> str | None:
        return self._pins.get(role)

    def precheck(self, role: Role, *, ro_sessions: int = 0) -> None:
        """Raise what login(role) would raise, without changing anything."""
        self.machine.check(_event(role, ro_sessions))

    def login(self, role: Role, pin: str, *, session: int, ro_sessions: int = 0) -> None:
        """Record a verified login (the PIN was checked against the NetHSM before)."""
        with self.lock:
            self.machine.send(_event(role, ro_sessions), f"session {session}")
            self._pins[role] = pin

    def logout(self, *, session: int) -> None:
        with self.lock:
            self.machine.send("logout", f"session {session}")
            self._pins.clear()

    def reset(self, *, session: int | None = None) -> None:
        """Back to public (last session closed, finalize); no error when already public."""
        with self.lock:
            self.machine.send("reset", None if session is None else f"session {session}")
            self._pins.clear()

    def replace_pin(self, role: Role, pin: str) -> None:
        """After C_SetPIN by the logged-in user: keep using the new passphrase."""
        with self.lock:
            if self.role is role:
                self._pins[role] = pin
