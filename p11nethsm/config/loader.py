"""Load the YAML configuration (every key: the README's configuration reference) into config.model values.

Where:
- `P11NETHSM_CONFIG_FILE` set: only that file (an error reading it fails C_Initialize);
- else every existing file of /etc/nitrokey/p11nethsm.conf, /usr/local/etc/nitrokey/p11nethsm.conf,
  $HOME/.config/nitrokey/p11nethsm.conf, in that order; none → ConfigError.

Merging (same rule as the vendor module, documented here because it does not document it):
the `slots` of all files are concatenated in file order; for every other (scalar) key the
*first* file that sets it wins, so /etc beats /usr/local/etc beats $HOME.

Validation: every key of the documented format plus the later vendor keys `disable_threads`,
`disable_thread_pool`, `certificate_format`, and our per-instance `ca_file`. An unknown key is
not fatal: it is reported (file, key path, closest known key) in `LoadResult.warnings`, which
C_Initialize logs; a key known at another level is reported with the place it belongs. Anything
malformed raises ConfigError(file, key, problem). Values that would load and then break every call
are malformed too: numbers outside `LIMITS` (kernel limits of the TCP keepalive options, finite
seconds), an instance URL that is not https://host[:1-65535]/path, a `log_file` that cannot be
opened for appending.
"""

from __future__ import annotations

import os
from collections import namedtuple
from collections.abc import Mapping

