"""`p11nethsm` command line (a separate program: printing to stdout is fine here).

    p11nethsm module-path     print the path of the PKCS#11 module (.so) to give to applications
    p11nethsm check-config    load the configuration as C_Initialize would, print its problems
"""

from __future__ import annotations

import argparse
import os
import sys


def _module_path(_args) -> int:
    from p11nethsm._shim_path import module_path

    print(module_path())
    return 0


def _check_config(args) -> int:
    from p11nethsm.config.loader import ENV_VAR, ConfigError, load, load_files

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
        print(f"slot {i}: {slot.label}: {len(slot.instances)} instance(s); {'; '.join(users)}")
    print("ok" if not result.warnings else f"ok, {len(result.warnings)} warning(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="p11nethsm", description="PKCS#11 module for Nitrokey NetHSM")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("module-path", help="print the path of the PKCS#11 module").set_defaults(func=_module_path)
    check = sub.add_parser("check-config", help="load the configuration and print its problems")
    check.add_argument("file", nargs="?", help="a config file (default: the module's search paths)")
    check.set_defaults(func=_check_config)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
