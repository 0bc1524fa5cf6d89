"""`p11nethsm` command line (a separate program: printing to stdout is fine here).

    p11nethsm module-path     print the path of the PKCS#11 module (.so) to give to applications
    p11nethsm check-config    load the configuration as C_Initialize would, print its problems,
                              then check every slot/instance: reachable, TLS, device state, logins
    p11nethsm trace LOG       render a module log (text or JSON) as per-session timelines + summary
    p11nethsm emulator ...    start the NetHSM emulator (the `nethsm-emulator` of this venv)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from p11nethsm import trace
from p11nethsm._shim_path import module_path
from p11nethsm.config.loader import ENV_VAR, ConfigError, load, load_files


def _module_path(_args) -> int:
    print(module_path())
    return 0


def _check_config(args) -> int:
    try:
        result = load_files([args.file]) if args.file else load()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    config = result.config
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(f"files: {', '.join(config.sources)}" + (f" (from {ENV_VAR})" if os.environ.get(ENV_VAR) and not args.file else ""))
    for i, slot in enumerate(config.slots):
        users = []
        for role, user in (("operator", slot.operator), ("administrator", slot.administrator)):
            if user is not None:
                users.append(f"{role} '{user.username}' ({'password configured' if user.has_password else 'PIN via C_Login'})")
        print(f"slot {i}: {slot.label}: {len(slot.instances)} instance(s); {_namespace_text(slot)}; {'; '.join(users)}")
    if not getattr(args, "offline", True):
        # lazy: the REST client (statemachine, asyncio, ssl) quadruples the start-up of every
        # other command (module-path: 0.09 -> 0.38 s CPU measured)
        from p11nethsm import checkconfig

        return checkconfig.check_online(config, result.warnings, args)
    print("ok" if not result.warnings else f"ok, {len(result.warnings)} warning(s)")
    return 0


def _namespaces(slot) -> set[str]:
    """The NetHSM namespaces of the slot's users ('' = root); `ns~user` is a namespace user."""
    return {u.username.partition("~")[0] if "~" in u.username else ""
            for u in (slot.operator, slot.administrator) if u is not None}


def _namespace_text(slot) -> str:
    spaces = _namespaces(slot)
    if len(spaces) > 1:
        return ("users in different namespaces (" + ", ".join(repr(n) if n else "root" for n in sorted(spaces))
                + "): each sees only its own namespace's keys")
    (ns,) = spaces or {""}
    return f"namespace '{ns}' (its keys only)" if ns else "root namespace (keys outside any namespace)"


# ---- emulator: alias of the `nethsm-emulator` console script of this venv ---------------------

def _emulator(args) -> int:
    candidate = Path(sys.executable).parent / "nethsm-emulator"
    exe = str(candidate) if candidate.exists() else shutil.which("nethsm-emulator")
    if exe is None:
        print(f"error: nethsm-emulator is not installed next to {sys.executable}; "
              "install it with: .venv/bin/pip install -e ./emulator", file=sys.stderr)
        return 1
    argv = [exe, *args.emulator_args]
    sys.stdout.flush()
    os.execv(exe, argv)
    return 1  # pragma: no cover - execv does not return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p11nethsm", description="PKCS#11 module for Nitrokey NetHSM")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("module-path", help="print the path of the PKCS#11 module").set_defaults(func=_module_path)
    check = sub.add_parser("check-config", help="validate the configuration, then check every instance (TLS, state, logins)")
    check.add_argument("file", nargs="?", help="a config file (default: the module's search paths)")
    check.add_argument("--offline", action="store_true",
                       help="only load and validate the files; no network checks")
    check.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                       help="per network check (default 10)")
    check.add_argument("-v", "--verbose", action="store_true",
                       help="also print the module's debug log (requests, state transitions) to stderr")
    check.epilog = ("Exit status: 0 all checks passed, 1 the configuration cannot be loaded, "
                    "2 it loads but a slot/instance check failed.")
    check.set_defaults(func=_check_config)
    trace.add_parser(sub, "trace")
    emu = sub.add_parser("emulator", add_help=False, prefix_chars="\0",
                         help="start the NetHSM emulator (alias of nethsm-emulator; try: emulator --help)",
                         description="Runs the nethsm-emulator of this environment with the given arguments.")
    emu.add_argument("emulator_args", nargs=argparse.REMAINDER, help="arguments for nethsm-emulator")
    emu.set_defaults(func=_emulator)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