from p11nethsm.config.model import (
    Config,
    InstanceConfig,
    KeepaliveConfig,
    RetryConfig,
    SlotConfig,
    SyslogUdp,
    UserConfig,
)
from p11nethsm.config.schema import (
    FACILITY_NAMES,
    INSTANCE_KEYS,
    INSTANCE_SWITCHES,
    KEEPALIVE_KEYS,
    LOG_LEVELS,
    RETRY_KEYS,
    SLOT_KEYS,
    SLOT_SWITCHES,
    TOP_KEYS,
    TOP_SWITCHES,
    UDP_KEYS,
    USER_KEYS,
    ConfigError,
    hostport,
    kind_of,
    Reader,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ConfigError", "LoadResult", "load", "load_files", "search_paths", "ENV_VAR"]

ENV_VAR = "P11NETHSM_CONFIG_FILE"


# config: Config; warnings: list[str], for C_Initialize to log
LoadResult = namedtuple("LoadResult", ["config", "warnings"])


def search_paths(env: Mapping[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    return [
        "/etc/nitrokey/p11nethsm.conf",
        "/usr/local/etc/nitrokey/p11nethsm.conf",
        os.path.join(home, ".config", "nitrokey", "p11nethsm.conf"),
    ]


def load(env: Mapping[str, str] | None = None) -> LoadResult:
    """Find, read, validate and merge the configuration files."""
    env = os.environ if env is None else env
    explicit = env.get(ENV_VAR)
    if explicit:
        if not os.path.isfile(explicit):
            raise ConfigError(f"{ENV_VAR} names a file that does not exist or is not a file", file=explicit)
        return load_files([explicit], env)
    paths = search_paths(env)
    found = [p for p in paths if os.path.isfile(p)]
    if not found:
        raise ConfigError(
            "no configuration file found; searched " + ", ".join(paths) + f" (or set {ENV_VAR})"
        )
    return load_files(found, env)


# --- schema -------------------------------------------------------------------------------------


def normalise_fingerprint(text: str) -> bytes:
    """'31:92:8E:...' or '31928e...' (any case, optional colons/spaces) -> 32 bytes."""
    cleaned = text.replace(":", "").replace(" ", "").strip()
    raw = bytes.fromhex(cleaned)
    if len(raw) != 32:
        raise ValueError(f"is {len(raw)} bytes, a SHA-256 fingerprint has 32")
    return raw


def _user(r: Reader, name: str, env: Mapping[str, str], warnings: list[str]) -> UserConfig | None:
    u = r.sub(name, USER_KEYS, warnings)
    if u is None:
        return None
    username = u.str("username", required=True, nonempty=True)
    password = u.str("password")
    if password is not None and password.startswith("env:"):
        var = password[4:]
        if not var:
            raise u.error("password", "'env:' needs an environment variable name")
        if var not in env:
            raise u.error("password", f"environment variable {var} is not set")
        password = env[var]
    return UserConfig(username=username, password=password or None)


_URL_EXAMPLE = "https://host:8443/api/v1"


def _url(r: Reader, warnings: list[str]) -> str:
    """The instance URL, checked as the client will use it: https (the NetHSM serves nothing else,
    the client speaks nothing else), a host, a port 1-65535, no user info (it would be logged with
    the URL), no query or fragment."""
    from urllib.parse import urlsplit  # lazy: urllib.parse only when an instance is read

    url = r.str("url", required=True, nonempty=True).strip().rstrip("/")
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = None
    try:
        port = parts.port if parts is not None else None
    except ValueError:  # out of range or not a number
        port = -1
    safe = url
    if parts is not None and "@" in parts.netloc:
        safe = url.replace(parts.netloc.rpartition("@")[0] + "@", "***@", 1)  # never echo a password
    if parts is None or parts.scheme.lower() != "https":
        raise r.error("url", f"must be an https URL like {_URL_EXAMPLE}, got {safe!r}")
    if "@" in parts.netloc:
        raise r.error("url", f"must not contain a user name or password (set them in operator/administrator), "
                             f"got {safe!r}")
    if not parts.hostname:
        raise r.error("url", f"has no host name (like {_URL_EXAMPLE}), got {safe!r}")
    if port == -1 or port == 0:
        raise r.error("url", f"port must be a number from 1 to 65535, got {safe!r}")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise r.error("url", f"must not contain spaces or control characters, got {safe!r}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise r.error("url", f"must not have a query or fragment (like {_URL_EXAMPLE}), got {safe!r}")
    if not parts.path.endswith("/api/v1"):
        warnings.append(f"{r.file}: key '{r.key('url')}': {safe!r} does not end with /api/v1, where the "
                        f"NetHSM REST API is (like {_URL_EXAMPLE})")
    return url


def _instance(r: Reader, warnings: list[str]) -> InstanceConfig:
    url = _url(r, warnings)
    fps = []
    for i, fp in enumerate(r.list("sha256_fingerprints")):
        key = f"sha256_fingerprints[{i}]"
        if not isinstance(fp, str):
            raise r.error(key, f"must be a hex string, got {kind_of(fp)}")
        try:
            fps.append(normalise_fingerprint(fp))
        except ValueError as exc:
            problem = str(exc) if str(exc).startswith("is ") else "is not hex"
            raise r.error(key, f"{fp!r} {problem}") from None
    ca_file = r.str("ca_file")
    if ca_file is not None and not os.path.isfile(ca_file):
        raise r.error("ca_file", f"{ca_file} does not exist or is not a file")
    return InstanceConfig(
        url=url,
        max_idle_connections=r.int("max_idle_connections", minimum=1),
        sha256_fingerprints=tuple(fps),
        **_switches(r, INSTANCE_SWITCHES),
        ca_file=ca_file,
    )


def _slot(r: Reader, env: Mapping[str, str], warnings: list[str]) -> SlotConfig:
    label = r.str("label", required=True, nonempty=True)
    operator = _user(r, "operator", env, warnings)
    administrator = _user(r, "administrator", env, warnings)
    if operator is None and administrator is None:
        raise ConfigError("no user configured: set 'operator' and/or 'administrator'",
                          file=r.file, key=r.path)
    raw_instances = r.list("instances")
    if not raw_instances:
        raise r.error("instances", "at least one instance (url) is required")
    instances = tuple(
        _instance(Reader(inst, r.file, r.key(f"instances[{i}]"), INSTANCE_KEYS, warnings), warnings)
        for i, inst in enumerate(raw_instances)
    )
    retries = None
    rr = r.sub("retries", RETRY_KEYS, warnings)
    if rr is not None:
        retries = RetryConfig(count=rr.int("count") or 0, delay_seconds=rr.seconds("delay_seconds") or 0.0)
    keepalive = None
    kr = r.sub("tcp_keepalive", KEEPALIVE_KEYS, warnings)
    if kr is not None:
        keepalive = KeepaliveConfig(
            time_seconds=kr.int("time_seconds", minimum=1),
            interval_seconds=kr.int("interval_seconds", minimum=1),
            retries=kr.int("retries", minimum=1),
        )
    fmt = r.str("certificate_format") or "PEM"
    if fmt.upper() not in ("PEM", "DER"):
        raise r.error("certificate_format", f"must be PEM or DER, got {fmt!r}")
    timeout = r.seconds("timeout_seconds")
    if timeout == 0:
        raise r.error("timeout_seconds", "must be > 0 and at most 86400 (leave it out for no timeout)")
    return SlotConfig(
        label=label,
        instances=instances,
        description=r.str("description"),
        operator=operator,
        administrator=administrator,
        retries=retries,
        timeout_seconds=timeout,
        tcp_keepalive=keepalive,
        connections_max_idle_duration=r.seconds("connections_max_idle_duration"),
        certificate_format=fmt.upper(),
        source=r.file,
        **_switches(r, SLOT_SWITCHES),
    )


def _switches(r: Reader, names: tuple[str, ...]) -> dict[str, bool]:
    """The true/false keys of one level (schema.*_SWITCHES: the model's bool fields); unset is false."""
    return {name: bool(r.bool(name)) for name in names}


def _top_scalars(r: Reader, warnings: list[str]) -> dict[str, Any]:
    """The scalar options a file sets (only those present)."""
    out: dict[str, Any] = {}
    out.update({name: value for name, value in _switches(r, TOP_SWITCHES).items() if r.has(name)})
    if r.has("log_level"):
        level = r.str("log_level")
        match = [lv for lv in LOG_LEVELS if lv.lower() == level.lower()]
        if not match:
            raise r.error("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
        out["log_level"] = match[0]
    for name in ("log_file", "syslog_socket", "syslog_hostname", "syslog_process", "metrics_file"):
        if r.has(name):
            out[name] = r.str(name, nonempty=True)
    if "syslog_socket" in out and not os.path.exists(out["syslog_socket"]):
        warnings.append(f"{r.file}: key 'syslog_socket': {out['syslog_socket']} does not exist (yet): log lines "
                        "are dropped until a syslog daemon creates it")
    if out.get("log_file") not in (None, "-"):
        problem = log_file_problem(out["log_file"])
        if problem:
            raise r.error("log_file", problem)
    if out.get("metrics_file"):
        problem = log_file_problem(out["metrics_file"].replace("{pid}", "0"))
        if problem:
            raise r.error("metrics_file", problem)
    if r.has("log_format"):
        fmt = r.str("log_format").lower()
        if fmt not in ("text", "json"):
            raise r.error("log_format", f"must be text or json, got {fmt!r}")
        out["log_format"] = fmt
    if r.has("metrics_interval_seconds"):
        out["metrics_interval_seconds"] = r.seconds("metrics_interval_seconds")
    if r.has("syslog_tcp"):
        out["syslog_tcp"] = hostport(r, "syslog_tcp", r.str("syslog_tcp"))
    if r.has("syslog_udp"):
        u = r.sub("syslog_udp", UDP_KEYS, warnings)
        to_addr = hostport(u, "to_addr", u.str("to_addr", required=True))
        from_addr = u.str("from_addr")
        if from_addr is not None:
            hostport(u, "from_addr", from_addr)
        out["syslog_udp"] = SyslogUdp(to_addr=to_addr, from_addr=from_addr)
    if r.has("syslog_facility"):
        fac = r.str("syslog_facility")
        if fac.lower() not in FACILITY_NAMES:
            raise r.error("syslog_facility", f"must be one of {', '.join(FACILITY_NAMES)}, got {fac!r}")
        out["syslog_facility"] = fac.lower()
    if r.has("syslog_pid"):
        out["syslog_pid"] = r.int("syslog_pid")
    targets = [n for n in ("syslog_socket", "syslog_udp", "syslog_tcp") if n in out]
    if len(targets) > 1:
        raise ConfigError(f"only one syslog target can be configured, this file sets {', '.join(targets)}",
                          file=r.file, key=targets[1])
    return out


def log_file_problem(path: str) -> str | None:
    """Why `path` cannot be appended to, or None. Nothing is created: an existing file is opened
    for appending (and closed), a new one needs an existing, writable directory."""
    if os.path.isdir(path):
        return f"{path} is a directory, not a file"
    if os.path.exists(path):
        try:
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            return f"{path} cannot be opened for appending: {exc.strerror or exc}"
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        what = "is not a directory" if os.path.exists(directory) else "does not exist"
        return f"the directory {directory} of {path} {what}"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{path} cannot be created: the directory {directory} is not writable"
    return None


def _read_yaml(path: str) -> Any:
    import yaml  # lazy: C_Initialize imports it only when a file is read

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except UnicodeDecodeError:
        raise ConfigError("is not UTF-8 text", file=path) from None
    # libyaml's parser when PyYAML has it: the same documents, a fifth of the parse time
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML{where}: {problem}", file=path) from None
    return {} if data is None else data


def load_files(paths: list[str], env: Mapping[str, str] | None = None) -> LoadResult:
    """Read and merge `paths` in order (see module doc for the merge rule)."""
    env = os.environ if env is None else env
    warnings: list[str] = []
    scalars: dict[str, Any] = {}
    origin: dict[str, str] = {}
    slots: list[SlotConfig] = []
    for path in paths:
        r = Reader(_read_yaml(path), path, "", TOP_KEYS, warnings)
        for name, value in _top_scalars(r, warnings).items():
            if name not in scalars:
                scalars[name] = value
                origin[name] = path
            elif scalars[name] != value:
                warnings.append(f"{path}: '{name}' ignored, already set by {origin[name]} (first file wins)")
        for i, raw in enumerate(r.list("slots")):
            sr = Reader(raw, path, f"slots[{i}]", SLOT_KEYS, warnings)
            slots.append(_slot(sr, env, warnings))
    targets = [n for n in ("syslog_socket", "syslog_udp", "syslog_tcp") if n in scalars]
    if len(targets) > 1:
        raise ConfigError(
            "only one syslog target can be configured; merged files set "
            + ", ".join(f"{n} ({origin[n]})" for n in targets),
            file=origin[targets[1]], key=targets[1],
        )
    labels: dict[str, str] = {}
    for s in slots:
        if s.label in labels:
            warnings.append(f"{s.source}: slot label '{s.label}' is also used in {labels[s.label]}")
        labels.setdefault(s.label, s.source)
    if not slots:
        warnings.append("no slots configured in " + ", ".join(paths))
    config = Config(slots=tuple(slots), sources=tuple(paths), **scalars)
    return LoadResult(config, warnings)
