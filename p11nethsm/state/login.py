"""Login state of one token (slot), shared by every session of the application (PKCS#11 §6.7:
"the login state is per token, not per session").

    public --login_user--> user        C_Login(CKU_USER) verified against the NetHSM
    public --login_so----> so          C_Login(CKU_SO); refused while a read-only session exists
    user|so --logout-----> public      C_Logout
    user|so --reset------> public      last session of the token closed, C_Finalize

Illegal events fail loudly with the spec's CKR, raised by validators (state unchanged):
  user --login_user--> USER_ALREADY_LOGGED_IN      so --login_so--> USER_ALREADY_LOGGED_IN
  so --login_user--> USER_ANOTHER_ALREADY_LOGGED_IN user --login_so--> USER_ANOTHER_ALREADY_LOGGED_IN
  public --login_so--> SESSION_READ_ONLY_EXISTS when a read-only session is open
  public --logout--> USER_NOT_LOGGED_IN
Anything else not in the chart raises TransitionNotAllowed.

Network I/O (the PIN check) happens between `precheck()` and `login()`, so a failed check never
moves the machine. Every transition is logged with the slot and the session that caused it.
"""

from __future__ import annotations

import threading

from p11nethsm.log import logger

from p11nethsm.ck.errors import (
    SessionReadOnlyExists,
    UserAlreadyLoggedIn,
    UserAnotherAlreadyLoggedIn,
    UserNotLoggedIn,
)
from p11nethsm.values import Role
from p11nethsm.state.base import Machine, State

__all__ = ["Role", "LoginChart", "TokenLogin"]


def _already_logged_in():
    raise UserAlreadyLoggedIn("this user type is already logged in to the token")


def _another_logged_in():
    raise UserAnotherAlreadyLoggedIn("another user type is logged in to the token; C_Logout first")


def _no_ro_sessions(ro_sessions: int = 0):
    if ro_sessions:
        raise SessionReadOnlyExists(f"{ro_sessions} read-only session(s) open; the SO needs R/W sessions only")


def _not_logged_in():
    raise UserNotLoggedIn("no user is logged in to the token")


# (state, event) -> validator: the same checks the chart runs, for precheck() before network I/O.
_CHECKS = {
    ("user", "login_user"): _already_logged_in,
    ("so", "login_user"): _another_logged_in,
    ("public", "login_so"): _no_ro_sessions,
    ("so", "login_so"): _already_logged_in,
    ("user", "login_so"): _another_logged_in,
    ("public", "logout"): _not_logged_in,
}


class LoginChart(Machine):
    public = State(initial=True)
    user = State()
    so = State()

    login_user = (
        public.to(user)
        | user.to.itself(validators=_already_logged_in)
        | so.to.itself(validators=_another_logged_in)
    )
    login_so = (
        public.to(so, validators=_no_ro_sessions)
        | so.to.itself(validators=_already_logged_in)
        | user.to.itself(validators=_another_logged_in)
    )
    logout = user.to(public) | so.to(public) | public.to.itself(validators=_not_logged_in)
    reset = user.to(public) | so.to(public)


class LoginTransitionLog:
    """Listener: every login transition with slot (machine name) and session handle."""

    def __init__(self, name: str):
        self.name = name

    def after_transition(self, event, source, target, session=None):
        logger.debug("{}: {} --{}--> {} (session {})", self.name, source.id, event, target.id, session)


_EVENT = {Role.OPERATOR: "login_user", Role.ADMINISTRATOR: "login_so"}
_ROLE_OF_STATE = {"public": None, "user": Role.OPERATOR, "so": Role.ADMINISTRATOR}


class TokenLogin:
    """Login state + the PINs given to C_Login, per slot.

    `role` is a plain attribute for the hot paths (C_GetSessionInfo); it mirrors the machine.
    `lock` serializes whole login/logout flows (check, network I/O, transition).
    """

    def __init__(self, name: str):
        self.name = name
        self.machine = LoginChart(name, listeners=[LoginTransitionLog(name)])
        self.lock = threading.RLock()
        self.role: Role | None = None
        self._pins: dict[Role, str] = {}

    @property
    def state_id(self) -> str:
        return self.machine.state_id

    def pin(self, role: Role) -> str | None:
        return self._pins.get(role)

    def precheck(self, role: Role, *, ro_sessions: int = 0) -> None:
        """Raise what login(role) would raise, without changing anything."""
        check = _CHECKS.get((self.machine.state_id, _EVENT[role]))
        if check is _no_ro_sessions:
            check(ro_sessions)
        elif check is not None:
            check()

    def login(self, role: Role, pin: str, *, session: int, ro_sessions: int = 0) -> None:
        """Record a verified login (the PIN was checked against the NetHSM before)."""
        with self.lock:
            self.machine.fire(_EVENT[role], session=session, ro_sessions=ro_sessions)
            self._pins[role] = pin
            self.role = _ROLE_OF_STATE[self.machine.state_id]

    def logout(self, *, session: int) -> None:
        with self.lock:
            self.machine.fire("logout", session=session)
            self._pins.clear()
            self.role = None

    def reset(self, *, session: int | None = None) -> None:
        """Back to public (last session closed, finalize); no error when already public."""
        with self.lock:
            if self.machine.state_id != "public":
                self.machine.fire("reset", session=session)
            self._pins.clear()
            self.role = None

    def replace_pin(self, role: Role, pin: str) -> None:
        """After C_SetPIN by the logged-in user: keep using the new passphrase."""
        with self.lock:
            if self.role is role:
                self._pins[role] = pin
