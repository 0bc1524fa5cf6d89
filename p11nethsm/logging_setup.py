"""Log sinks (loguru): stderr, a file, syslog (unix socket, UDP or TCP).

loguru itself is imported only when a line is first written (p11nethsm.log): configure() records
the sinks and they are added then, to the module's own logger (its own loguru Core, no default
handler), so nothing is written before C_Initialize configures logging, nothing ever goes to
stdout (it belongs to the host), and a Python host's loguru and stdlib logging set-up is never
touched: its handlers never see our records, our sinks never see its records.

Targets (the README's configuration reference, `log_file` and `syslog_*`):
- `log_file`: a path (appended), or `-` for stderr;
- one of `syslog_socket` (path), `syslog_udp` ({to_addr, from_addr}), `syslog_tcp` (host:port);
- no log_file and no syslog_* key: syslog on the first existing socket of /dev/log,
  /var/run/syslog, /var/run/log, plus stderr. Any syslog_* key alone means syslog only.
- `log_level`: Trace, Debug, Info, Warn, Error (default: Warn).

Syslog format: RFC 3164 (BSD syslog), one message per record:
    <PRI>Mmm dd hh:mm:ss HOSTNAME PROCESS[PID]: LEVEL message
PRI = facility * 8 + severity; the timestamp is local time with a space-padded day. On a local
unix socket HOSTNAME is omitted, as glibc's syslog(3) does, so the local daemon fills it in.
UDP: one datagram per message (cut to 8 KiB). TCP: RFC 6587 non-transparent framing (each
message ends with LF; LFs inside a message, e.g. tracebacks, are sent as "#012" like rsyslog).
`syslog_hostname` is used for UDP/TCP; `syslog_process` defaults to the program name
(basename of sys.argv[0]) and `syslog_pid` to the real pid.

Debugging aid: `P11NETHSM_LOG_TEE=DIR` in the environment. Every process that configures logging
(C_Initialize, including the fallback when the config fails to load) also writes a Trace-level
file `DIR/p11nethsm-<pid>.log` (appended; created with DIR if needed), whatever `log_level` says,
and the Trace/Debug lines are produced (logflags set) so the tee sees everything. The configured
sinks keep their own level. The test suite sets it for every process it starts, and a final test
scans the files for passphrases (tests/security/logtee.py). `P11NETHSM_LOG_TEE_SKIP_PID=<pid>`
exempts that one process (the pytest process, which captures its own records without changing
the level flags its tests check).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import namedtuple

from p11nethsm import calllog, log, logflags

__all__ = ["configure", "configure_fallback", "SyslogSink", "FACILITIES", "LEVELS", "reset"]

DEFAULT_SOCKETS = ("/dev/log", "/var/run/syslog", "/var/run/log")
DEFAULT_LEVEL = "Warn"

# Config level name -> loguru level name.
LEVELS = {"trace": "TRACE", "debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}
_LOGURU_NO = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40}

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21,
    "local6": 22, "local7": 23,
}

# loguru level no -> syslog severity
def _severity(levelno: int) -> int:
    if levelno >= 50:
        return 2  # crit
    if levelno >= 40:
        return 3  # err
    if levelno >= 30:
        return 4  # warning
    if levelno >= 25:
        return 5  # notice (loguru SUCCESS)
    if levelno >= 20:
        return 6  # info
    return 7  # debug (Debug and Trace)


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def rfc3164_timestamp(t: float | None = None) -> str:
    tm = time.localtime(t)
    return f"{_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"


def _parse_hostport(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{addr!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


# kind: "unix", "udp" or "tcp"; address: path or host:port; from_addr: host:port or None
SyslogTarget = namedtuple("SyslogTarget", ["kind", "address", "from_addr"], defaults=[None])


class SyslogSink:
    """A loguru sink writing RFC 3164 messages to a unix socket, UDP or TCP. Send errors never
    reach the application: a lost log line is better than a failed PKCS#11 call."""

    MAX_UDP = 8192

    def __init__(self, target: SyslogTarget, *, facility: int = 1, hostname: str | None = None,
                 process: str | None = None, pid: int | None = None):
        self.target = target
        self.facility = facility
        if hostname is None and target.kind != "unix":  # a unix socket's daemon fills it in
            import socket  # imported when needed: it is not cheap, and C_Initialize needs none

            hostname = socket.gethostname()
        self.hostname = hostname
        self.process = process or os.path.basename(sys.argv[0] if sys.argv and sys.argv[0] else "") or "p11nethsm"
        self.pid = pid
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._unix_stream = False  # the unix socket turned out to be SOCK_STREAM
        self._down_until = 0.0  # after a failed reconnect, drop messages for a while

    RETRY_AFTER = 10.0

    def format(self, levelno: int, level: str, text: str, when: float | None = None) -> bytes:
        pri = self.facility * 8 + _severity(levelno)
        pid = self.pid if self.pid is not None else os.getpid()
        host = "" if self.target.kind == "unix" else f"{self.hostname} "
        line = f"<{pri}>{rfc3164_timestamp(when)} {host}{self.process}[{pid}]: {level} {text}"
        return line.encode("utf-8", "replace")

    def __call__(self, message) -> None:
        record = message.record
        text = record["message"]
        if record["exception"] is not None:
            text = str(message).rstrip("\n")
        data = self.format(record["level"].no, _level_name(record["level"].name), text,
                           record["time"].timestamp())
        with self._lock:
            if self._sock is None and time.monotonic() < self._down_until:
                return  # the target was unreachable a moment ago: do not block every call on it
            try:
                self._send(data)
            except OSError:
                self._close()
                try:
                    self._send(data)  # one reconnect (TCP peer restarted, syslogd reloaded)
                except OSError:
                    self._close()
                    self._down_until = time.monotonic() + self.RETRY_AFTER

    def _connect(self) -> socket.socket:
        import socket

        t = self.target
        if t.kind == "unix":
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.connect(t.address)
                self._unix_stream = False
            except OSError as exc:
                sock.close()
                if exc.errno not in (91, 41, 107):  # EPROTOTYPE (Linux 91, macOS 41)
                    raise
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(t.address)
                self._unix_stream = True
            return sock
        host, port = _parse_hostport(t.address)
        infos = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM if t.kind == "udp" else socket.SOCK_STREAM)
        family, stype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, stype, proto)
        try:
            if t.kind == "udp" and t.from_addr:
                sock.bind(_parse_hostport(t.from_addr))
            sock.settimeout(2.0)
            sock.connect(sockaddr)
        except OSError:
            sock.close()
            raise
        return sock

    def _send(self, data: bytes) -> None:
        if self._sock is None:
            self._sock = self._connect()
        kind = self.target.kind
        if kind == "udp":
            self._sock.send(data[: self.MAX_UDP])
        elif kind == "tcp" or (kind == "unix" and self._unix_stream):
            self._sock.sendall(data.replace(b"\n", b"#012") + (b"\n" if kind == "tcp" else b"\0"))
        else:
            self._sock.send(data)

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def close(self) -> None:
        with self._lock:
            self._close()


