"""A loguru sink that writes to syslog: a unix socket, UDP or TCP (p11nethsm.logging_setup adds it).

Syslog format: RFC 3164 (BSD syslog), one message per record:
    <PRI>Mmm dd hh:mm:ss HOSTNAME PROCESS[PID]: LEVEL message
PRI = facility * 8 + severity; the timestamp is local time with a space-padded day. On a local
unix socket HOSTNAME is omitted, as glibc's syslog(3) does, so the local daemon fills it in.
UDP: one datagram per message (cut to 8 KiB). TCP: RFC 6587 non-transparent framing (each
message ends with LF; LFs inside a message, e.g. tracebacks, are sent as "#012" like rsyslog).
`syslog_hostname` is used for UDP/TCP; `syslog_process` defaults to the program name
(basename of sys.argv[0]) and `syslog_pid` to the real pid.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import socket

__all__ = ["SyslogSink", "SyslogTarget", "level_name", "rfc3164_timestamp"]

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
            import socket  # lazy: not cheap, and C_Initialize needs none

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
        data = self.format(record["level"].no, level_name(record["level"].name), text,
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
        import socket  # lazy: as above

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


def level_name(name: str) -> str:
    return _LEVEL_OUT.get(name, name)
