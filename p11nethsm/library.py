"""The initialized module: slots, sessions, login, token presence.

`initialize()` builds a `Library` from the config (no network I/O); `get_library()` returns it or
raises CryptokiNotInitialized. Slot ids are 0..n-1 in config order; session handles count up from 1
for the life of the process (a handle is never reused after C_Finalize/C_Initialize).

The module's lifecycle (uninitialized / initialized / finalizing / forked) is the machine
`LIFECYCLE` (p11nethsm.state.lifecycle): the dispatcher and C_Initialize / C_Finalize ask it;
`_library` only holds the object.

Credentials (README, configuration reference: users): a slot has an operator and/or an administrator. With both
configured, the operator is used by default and the administrator only for calls that need it,
whatever user the application logged in as. A user's password comes from the config (plain or
`env:`), or from C_Login of the matching user type (CKU_USER = operator, CKU_SO = administrator).
While logged in, the PIN given to C_Login is used for that user, even if the config also has a
password (the config password is used again after C_Logout).
"""

from __future__ import annotations

import itertools
import threading

from p11nethsm.log import logger

from p11nethsm.ck.errors import (
    CryptokiNotInitialized,
    SessionHandleInvalid,
    SlotIdInvalid,
    UserNotLoggedIn,
)
from p11nethsm.config.model import Config, SlotConfig, UserConfig
from p11nethsm.state.lifecycle import INITIALIZED, Lifecycle
from p11nethsm.values import Role

# typing.TYPE_CHECKING without importing typing (start-up time); type checkers know the idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from p11nethsm.api.client import Credentials, NetHSM
    from p11nethsm.presence import Presence
    from p11nethsm.sessions import Session
    from p11nethsm.state.login import TokenLogin

__all__ = [
    "Library", "Slot", "get_library", "current", "initialize",
    "finalize", "drop_in_child",
]

LIFECYCLE = Lifecycle("module")
_library: Library | None = None  # the object; whether it may be used is LIFECYCLE's to say
_handles = itertools.count(1)  # process-wide: a handle from before C_Finalize stays invalid

# Builds a slot's api: (SlotConfig, threads=bool) -> NetHSM. None: p11nethsm.api.client.NetHSM.
# Tests put a fake NetHSM here.
api_factory = None


def get_library() -> Library:
    lib = _library
    if lib is None:
        raise CryptokiNotInitialized()
    return lib


def current() -> Library | None:
    return _library


class Wiring:
    """How a slot builds its HTTP client, credentials, object store, token presence, login and
    sessions. Filled in by p11nethsm.handlers.wiring, which the chapters that reach a slot
    import: C_Initialize imports neither the client (urllib3) nor the store (cryptography) nor
    the per-slot machinery (it keeps the start-up within its 25 MB budget, bench P3)."""

    api = None          # (SlotConfig, threads=bool) -> NetHSM
    credentials = None  # (username, password) -> Credentials
    store = None        # (Slot) -> ObjectStore
    presence = None     # (name, poll, explain) -> Presence
    explain = None      # (NetHSM, state) -> text: what to do about a non-Operational NetHSM
    login = None        # (name) -> TokenLogin
    session = None      # (handle, Slot, rw, flags) -> Session


WIRING = Wiring()