_LEVEL_OUT = {"TRACE": "Trace", "DEBUG": "Debug", "INFO": "Info", "SUCCESS": "Info", "WARNING": "Warn",
              "ERROR": "Error", "CRITICAL": "Error"}


def _level_name(name: str) -> str:
    return _LEVEL_OUT.get(name, name)


def _ours(record) -> bool:
    name = record["name"] or ""
    return name == "p11nethsm" or name.startswith("p11nethsm.")


_STDERR_FORMAT = ("{time:YYYY-MM-DDTHH:mm:ss.SSSZZ} p11nethsm[{process}] {extra[lvl]} [{extra[where]}] {name}: "
                  "{message}")

_handler_ids: list[int] = []
_syslog_sinks: list[SyslogSink] = []


def _where(record) -> str:
    """`thread` or `thread call=N C_Fn slot=S session=H`: the call a line belongs to (calllog)."""
    where = record["thread"].name
    ctx = calllog.current()
    if ctx is not None:
        where += f" call={ctx.id} {ctx.function}"
        if ctx.slot is not None:
            where += f" slot={ctx.slot}"
        if ctx.session is not None:
            where += f" session={ctx.session}"
    return where


def _stream_format(record) -> str:
    extra = record["extra"]
    extra["lvl"] = _level_name(record["level"].name)
    extra["where"] = _where(record)
    return _STDERR_FORMAT + "\n{exception}"


# Fields of a JSON line, in this order; a line has those that apply (see README "Logging").
_JSON_EXTRA = ("kind", "machine", "source", "event", "target", "ckr", "reason", "ms", "instance", "method",
               "path", "status")


def json_line(record) -> str:
    """One JSON object for a record (log_format: json)."""
    import json

    extra = record["extra"]
    out = {
        "time": record["time"].isoformat(timespec="milliseconds"),
        "level": _level_name(record["level"].name),
        "pid": record["process"].id,
        "thread": record["thread"].name,
        "logger": record["name"],
    }
    ctx = calllog.current()
    if ctx is not None:
        out["call"] = ctx.id
        out["function"] = ctx.function
        if ctx.slot is not None:
            out["slot"] = ctx.slot
        if ctx.session is not None:
            out["session"] = ctx.session
    for key in _JSON_EXTRA:
        if key in extra and extra[key] is not None:
            out[key] = extra[key]
    out["message"] = record["message"]
    if record["exception"] is not None:
        import traceback

        exc = record["exception"]
        out["exception"] = "".join(traceback.format_exception(exc.type, exc.value, exc.traceback))
    return json.dumps(out, ensure_ascii=False, default=str)


def _json_format(record) -> str:
    record["extra"]["json"] = json_line(record)
    return "{extra[json]}\n"


