"""The configuration's schema: which keys exist at which level, their ranges, and typed reading of
one YAML mapping with the file and key path for messages (`Reader`). Every key: the README's
configuration reference.

The key sets are the fields of the config.model records, so a new key is declared once, in
model.py (the parsing of its value is in loader.py).
"""

from __future__ import annotations

from p11nethsm.config import model

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

LOG_LEVELS = ("Trace", "Debug", "Info", "Warn", "Error")
FACILITY_NAMES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)


class ConfigError(Exception):
    """A configuration problem that prevents C_Initialize: names the file, the key and the problem."""

    def __init__(self, problem: str, *, file: str = "", key: str = ""):
        self.file = file
        self.key = key
        self.problem = problem
        where = ", ".join(p for p in (file and f"file {file}", key and f"key '{key}'") if p)
        super().__init__(f"configuration error: {where + ': ' if where else ''}{problem}")


# --- keys per level: the model's fields, minus what the loader fills in itself (the file names) ---
TOP_KEYS = frozenset(model.Config._fields) - {"sources"}
SLOT_KEYS = frozenset(model.SlotConfig._fields) - {"source"}
USER_KEYS = frozenset(model.UserConfig._fields)
INSTANCE_KEYS = frozenset(model.InstanceConfig._fields)
RETRY_KEYS = frozenset(model.RetryConfig._fields)
KEEPALIVE_KEYS = frozenset(model.KeepaliveConfig._fields)
UDP_KEYS = frozenset(model.SyslogUdp._fields)


def _switches(record) -> tuple[str, ...]:
    """The fields of a record whose default is a bool: true/false keys, read without more code."""
    return tuple(name for name, default in record._field_defaults.items() if isinstance(default, bool))


TOP_SWITCHES = _switches(model.Config)
SLOT_SWITCHES = _switches(model.SlotConfig)
INSTANCE_SWITCHES = _switches(model.InstanceConfig)
ALL_KEYS = TOP_KEYS | SLOT_KEYS | USER_KEYS | INSTANCE_KEYS | RETRY_KEYS | KEEPALIVE_KEYS | UDP_KEYS

# Where each group of keys belongs, for a known key found at the wrong level.
PLACES = (
    (TOP_KEYS, "at the top level of the file"),
    (SLOT_KEYS, "in a slot (slots[])"),
    (INSTANCE_KEYS, "in an instance (slots[].instances[])"),
    (USER_KEYS, "in slots[].operator or slots[].administrator"),
    (RETRY_KEYS, "in slots[].retries"),
    (KEEPALIVE_KEYS, "in slots[].tcp_keepalive"),
    (UDP_KEYS, "in syslog_udp"),
)

# Allowed ranges of numeric keys (by key name in its mapping): (minimum, maximum, why the maximum).
# The keepalive maxima are Linux's (MAX_TCP_KEEPIDLE/KEEPINTVL 32767, MAX_TCP_KEEPCNT 127): the
# kernel refuses larger values, which would fail every connection. Seconds are finite.
LIMITS = {
    "max_idle_connections": (1, 1024, "idle connections kept per instance"),
    "count": (0, 100, "retries per API call"),
    "delay_seconds": (0, 3600, "one hour"),
    "timeout_seconds": (0, 86400, "one day; leave it out for no timeout"),
    "connections_max_idle_duration": (0, 31536000, "one year; leave it out for unlimited"),
    "time_seconds": (1, 32767, "the kernel's limit of TCP_KEEPIDLE"),
    "interval_seconds": (1, 32767, "the kernel's limit of TCP_KEEPINTVL"),
    "retries": (1, 127, "the kernel's limit of TCP_KEEPCNT"),
    "metrics_interval_seconds": (1, 86400, "one day"),
}


class Reader:
    """Typed access to one mapping of one file, with the key path for messages."""

    def __init__(self, data: Any, file: str, path: str, known: frozenset[str], warnings: list[str]):
        if not isinstance(data, dict):
            raise ConfigError(f"expected a mapping, got {kind_of(data)}", file=file, key=path or "(top level)")
        self.data = data
        self.file = file
        self.path = path
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(f"key {key!r} is not a string", file=file, key=path or "(top level)")
            if key not in known and key in ALL_KEYS:
                places = " or ".join(where for keys, where in PLACES if key in keys)
                here = f"in {self.path}" if self.path else "at the top level"
                warnings.append(f"{file}: key '{self.key(key)}' ignored: '{key}' is not a setting {here}, "
                                f"it belongs {places}")
            elif key not in known:
                import difflib  # lazy: only for an unknown key; not on the C_Initialize path

                close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6) or \
                    difflib.get_close_matches(key, sorted(ALL_KEYS), n=1, cutoff=0.75)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                warnings.append(f"{file}: unknown key '{self.key(key)}' ignored{hint}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(problem, file=self.file, key=self.key(name))

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def raw(self, name: str) -> Any:
        return self.data.get(name)

    def str(self, name: str, *, required: bool = False, nonempty: bool = False) -> str | None:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error(name, "is required")
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(name, f"must be a string, got {kind_of(value)}")
        value = str(value)
        if nonempty and not value.strip():
            raise self.error(name, "must not be empty")
        return value

    def bool(self, name: str) -> bool | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {value!r}")
        return value

    def _range(self, name: str, minimum: int) -> tuple[int, int | None, str]:
        low, high, why = LIMITS.get(name, (minimum, None, ""))
        return max(low, minimum), high, why

    def _range_text(self, low, high, why) -> str:
        if high is None:
            return f">= {low}"
        return f"from {low} to {high}" + (f" ({why})" if why else "")

    def int(self, name: str, *, minimum: int = 0) -> int | None:
        value = self.data.get(name)
        if value is None:
            return None
        low, high, why = self._range(name, minimum)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"must be an integer {self._range_text(low, high, why)}, got {value!r}")
        if value < low or (high is not None and value > high):
            raise self.error(name, f"must be {self._range_text(low, high, why)}, got {value}")
        return value

    def seconds(self, name: str) -> float | None:
        value = self.data.get(name)
        if value is None:
            return None
        low, high, why = self._range(name, 0)
        allowed = f"a number of seconds {self._range_text(low, high, why)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"must be {allowed}, got {value!r}")
        if value != value or value in (float("inf"), float("-inf")):  # YAML .nan / .inf
            raise self.error(name, f"must be {allowed}, got {value}")
        if value < low or (high is not None and value > high):
            raise self.error(name, f"must be {allowed}, got {value}")
        return float(value)

    def sub(self, name: str, known: frozenset[str], warnings: list[str]) -> Reader | None:
        value = self.data.get(name)
        if value is None:
            return None
        return Reader(value, self.file, self.key(name), known, warnings)

    def list(self, name: str) -> list:
        value = self.data.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(name, f"must be a list, got {kind_of(value)}")
        return value


def kind_of(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def hostport(r: Reader, name: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise r.error(name, f"must be host:port, got {value!r}")
    return value