class Slot:
    def __init__(self, library: Library, slot_id: int, config: SlotConfig):
        self.library = library
        self.slot_id = slot_id
        self.config = config
        self.name = f"slot {slot_id} ({config.label})"
        self._lock = threading.Lock()
        self._api: NetHSM | None = None
        self._creds_cache: dict = {}  # (username, password) -> Credentials
        self._objects: Any = None
        self._token: Presence | None = None
        self._login: TokenLogin | None = None
        self.cache: dict[str, Any] = {}  # /info and /system/info answers (slot_token handlers)
        # config is frozen: precomputed for the per-call paths
        self._default_role = Role.OPERATOR if config.operator is not None else Role.ADMINISTRATOR
        default_user = config.operator if config.operator is not None else config.administrator
        self._default_pw = default_user is not None and default_user.has_password

    # -- lazily built collaborators (a machine's first build imports python-statemachine) -------
    def _built(self, attr: str, build, *, io: bool = False):
        """self.<attr>, built once under the slot lock (`io`: not after C_Finalize)."""
        with self._lock:
            value = getattr(self, attr)
            if value is None:
                if io and self.library.finalized.is_set():  # a call still running after C_Finalize
                    raise CryptokiNotInitialized("C_Finalize ran during the call")
                value = build()
                setattr(self, attr, value)
            return value

    @property
    def token(self) -> Presence:
        token = self._token
        if token is None:
            token = self._built("_token", lambda: WIRING.presence(
                f"token[{self.slot_id}]", self._health_state, self._explain_state))
        return token

    @property
    def login(self) -> TokenLogin:
        login = self._login
        if login is None:
            login = self._built("_login", lambda: WIRING.login(f"login[{self.slot_id}]"))
        return login

    @property
    def api(self) -> NetHSM:
        api = self._api
        if api is None:
            factory = api_factory or WIRING.api
            api = self._built("_api", lambda: factory(self.config, threads=self.library.threads_allowed), io=True)
        return api

    @property
    def objects(self):
        store = self._objects
        if store is None:
            store = self._built("_objects", lambda: WIRING.store(self), io=True)
        return store

    def _health_state(self) -> str:
        return self.api.health_state()

    def _explain_state(self, state: str) -> str:
        return WIRING.explain(self.api, state)

    def token_present(self, max_age: float = 1.0) -> bool:
        """Present iff the cluster answered Operational (cached for `max_age` seconds)."""
        return self.token.present(max_age)

    # -- users ----------------------------------------------------------------------------------
    def user(self, role: Role) -> UserConfig | None:
        return self.config.operator if role is Role.OPERATOR else self.config.administrator

    @property
    def default_role(self) -> Role:
        return self._default_role

    def password(self, role: Role) -> str | None:
        """The PIN from C_Login for `role`, else the configured password, else None."""
        pin = self.login.pin(role)
        if pin is not None:
            return pin
        user = self.user(role)
        if user is not None and user.has_password:
            return user.password
        return None

    def credentials(self, role: Role | None = None) -> Credentials:
        """Credentials for a call that needs `role` (None: any user; the operator preferred).

        Raises UserNotLoggedIn naming the user and where its PIN can come from.
        """
        if role is None:
            first = self.default_role
            other = Role.ADMINISTRATOR if first is Role.OPERATOR else Role.OPERATOR
            for candidate in (first, other):
                user = self.user(candidate)
                password = self.password(candidate) if user is not None else None
                if password:
                    return self._credentials(user.username, password)
            role = first
        user = self.user(role)
        if user is None:
            raise UserNotLoggedIn(
                f"{self.name}: this call needs the NetHSM {role.value}, which is not configured "
                f"(add '{role.value}:' with its username to the slot)"
            )
        password = self.password(role)
        if not password:
            login = "CKU_USER (user PIN)" if role is Role.OPERATOR else "CKU_SO (SO PIN)"
            raise UserNotLoggedIn(
                f"{self.name}: this call needs the {role.value} '{user.username}': configure its "
                f"password or C_Login as {login}"
            )
        return self._credentials(user.username, password)

    def _credentials(self, username: str, password: str):
        """One Credentials object per user and password (its encoded headers are built once, not
        per request); a PIN change or another user simply makes a new entry."""
        key = (username, password)
        creds = self._creds_cache.get(key)
        if creds is None:
            if len(self._creds_cache) >= 8:  # old PINs do not accumulate
                self._creds_cache = {}
            creds = self._creds_cache[key] = WIRING.credentials(username, password)
        return creds

    def default_password_configured(self) -> bool:
        return self._default_pw

    # -- sessions -------------------------------------------------------------------------------
    def sessions(self) -> list[Session]:
        return [s for s in list(self.library.sessions.values()) if s.slot is self]

    def close(self) -> None:
        """C_Finalize: close the api (joins its background threads) and the object store."""
        with self._lock:  # after library.finalized is set: no call builds them again
            things = (self._objects, self._api)
            self._objects = None
            self._api = None
        for thing in things:
            close = getattr(thing, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    logger.exception("{}: error while closing {}", self.name, type(thing).__name__)


def _drop_session_objects(slot, handle: int | None) -> None:
    """Session objects die with their session (None: all sessions of the slot)."""
    store = slot._objects
    if store is not None:
        store.drop_session(handle)


class Library:
    def __init__(self, config: Config, *, threads_allowed: bool):
        self.config = config
        self.threads_allowed = threads_allowed and not config.disable_threads
        self.slots: list[Slot] = [Slot(self, i, sc) for i, sc in enumerate(config.slots)]
        self.slots_by_id: dict[int, Slot] = {s.slot_id: s for s in self.slots}
        self.sessions: dict[int, Session] = {}
        self.lock = threading.RLock()
        self.finalized = threading.Event()

    def slot(self, slot_id: int) -> Slot:
        slot = self.slots_by_id.get(slot_id)
        if slot is None:
            raise SlotIdInvalid(f"no slot {slot_id} (slots: 0..{len(self.slots) - 1})")
        return slot

    def session(self, handle: int) -> Session:
        session = self.sessions.get(handle)
        if session is None:
            raise SessionHandleInvalid(f"no open session {handle}")
        return session

    def open_session(self, slot: Slot, *, rw: bool, flags: int) -> Session:
        with self.lock:
            session = WIRING.session(next(_handles), slot, rw, flags)
            self.sessions[session.handle] = session
        logger.debug("{}: session {} opened ({})", slot.name, session.handle, "RW" if rw else "RO")
        return session

    def close_session(self, handle: int) -> None:
        with self.lock:
            session = self.sessions.get(handle)
        if session is None:
            raise SessionHandleInvalid(f"no open session {handle}")
        # The login lock is taken first (the order C_OpenSession and C_Login use) and held until
        # the logout: no session can be opened and logged in between "last session" and the reset.
        with session.slot.login.lock:
            with self.lock:
                if self.sessions.pop(handle, None) is None:
                    raise SessionHandleInvalid(f"no open session {handle}")
                last = not any(s.slot is session.slot for s in self.sessions.values())
            if last:  # spec: closing the last session of a token logs the user out
                session.slot.login.reset(session=handle)
        session.abort_all()
        _drop_session_objects(session.slot, handle)
        logger.debug("{}: session {} closed", session.slot.name, handle)

    def close_all_sessions(self, slot: Slot) -> None:
        with slot.login.lock:  # same lock order as close_session
            with self.lock:
                handles = [h for h, s in self.sessions.items() if s.slot is slot]
                closed = [self.sessions.pop(h) for h in handles]
            slot.login.reset(session=None)
        for session in closed:
            session.abort_all()
        _drop_session_objects(slot, None)
        if closed:
            logger.debug("{}: closed all sessions {}", slot.name, handles)

    def finalize(self) -> None:
        self.finalized.set()
        with self.lock:
            closed = list(self.sessions.values())
            self.sessions.clear()
        for session in closed:
            session.abort_all()
        for slot in self.slots:
            if slot._login is not None:
                slot._login.reset()
            slot.close()


def initialize(config: Config, *, threads_allowed: bool) -> Library:
    """Install a new Library (C_Initialize holds LIFECYCLE.lock and checked `initialize`)."""
    global _library
    with LIFECYCLE.lock:
        lib = Library(config, threads_allowed=threads_allowed)
        LIFECYCLE.send("initialize")
        _library = lib
        return lib


def finalize() -> None:
    """C_Finalize: initialized -> finalizing (new calls are refused) -> uninitialized."""
    global _library
    with LIFECYCLE.lock:
        LIFECYCLE.send("finalize")
        lib, _library = _library, None
        try:
            if lib is not None:
                lib.finalize()
        finally:
            LIFECYCLE.send("finalized")


def initialized() -> bool:
    return LIFECYCLE.state_id is INITIALIZED


def drop_in_child() -> None:
    """fork child: forget everything (no close: the sockets are the parent's)."""
    global _library
    lib, _library = _library, None
    LIFECYCLE.forked()
    if lib is not None:
        for slot in lib.slots:
            drop = getattr(slot._api, "drop_after_fork", None)
            if drop is not None:
                try:
                    drop()
                except Exception:
                    pass
            slot._api = None
            slot._objects = None
        lib.sessions = {}
