"""Device data shared by all instances of one emulated NetHSM (cluster), with
optional JSON persistence in a state dir."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

from .crypto_ops import Key, backup_key

ROOT = ""  # namespace of root users and keys


UNPROV, LOCKED, OPER, FAILED = "Unprovisioned", "Locked", "Operational", "Failed"


def instance_state(device, instance) -> str:
    """The /health/state of one instance of the (shared) device."""
    if not device.provisioned:
        return UNPROV
    if instance.failure is not None:
        return FAILED
    return LOCKED if instance.locked else OPER


def hash_passphrase(salt: bytes, passphrase: str) -> str:
    return hmac.new(salt, passphrase.encode(), hashlib.sha256).hexdigest()


@dataclass
class User:
    role: str
    real_name: str
    salt: bytes
    pw_hash: str
    tags: set = field(default_factory=set)

    @classmethod
    def create(cls, role, real_name, passphrase):
        salt = secrets.token_bytes(16)
        return cls(role, real_name, salt, hash_passphrase(salt, passphrase))

    def check(self, passphrase: str) -> bool:
        return hmac.compare_digest(self.pw_hash, hash_passphrase(self.salt, passphrase))

    def set_passphrase(self, passphrase: str):
        self.salt = secrets.token_bytes(16)
        self.pw_hash = hash_passphrase(self.salt, passphrase)


@dataclass
class KeyRecord:
    key: Key
    mechanisms: list
    tags: set = field(default_factory=set)
    cert: bytes | None = None
    operations: int = 0
    label: str = ""


def split_user_id(user_id: str) -> tuple[str, str]:
    """'ns~name' -> ('ns', 'name'); 'name' -> ('', 'name')."""
    if "~" in user_id:
        ns, _, name = user_id.partition("~")
        return ns, name
    return ROOT, user_id


class Device:
    """All persistent data of the device. Every access holds `self.lock`."""

    def __init__(self, state_dir: str | None = None):
        self.lock = threading.RLock()
        self.state_dir = state_dir
        self.device_id = secrets.token_hex(5).upper()
        self.labels_enabled = False
        self.throttle_enabled = True
        self.instances = []  # the serving instances (cluster members) sharing this data
        self.tls = None
        self._failed_logins: dict = {}   # (ip, user) -> monotonic time of last failure
        self._failed_unlocks: dict = {}  # ip -> monotonic time
        self.wipe()
        if state_dir:
            os.makedirs(state_dir, exist_ok=True)
            self._load()

    # ------------------------------------------------------------ lifecycle
    def wipe(self):
        with self.lock:
            self.provisioned = False
            self.unlock_salt = b""
            self.unlock_hash = ""
            self.backup_salt = b""
            self.backup_hash = ""
            self.backup_kdf_salt = b""
            self.backup_key = b""
            self.users: dict[str, User] = {}
            self.namespaces: set[str] = set()
            self.keys: dict[tuple[str, str], KeyRecord] = {}
            self.time_offset = 0.0
            self.config = {
                "unattended_boot": "off",
                "network": {"ipAddress": "192.168.1.1", "netmask": "255.255.255.0",
                            "gateway": "0.0.0.0"},
                "logging": {"ipAddress": "0.0.0.0", "port": 514, "logLevel": "info"},
                "cluster_ca": None,
            }

    def provision(self, unlock_passphrase: str, admin_passphrase: str, system_time: float):
        with self.lock:
            self.wipe()
            self.provisioned = True
            self.set_unlock_passphrase(unlock_passphrase)
            self.users["admin"] = User.create("Administrator", "admin", admin_passphrase)
            self.time_offset = system_time - time.time()
            self.save()

    # ------------------------------------------------------------ passphrases
    def set_unlock_passphrase(self, passphrase: str):
        self.unlock_salt = secrets.token_bytes(16)
        self.unlock_hash = hash_passphrase(self.unlock_salt, passphrase)

    def check_unlock(self, passphrase: str) -> bool:
        return hmac.compare_digest(self.unlock_hash, hash_passphrase(self.unlock_salt, passphrase))

    def set_backup_passphrase(self, passphrase: str):
        self.backup_salt = secrets.token_bytes(16)
        self.backup_hash = hash_passphrase(self.backup_salt, passphrase)
        # The device stores the derived backup key, not the passphrase.
        self.backup_kdf_salt = secrets.token_bytes(16)
        self.backup_key = backup_key(passphrase, self.backup_kdf_salt)

    def check_backup(self, passphrase: str) -> bool:
        if not self.backup_hash:
            return passphrase == ""
        return hmac.compare_digest(self.backup_hash, hash_passphrase(self.backup_salt, passphrase))

    # ------------------------------------------------------------ throttle
    def throttled(self, table: str, key) -> bool:
        if not self.throttle_enabled:
            return False
        t = getattr(self, table).get(key)
        return t is not None and time.monotonic() - t < 1.0

    def record_failure(self, table: str, key):
        if not self.throttle_enabled:
            return
        getattr(self, table)[key] = time.monotonic()

    # ------------------------------------------------------------ persistence
    def _path(self):
        return os.path.join(self.state_dir, "state.json")

    def to_json(self) -> dict:
        with self.lock:
            return {
                "device_id": self.device_id,
                "provisioned": self.provisioned,
                "unlock": [self.unlock_salt.hex(), self.unlock_hash],
                "backup": [self.backup_salt.hex(), self.backup_hash,
                           self.backup_kdf_salt.hex(), self.backup_key.hex()],
                "time_offset": self.time_offset,
                "config": self.config,
                "namespaces": sorted(self.namespaces),
                "users": {uid: {"role": u.role, "realName": u.real_name, "salt": u.salt.hex(),
                                "hash": u.pw_hash, "tags": sorted(u.tags)}
                          for uid, u in self.users.items()},
                "keys": [{"ns": ns, "id": kid, "type": r.key.type,
                          "material": base64.b64encode(r.key.to_bytes()).decode(),
                          "mechanisms": r.mechanisms, "tags": sorted(r.tags),
                          "cert": base64.b64encode(r.cert).decode() if r.cert is not None else None,
                          "operations": r.operations, "label": r.label}
                         for (ns, kid), r in self.keys.items()],
            }

    def from_json(self, d: dict):
        with self.lock:
            self.device_id = d["device_id"]
            self.provisioned = d["provisioned"]
            self.unlock_salt, self.unlock_hash = bytes.fromhex(d["unlock"][0]), d["unlock"][1]
            self.backup_salt, self.backup_hash = bytes.fromhex(d["backup"][0]), d["backup"][1]
            self.backup_kdf_salt, self.backup_key = (bytes.fromhex(x) for x in d["backup"][2:4])
            self.time_offset = d["time_offset"]
            self.config = d["config"]
            self.namespaces = set(d["namespaces"])
            self.users = {uid: User(u["role"], u["realName"], bytes.fromhex(u["salt"]), u["hash"],
                                    set(u["tags"])) for uid, u in d["users"].items()}
            self.keys = {}
            for k in d["keys"]:
                key = Key.from_bytes(k["type"], base64.b64decode(k["material"]))
                cert = base64.b64decode(k["cert"]) if k["cert"] is not None else None
                self.keys[(k["ns"], k["id"])] = KeyRecord(key, k["mechanisms"], set(k["tags"]),
                                                          cert, k["operations"], k["label"])

    def save(self):
        if not self.state_dir:
            return
        with self.lock:
            data = json.dumps(self.to_json())
            tmp = self._path() + ".tmp"
            with open(tmp, "w") as f:
                f.write(data)
            os.replace(tmp, self._path())

    def _load(self):
        if os.path.exists(self._path()):
            with open(self._path()) as f:
                self.from_json(json.load(f))
