"""The configuration as typed values (see docs/pkcs11-setup.txt for every key).

The loader (p11nethsm.config.loader) builds these from YAML; everything else reads only these.
Durations are seconds as float; None means "not configured" and its documented default applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class UserConfig:
    username: str
    # Resolved password (env: already expanded). None/"" means: expect it via C_Login.
    password: str | None = field(default=None, repr=False)

    @property
    def has_password(self) -> bool:
        return bool(self.password)


@dataclass(frozen=True)
class InstanceConfig:
    url: str  # e.g. https://host:8443/api/v1 (no trailing slash)
    max_idle_connections: int | None = None  # None: the number of CPUs, as the vendor module
    # Upper-case colon-separated hex as written by the user, normalised by the loader
    # to bytes (32 bytes each) here.
    sha256_fingerprints: tuple[bytes, ...] = ()
    danger_insecure_cert: bool = False
    ca_file: str | None = None  # PEM bundle of a private CA


@dataclass(frozen=True)
class RetryConfig:
    count: int = 0
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class KeepaliveConfig:
    time_seconds: int | None = None
    interval_seconds: int | None = None
    retries: int | None = None


@dataclass(frozen=True)
class SlotConfig:
    label: str
    instances: tuple[InstanceConfig, ...]
    description: str | None = None
    operator: UserConfig | None = None
    administrator: UserConfig | None = None
    retries: RetryConfig | None = None  # None: a single attempt, no retry
    timeout_seconds: float | None = None  # None: infinite, as documented
    tcp_keepalive: KeepaliveConfig | None = None
    connections_max_idle_duration: float | None = None  # None: unlimited
    certificate_format: str = "PEM"  # "PEM" or "DER": how certificates are stored on the NetHSM
    source: str = ""  # the config file this slot came from (for messages)


@dataclass(frozen=True)
class SyslogUdp:
    to_addr: str
    from_addr: str | None = None


@dataclass(frozen=True)
class Config:
    slots: tuple[SlotConfig, ...]
    log_level: str | None = None  # Trace|Debug|Info|Warn|Error
    log_file: str | None = None  # path, or "-" for stderr
    syslog_socket: str | None = None
    syslog_udp: SyslogUdp | None = None
    syslog_tcp: str | None = None
    syslog_facility: str = "user"
    syslog_hostname: str | None = None
    syslog_process: str | None = None
    syslog_pid: int | None = None
    enable_set_attribute_value: bool = False
    disable_threads: bool = False
    disable_thread_pool: bool = False
    sources: tuple[str, ...] = ()  # files read, in order
