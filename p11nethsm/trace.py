"""`p11nethsm trace LOGFILE`: a module log (text or JSON lines) as per-session timelines.

Reads what the module writes with `log_level: Debug` (Trace adds nothing needed here): call lines
(`C_Sign(...) = CKR_OK [1.2 ms]`), state transitions (`machine: source --event--> target`),
network requests (`POST https://.../keys/k/sign -> 200 (1.1 ms)`, errors with their status) and
warnings. Each line's call id, slot and session come from the `[thread call=N C_Fn slot=S
session=H]` part of a text line or the fields of a JSON line.

Output: one timeline per (pid, session); lines of a slot without a session, and lines outside
any call (health checks, start-up), get a timeline of their own. Then a summary: calls by CKR,
the slowest calls, and the instance health changes. `--follow` prints events as they are
appended (one line each, prefixed with pid/session) and the summary at Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime

__all__ = ["Event", "parse_line", "main"]

_TEXT = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\dT[\d:.]+[+-]\d{4}) p11nethsm\[(?P<pid>\d+)\] (?P<level>\w+) "
    r"(?:\[(?P<where>[^\]]*)\] )?(?P<logger>[\w.]+): (?P<message>.*)$")
_WHERE = re.compile(r"^(?P<thread>.*?)(?: call=(?P<call>\d+) (?P<function>\w+)(?: slot=(?P<slot>\d+))?"
                    r"(?: session=(?P<session>\d+))?)?$")
_CALL = re.compile(r"^(?P<function>C_\w+)\((?P<args>.*)\) = (?P<ckr>CKR_\w+|0x[0-9a-f]+)"
                   r"(?: \((?P<reason>.*)\))?(?: \[(?P<ms>[\d.]+) ms\])?$")
_TRANSITION = re.compile(r"^(?P<machine>.+?): (?P<source>\w+) --(?P<event>\w+)--> (?P<target>\w+)$")
_REQUEST = re.compile(r"^(?P<method>GET|POST|PUT|DELETE) (?P<url>https?://\S+?)(?P<path>/(?:keys|users|health|info|"
                      r"random|system|config|namespaces|metrics|lock|unlock|provision)\S*)"
                      r"(?: -> (?P<status>\d+|None)(?:: (?P<reason>.*?))?(?: \((?P<ms>[\d.]+) ms\))?|: no answer \((?P<error>.*)\))$")


class Event:
    __slots__ = ("time", "pid", "level", "thread", "call", "function", "slot", "session", "kind", "text",
                 "ckr", "reason", "ms", "machine", "source", "event", "target", "instance", "status", "raw")

    def __init__(self, **kw):
        for name in self.__slots__:
            setattr(self, name, kw.get(name))

    @property
    def when(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.time.replace("Z", "+00:00")) if self.time else None
        except ValueError:
            return None


def _int(value):
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _float(value):
    try:
        return float(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _classify(ev: Event, message: str) -> None:
    """kind/ckr/machine/instance... from the message text (text lines, or JSON without fields)."""
    m = _CALL.match(message)
    if m:
        ev.kind, ev.function = "call", ev.function or m["function"]
        ev.ckr, ev.reason, ev.ms = m["ckr"], m["reason"] or "", _float(m["ms"])
        return
    m = _TRANSITION.match(message)
    if m:
        ev.kind, ev.machine, ev.source, ev.event, ev.target = "transition", m["machine"], m["source"], m["event"], m["target"]
        return
    m = _REQUEST.match(message)
    if m:
        ev.kind, ev.instance = "request", m["url"]
        ev.status = _int(m["status"])
        ev.ms = _float(m["ms"])
        ev.reason = m["error"] or m["reason"] or ""
        return
    ev.kind = "message"


def parse_line(line: str) -> Event | None:
    """An Event from one log line (text or JSON), or None for what is not a module line."""
    line = line.rstrip("\n")
    if not line.strip():
        return None
    if line.lstrip().startswith("{"):
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict) or "message" not in obj:
            return None
        ev = Event(time=obj.get("time"), pid=_int(obj.get("pid")), level=obj.get("level"), thread=obj.get("thread"),
                   call=_int(obj.get("call")), function=obj.get("function"), slot=_int(obj.get("slot")),
                   session=_int(obj.get("session")), text=str(obj["message"]), raw=line)
        kind = obj.get("kind")
        _classify(ev, ev.text)
        if kind in ("call", "transition", "request"):
            ev.kind = kind
            for name in ("ckr", "reason", "machine", "source", "event", "target", "instance"):
                if obj.get(name) is not None:
                    setattr(ev, name, obj[name])
            ev.ms = _float(obj.get("ms")) if obj.get("ms") is not None else ev.ms
            ev.status = _int(obj.get("status")) if obj.get("status") is not None else ev.status
        return ev
    m = _TEXT.match(line)
    if not m:
        return None
    ev = Event(time=m["time"], pid=int(m["pid"]), level=m["level"], text=m["message"], raw=line)
    w = _WHERE.match(m["where"] or "")
    if w:
        ev.thread, ev.call, ev.function = w["thread"] or None, _int(w["call"]), w["function"]
        ev.slot, ev.session = _int(w["slot"]), _int(w["session"])
    _classify(ev, ev.text)
    return ev


# ---- filtering and rendering -------------------------------------------------------------------------

def _parse_time(text: str | None):
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"trace: not an ISO time: {text!r} (e.g. 2026-01-31T12:00:00+00:00)") from None
    if value.tzinfo is None:
        value = value.astimezone()
    return value


class Filter:
    def __init__(self, args):
        self.sessions = set(args.session or ())
        self.slots = set(args.slot or ())
        self.pids = set(args.pid or ())
        self.since, self.until = _parse_time(args.since), _parse_time(args.until)

    def __call__(self, ev: Event) -> bool:
        if self.pids and ev.pid not in self.pids:
            return False
        if self.sessions and ev.session not in self.sessions:
            return False
        if self.slots and ev.slot not in self.slots:
            return False
        if self.since or self.until:
            when = ev.when
            if when is None or (self.since and when < self.since) or (self.until and when > self.until):
                return False
        return True


def _group(ev: Event) -> tuple:
    if ev.session is not None:
        return (ev.pid or 0, 0, ev.session, f"pid {ev.pid} session {ev.session}" + (f" (slot {ev.slot})" if ev.slot is not None else ""))
    if ev.slot is not None:
        return (ev.pid or 0, 1, ev.slot, f"pid {ev.pid} slot {ev.slot} (no session)")
    return (ev.pid or 0, 2, 0, f"pid {ev.pid} outside sessions (start-up, background threads)")


def render(ev: Event) -> str:
    clock = ev.time[11:23] if ev.time and len(ev.time) >= 23 else (ev.time or "?")
    call = f"#{ev.call} " if ev.call is not None else ""
    if ev.kind == "call":
        ms = f" {ev.ms:.1f} ms" if ev.ms is not None else ""
        reason = f" ({ev.reason})" if ev.reason and ev.ckr != "CKR_OK" else ""
        mark = "   " if ev.ckr == "CKR_OK" else "!! "
        return f"{clock} {mark}{call}{_call_text(ev)} = {ev.ckr}{reason}{ms}"
    if ev.kind == "transition":
        return f"{clock}     {call}{ev.machine}: {ev.source} --{ev.event}--> {ev.target}"
    if ev.kind == "request":
        status = ev.status if ev.status is not None else "no answer"
        ms = f" {ev.ms:.1f} ms" if ev.ms is not None else ""
        reason = f" ({ev.reason})" if ev.reason else ""
        where = ev.text.split(" -> ")[0].split(": no answer")[0]
        return f"{clock}     {call}net {where} -> {status}{reason}{ms}"
    level = (ev.level or "").upper()
    mark = "!! " if level in ("WARN", "WARNING", "ERROR") else "   "
    return f"{clock} {mark}{call}{level.lower()}: {ev.text}"


def _call_text(ev: Event) -> str:
    m = _CALL.match(ev.text)
    if m:
        return f"{m['function']}({m['args']})"
    return ev.function or ev.text


class Summary:
    def __init__(self):
        self.by_ckr: Counter = Counter()
        self.calls: list[Event] = []
        self.health: list[Event] = []
        self.events = 0

    def add(self, ev: Event) -> None:
        self.events += 1
        if ev.kind == "call":
            self.by_ckr[ev.ckr] += 1
            if ev.ms is not None:
                self.calls.append(ev)
        elif ev.kind == "transition" and (ev.machine or "").startswith("instance "):
            self.health.append(ev)

    def lines(self, slowest: int = 5) -> list[str]:
        out = ["summary:", f"  {self.events} events, {sum(self.by_ckr.values())} calls"]
        out.append("  calls by CKR: " + (", ".join(f"{k} {v}" for k, v in self.by_ckr.most_common()) or "none"))
        top = sorted(self.calls, key=lambda e: e.ms, reverse=True)[:slowest]
        out.append("  slowest calls:" + ("" if top else " none"))
        for ev in top:
            session = f", session {ev.session}" if ev.session is not None else ""
            out.append(f"    {ev.ms:9.1f} ms  {ev.function} (pid {ev.pid}, call {ev.call}{session}) = {ev.ckr}")
        out.append("  instance health changes:" + ("" if self.health else " none"))
        for ev in self.health:
            out.append(f"    {ev.time} {ev.machine.removeprefix('instance ')}: {ev.source} --{ev.event}--> {ev.target}")
        return out


def _read(path: str):
    if path == "-":
        yield from sys.stdin
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        yield from fh


def run(args, out=None) -> int:
    try:
        return _run(args, out or sys.stdout)
    except BrokenPipeError:  # `| head`: the reader is gone; nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args, out) -> int:
    keep = Filter(args)
    summary = Summary()
    if args.follow:
        return _follow(args, keep, summary, out)
    groups: dict[tuple, list[Event]] = defaultdict(list)
    try:
        lines = list(_read(args.logfile))
    except OSError as exc:
        print(f"trace: {exc}", file=sys.stderr)
        return 1
    events = [ev for ev in map(parse_line, lines) if ev is not None]
    # A call's early lines (C_OpenSession before its handle exists) join the session it names.
    session_of = {(ev.pid, ev.call): ev.session for ev in events if ev.kind == "call" and ev.session is not None}
    for ev in events:
        if ev.session is None and ev.call is not None:
            ev.session = session_of.get((ev.pid, ev.call))
        if not keep(ev):
            continue
        summary.add(ev)
        groups[_group(ev)].append(ev)
    for key in sorted(groups):
        print(f"== {key[3]}", file=out)
        for ev in groups[key]:
            print("  " + render(ev), file=out)
        print(file=out)
    print("\n".join(summary.lines(args.slowest)), file=out)
    return 0


def _follow(args, keep: Filter, summary: Summary, out) -> int:
    try:
        fh = open(args.logfile, encoding="utf-8", errors="replace")
    except OSError as exc:
        print(f"trace: {exc}", file=sys.stderr)
        return 1
    buf = ""
    try:
        while True:
            chunk = fh.readline()
            if not chunk:
                out.flush()
                time.sleep(0.2)
                continue
            buf += chunk
            if not buf.endswith("\n"):
                continue  # a line still being written
            ev, buf = parse_line(buf), ""
            if ev is None or not keep(ev):
                continue
            summary.add(ev)
            print(f"[{_group(ev)[3]}] {render(ev)}", file=out, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        fh.close()
    print("\n".join(summary.lines(args.slowest)), file=out, flush=True)
    return 0


def add_parser(sub, name: str = "trace") -> None:
    p = sub.add_parser(name, help="render a module log (text or JSON) as per-session timelines with a summary",
                       description="Renders a p11nethsm log written with log_level: Debug (text or log_format: json) "
                                   "as per-session timelines: calls with their CKR, state transitions, network "
                                   "requests with instance and status, errors with the CKR name and reason; then "
                                   "a summary (calls by CKR, slowest calls, instance health changes).")
    p.add_argument("logfile", help="the log file (log_file of the config), or - for stdin")
    p.add_argument("--session", type=int, action="append", metavar="H", help="only this session (repeatable)")
    p.add_argument("--slot", type=int, action="append", metavar="ID", help="only this slot (repeatable)")
    p.add_argument("--pid", type=int, action="append", help="only this process (repeatable)")
    p.add_argument("--since", metavar="TIME", help="only lines at or after this ISO time")
    p.add_argument("--until", metavar="TIME", help="only lines at or before this ISO time")
    p.add_argument("--slowest", type=int, default=5, metavar="N", help="slowest calls in the summary (default 5)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep reading as the file grows (like tail -f), one line per event; Ctrl-C prints the summary")
    p.set_defaults(func=run)


def main(argv=None) -> int:  # pragma: no cover - p11nethsm.cli is the entry point
    parser = argparse.ArgumentParser(prog="p11nethsm")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["trace", *(argv or sys.argv[1:])])
    return args.func(args)
