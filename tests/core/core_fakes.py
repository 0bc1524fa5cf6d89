"""A fake NetHSM api (the interface of p11nethsm.api.client.NetHSM the core uses) and a ctypes
caller for p11nethsm.dispatch.entry."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

from p11nethsm.api import errors as E
from p11nethsm.ck.functions import INDEX


BOTH_USERS_NO_PASSWORDS = """
slots:
  - label: LocalHSM
    description: Local HSM (fake)
    operator:
      username: operator
    administrator:
      username: admin
    instances:
      - url: https://127.0.0.1:1/api/v1
"""


@dataclass
class FakeCluster:
    """State shared by every api object of one slot label (survives C_Finalize)."""

    state: str = "Operational"
    users: dict = field(default_factory=lambda: {
        "operator": ("opPassphrase", "Operator"),
        "admin": ("Administrator", "Administrator"),
    })
    throttled: bool = False
    reachable: bool = True
    calls: list = field(default_factory=list)
    info: dict = field(default_factory=lambda: {"vendor": "Nitrokey GmbH", "product": "NetHSM"})
    device_id: str = "DEVICE0123456789XYZ"


CLUSTERS: dict[str, FakeCluster] = {}


def cluster(label: str) -> FakeCluster:
    return CLUSTERS.setdefault(label, FakeCluster())


class FakeNetHSM:
    def __init__(self, slot_config, *, threads: bool):
        self.slot = slot_config
        self.threads = threads
        self.c = cluster(slot_config.label)
        self.closed = False

    def _err(self, cls, path, method="GET"):
        return cls("fake", instance=self.slot.instances[0].url, method=method, path=path)

    def _check(self, path, method="GET", creds=None):
        self.c.calls.append((method, path, creds.username if creds else None))
        if not self.c.reachable:
            raise self._err(E.TransportError, path, method)
        if path not in ("/health/state", "/info") and self.c.state != "Operational":
            raise self._err(E.PreconditionFailed, path, method)
        if creds is not None:
            if self.c.throttled:
                raise self._err(E.TooManyRequests, path, method)
            user = self.c.users.get(creds.username)
            if user is None or user[0] != creds.password:
                raise self._err(E.Unauthorized, path, method)

    def close(self):
        self.closed = True

    def health_state(self) -> str:
        self._check("/health/state")
        return self.c.state

    def info(self) -> dict:
        self._check("/info")
        return dict(self.c.info)

    def system_info(self, creds) -> dict:
        self._check("/system/info", creds=creds)
        if self.c.users[creds.username][1] != "Administrator":
            raise self._err(E.Forbidden, "/system/info")
        return {"softwareVersion": "4.1", "hardwareVersion": "N/A", "deviceId": self.c.device_id}

    def get_user(self, creds, user_id) -> dict:
        self._check(f"/users/{user_id}", creds=creds)
        return {"realName": user_id, "role": self.c.users[user_id][1]}

    def set_passphrase(self, creds, user_id, passphrase) -> None:
        self._check(f"/users/{user_id}/passphrase", "POST", creds=creds)
        if not 10 <= len(passphrase.encode()) <= 200:
            raise self._err(E.BadRequest, f"/users/{user_id}/passphrase", "POST")
        self.c.users[user_id] = (passphrase, self.c.users[user_id][1])


class Caller:
    """call("C_GetInfo", info_struct) -> CK_RV, converting ctypes objects to addresses."""

    def __init__(self, entry):
        self.entry = entry
        self._keep: list = []

    def addr(self, value) -> int:
        if value is None:
            return 0
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, (bytes, str)):
            raw = value.encode() if isinstance(value, str) else value
            buf = ctypes.create_string_buffer(raw, len(raw) or 1)
            self._keep.append(buf)
            return ctypes.addressof(buf)
        return ctypes.addressof(value)

    def __call__(self, name: str, *args) -> int:
        return self.entry(INDEX[name], *(self.addr(a) for a in args))

    # conveniences -------------------------------------------------------------------------
    def open(self, slot: int = 0, rw: bool = True) -> int:
        h = ctypes.c_ulong()
        flags = 0x4 | (0x2 if rw else 0)
        rv = self("C_OpenSession", slot, flags, None, None, h)
        assert rv == 0, hex(rv)
        return h.value

    def login(self, h: int, user_type: int, pin: str | bytes) -> int:
        raw = pin.encode() if isinstance(pin, str) else pin
        return self("C_Login", h, user_type, raw, len(raw))
