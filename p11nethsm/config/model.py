"""The configuration as typed values (every key: the README's configuration reference).

The loader (p11nethsm.config.loader) builds these from YAML; everything else reads only these.
Durations are seconds as float; None means "not configured" and its documented default applies.

The values are immutable and compare by value. They are collections.namedtuple classes, made by
`_record` from (field, default) lists with each field's type in a comment: C_Initialize builds
them, and importing dataclasses or typing (and creating the classes) used to cost more start-up
time than reading and checking the whole configuration.
"""

from __future__ import annotations

from collections import namedtuple

REQUIRED = object()  # a field without a default


def _record(typename: str, fields: list[tuple[str, object]]) -> type:
    """A namedtuple class with these (name, default) fields; the REQUIRED ones come first."""
    names = [name for name, _ in fields]
    defaults = [default for _, default in fields if default is not REQUIRED]
    if any(default is REQUIRED for _, default in fields[len(fields) - len(defaults):]):
        raise TypeError(f"{typename}: a required field follows one with a default")
    return namedtuple(typename, names, defaults=defaults)


class UserConfig(_record("UserConfig", [
    ("username", REQUIRED),  # str
    # str | None: the resolved password (env: already expanded). None/"" means: expect it via C_Login.
    ("password", None),
])):
    __slots__ = ()

    @property
    def has_password(self) -> bool:
        return bool(self.password)

    def __repr__(self) -> str:  # never the password
        return f"UserConfig(username={self.username!r})"


class InstanceConfig(_record("InstanceConfig", [
    ("url", REQUIRED),  # str, e.g. https://host:8443/api/v1 (no trailing slash)
    ("max_idle_connections", None),  # int | None; None: starts at the number of CPUs, grows with concurrency (net/pool)
    # tuple[bytes, ...]: upper-case colon-separated hex as written by the user, normalised by the
    # loader to bytes (32 bytes each) here.
    ("sha256_fingerprints", ()),
    ("danger_insecure_cert", False),  # bool
    ("ca_file", None),  # str | None: PEM bundle of a private CA
])):
    __slots__ = ()


class RetryConfig(_record("RetryConfig", [
    ("count", 0),  # int
    ("delay_seconds", 0.0),  # float
])):
    __slots__ = ()


class KeepaliveConfig(_record("KeepaliveConfig", [
    ("time_seconds", None),  # int | None
    ("interval_seconds", None),  # int | None
    ("retries", None),  # int | None
])):
    __slots__ = ()


class SlotConfig(_record("SlotConfig", [
    ("label", REQUIRED),  # str
    ("instances", REQUIRED),  # tuple[InstanceConfig, ...]
    ("description", None),  # str | None
    ("operator", None),  # UserConfig | None
    ("administrator", None),  # UserConfig | None
    ("retries", None),  # RetryConfig | None; None: a single attempt, no retry
    ("timeout_seconds", None),  # float | None; None: infinite, as documented
    ("tcp_keepalive", None),  # KeepaliveConfig | None
    ("connections_max_idle_duration", None),  # float | None; None: unlimited
    ("certificate_format", "PEM"),  # "PEM" or "DER": how certificates are stored on the NetHSM
    ("source", ""),  # str: the config file this slot came from (for messages)
])):
    __slots__ = ()


class SyslogUdp(_record("SyslogUdp", [
    ("to_addr", REQUIRED),  # str, host:port
    ("from_addr", None),  # str | None, host:port
])):
    __slots__ = ()


class Config(_record("Config", [
    ("slots", REQUIRED),  # tuple[SlotConfig, ...]
    ("log_level", None),  # str | None: Trace|Debug|Info|Warn|Error
    ("log_file", None),  # str | None: path, or "-" for stderr
    ("syslog_socket", None),  # str | None
    ("syslog_udp", None),  # SyslogUdp | None
    ("syslog_tcp", None),  # str | None
    ("syslog_facility", "user"),  # str
    ("syslog_hostname", None),  # str | None
    ("syslog_process", None),  # str | None
    ("syslog_pid", None),  # int | None
    ("enable_set_attribute_value", False),  # bool
    ("disable_threads", False),  # bool
    ("disable_thread_pool", False),  # bool
    ("log_format", "text"),  # str: text | json (one JSON object per line)
    ("metrics_file", None),  # str | None: Prometheus textfile written by the module
    ("metrics_interval_seconds", 60.0),  # float: how often metrics_file is rewritten
    ("sources", ()),  # tuple[str, ...]: files read, in order
])):
    __slots__ = ()
