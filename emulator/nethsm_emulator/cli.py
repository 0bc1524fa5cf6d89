"""Console script `nethsm-emulator`."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from .control import ControlServer
from .emulator import Emulator
from .provision import provision_standard


def _addr(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="nethsm-emulator", description="NetHSM REST API emulator")
    ap.add_argument("--listen", type=_addr, action="append", metavar="HOST:PORT",
                    help="HTTPS address of one instance; repeat for a cluster sharing one state "
                         "(default 127.0.0.1:8443; port 0 picks a free port)")
    ap.add_argument("--state-dir", help="persist device state and TLS identity here")
    ap.add_argument("--control", type=_addr, metavar="HOST:PORT",
                    help="plain-HTTP JSON control endpoint (faults, up/down, state, request log)")
    ap.add_argument("--labels", "--api-5.0", dest="labels", action="store_true",
                    help="serve the NetHSM 5.0 API: key labels, GET /keys?label=, /health/diagnose, "
                         "the Failed state (default: the 4.0 API)")
    ap.add_argument("--no-throttle", action="store_true", help="disable the failed-login 429 throttle")
    ap.add_argument("--capacity", type=int, metavar="N",
                    help="capacity model of every instance: at most N requests processed at once, "
                         "the others wait in line (default: unlimited; control: PUT "
                         "/instances/{i}/capacity)")
    ap.add_argument("--service-time", type=float, default=0.0, metavar="SECONDS",
                    help="with the capacity model: each request holds its slot at least this long")
    ap.add_argument("--provision", action="store_true",
                    help="if unprovisioned, provision with the standard test credentials, "
                         "operator user and standard key set (uses the REST API)")
    args = ap.parse_args(argv)

    emu = Emulator(args.listen or [("127.0.0.1", 8443)], state_dir=args.state_dir,
                   labels=args.labels, throttle=not args.no_throttle).start()
    if args.capacity is not None and args.capacity < 1:
        ap.error("--capacity must be >= 1")
    if args.capacity is not None or args.service_time:
        for inst in emu.instances:
            inst.set_capacity(args.capacity, args.service_time)
    control = ControlServer(emu, *args.control).start() if args.control else None
    if args.provision and not emu.device.provisioned:
        provision_standard(emu.instances[0].url, fingerprint=emu.fingerprint)
    for inst in emu.instances:
        print(f"listening {inst.url} sha256 {emu.fingerprint}", flush=True)
    if control:
        print(f"control {control.url}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    emu.stop()
    if control:
        control.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