def reset() -> None:
    """Remove our sinks (C_Finalize keeps them, so late messages still go somewhere; tests)."""
    log.discard_pending()
    if log.loaded():
        for hid in _handler_ids:
            try:
                log.real().remove(hid)
            except ValueError:
                pass
    _handler_ids.clear()
    for sink in _syslog_sinks:
        sink.close()
    _syslog_sinks.clear()
    logflags.DEBUG = logflags.TRACE = False
    logflags.LEVEL_NO = 1000


def _add(sink, level: str, **kw) -> None:
    """Add a sink now if loguru is loaded, else when the first line is written."""

    def add(loguru_logger) -> None:
        try:
            _handler_ids.append(loguru_logger.add(sink, level=level, filter=_ours, **kw))
        except Exception as exc:  # a log sink must never break the call that logs
            _stderr_sink(f"p11nethsm: cannot open log sink {sink!r}: {exc}\n")

    log.on_load(add)


def _stderr_sink(message) -> None:
    # Looked up at each write: a test (or a host) may replace sys.stderr.
    stream = sys.stderr
    if stream is not None:
        stream.write(message)
        stream.flush()


def _add_stream(level: str, fmt=None) -> None:
    _add(_stderr_sink, level, format=fmt or _stream_format, colorize=False, backtrace=False,
         diagnose=False)


def _add_file(path: str, level: str, fmt=None) -> None:
    with open(path, "a", encoding="utf-8"):  # fail now (C_Initialize), not at the first line
        pass
    _add(path, level, format=fmt or _stream_format, mode="a", encoding="utf-8", colorize=False,
         backtrace=False, diagnose=False, enqueue=False)


def _add_syslog(target: SyslogTarget, level: str, *, facility: int, hostname: str | None,
                process: str | None, pid: int | None) -> None:
    sink = SyslogSink(target, facility=facility, hostname=hostname, process=process, pid=pid)
    _syslog_sinks.append(sink)
    _add(sink, level, format="{message}\n{exception}", backtrace=False, diagnose=False, colorize=False)


TEE_ENV = "P11NETHSM_LOG_TEE"
TEE_SKIP_PID_ENV = "P11NETHSM_LOG_TEE_SKIP_PID"


def tee_path() -> str | None:
    """The Trace-level tee file of this process (P11NETHSM_LOG_TEE), or None."""
    directory = os.environ.get(TEE_ENV)
    if not directory:
        return None
    if os.environ.get(TEE_SKIP_PID_ENV, "") == str(os.getpid()):
        return None
    return os.path.join(directory, f"p11nethsm-{os.getpid()}.log")


def _add_tee() -> bool:
    path = tee_path()
    if path is None:
        return False
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _add_file(path, "TRACE")
    except Exception:  # a debugging aid never fails C_Initialize
        return False
    return True


def default_socket() -> str | None:
    for path in DEFAULT_SOCKETS:
        if os.path.exists(path):
            return path
    return None


def configure(config) -> None:
    """Install the sinks described by a p11nethsm.config.model.Config (replacing ours)."""
    reset()
    level = LEVELS[(config.log_level or DEFAULT_LEVEL).lower()]
    facility = FACILITIES[config.syslog_facility.lower()]
    syslog: SyslogTarget | None = None
    if config.syslog_socket:
        syslog = SyslogTarget("unix", config.syslog_socket)
    elif config.syslog_udp is not None:
        syslog = SyslogTarget("udp", config.syslog_udp.to_addr, config.syslog_udp.from_addr)
    elif config.syslog_tcp:
        syslog = SyslogTarget("tcp", config.syslog_tcp)
    fmt = _json_format if getattr(config, "log_format", "text") == "json" else None
    if config.log_file:
        if config.log_file == "-":
            _add_stream(level, fmt)
        else:
            _add_file(config.log_file, level, fmt)
    if syslog is None and not config.log_file:
        path = default_socket()
        if path is not None:
            syslog = SyslogTarget("unix", path)
        _add_stream(level, fmt)
    if syslog is not None:
        _add_syslog(syslog, level, facility=facility, hostname=config.syslog_hostname,
                    process=config.syslog_process, pid=config.syslog_pid)
    _set_flags("TRACE" if _add_tee() else level)


def configure_fallback(level: str = "Info") -> None:
    """Before/without a usable config (it failed to load): syslog (default socket) + stderr."""
    reset()
    lv = LEVELS[level.lower()]
    _add_stream(lv)
    path = default_socket()
    if path is not None:
        _add_syslog(SyslogTarget("unix", path), lv, facility=FACILITIES["user"], hostname=None,
                    process=None, pid=None)
    _set_flags("TRACE" if _add_tee() else lv)


def _set_flags(level: str) -> None:
    no = _LOGURU_NO[level]
    logflags.LEVEL_NO = no
    logflags.DEBUG = no <= _LOGURU_NO["DEBUG"]
    logflags.TRACE = no <= _LOGURU_NO["TRACE"]
