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

Syslog format and transports: p11nethsm.syslog_sink.

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

from p11nethsm import calllog, log, logflags
from p11nethsm.syslog_sink import SyslogSink, SyslogTarget, level_name

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
    extra["lvl"] = level_name(record["level"].name)
    extra["where"] = _where(record)
    return _STDERR_FORMAT + "\n{exception}"


# Fields of a JSON line, in this order; a line has those that apply (see README "Logging").
_JSON_EXTRA = ("kind", "machine", "source", "event", "target", "ckr", "reason", "ms", "instance", "method",
               "path", "status")


def json_line(record) -> str:
    """One JSON object for a record (log_format: json)."""
    import json  # lazy: only with log_format json

    extra = record["extra"]
    out = {
        "time": record["time"].isoformat(timespec="milliseconds"),
        "level": level_name(record["level"].name),
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
        import traceback  # lazy: only for a record with an exception

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
