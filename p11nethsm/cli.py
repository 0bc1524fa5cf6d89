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
        print(f"slot {i}: {slot.label}: {len(slot.instances)} instance(s); {_namespace_text(slot)}; {'; '.join(users)}")
    if not getattr(args, "offline", True):
        return _check_online(config, result.warnings, args)
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


# ---- check-config: the network checks (added for operators; see README "check-config") --------

EXIT_OK, EXIT_CONFIG, EXIT_CHECKS = 0, 1, 2


class _Report:
    """Collects the verdict of each check: `problems` fail the run, `notes` do not."""

    def __init__(self):
        self.problems: list[str] = []
        self.notes: list[str] = []

    def ok(self, what: str, text: str) -> None:
        print(f"    {what}: ok, {text}")

    def note(self, where: str, what: str, text: str) -> None:
        print(f"    {what}: NOTE {text}")
        self.notes.append(f"{where}: {what}: {text}")

    def fail(self, where: str, what: str, text: str) -> None:
        print(f"    {what}: FAIL {text}")
        self.problems.append(f"{where}: {what}: {text}")


def _peer_certificate(url: str, timeout: float) -> tuple[bytes | None, float]:
    """(DER of the server certificate or None for http://, seconds taken). Raises OSError."""
    import socket
    import ssl
    import time
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    start = time.monotonic()
    with socket.create_connection((parts.hostname, port), timeout=timeout) as sock:
        if parts.scheme != "https":
            return None, time.monotonic() - start
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # only to see the certificate; verification is judged below
        with ctx.wrap_socket(sock, server_hostname=parts.hostname) as tls:
            return tls.getpeercert(binary_form=True), time.monotonic() - start


def _verify_chain(inst, timeout: float) -> str | None:
    """None if the module's TLS context (system trust or ca_file) accepts the server, else why not."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    from p11nethsm.net.tls import make_ssl_context

    parts = urlsplit(inst.url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout) as sock:
            with make_ssl_context(inst).wrap_socket(sock, server_hostname=parts.hostname):
                return None
    except ssl.SSLCertVerificationError as exc:
        return exc.verify_message or str(exc)
    except (OSError, ssl.SSLError) as exc:
        return str(exc)


def _check_tls(where: str, inst, der: bytes | None, report: _Report, timeout: float) -> bool:
    """Judge the certificate seen against the instance's TLS settings; False if the module would refuse it."""
    import hashlib

    from p11nethsm.net.tls import TLSMode, format_fingerprint, pin_matches, tls_mode

    if der is None:
        report.note(where, "TLS", "plain http:// URL: no TLS at all (use https:// with a real NetHSM)")
        return True
    seen = format_fingerprint(hashlib.sha256(der).digest())
    mode = tls_mode(inst)
    if mode is TLSMode.PINNED:
        matched, _ = pin_matches(der, inst.sha256_fingerprints)
        if matched:
            report.ok("TLS", f"certificate sha256 {seen} is pinned in sha256_fingerprints")
            return True
        pinned = ", ".join(format_fingerprint(p) for p in inst.sha256_fingerprints)
        report.fail(where, "TLS", f"certificate sha256 {seen} is not in sha256_fingerprints ({pinned}); "
                                  "if the NetHSM's certificate was replaced on purpose, pin the new value")
        return False
    if mode is TLSMode.INSECURE:
        report.note(where, "TLS", f"danger_insecure_cert: certificate not checked (it is sha256 {seen}; "
                                  "pin it with sha256_fingerprints instead)")
        return True
    why = _verify_chain(inst, timeout)
    source = f"ca_file {inst.ca_file}" if mode is TLSMode.CA_FILE else "the system trust store"
    if why is None:
        report.ok("TLS", f"certificate verified against {source} (sha256 {seen})")
        return True
    report.fail(where, "TLS", f"certificate not trusted by {source}: {why}; for a self-signed NetHSM add "
                              f"sha256_fingerprints: [\"{seen}\"]")
    return False


def _check_instance(slot, index: int, inst, report: _Report, timeout: float) -> None:
    from p11nethsm.api import firmware
    from p11nethsm.api.client import Credentials, NetHSM
    from p11nethsm.api.errors import NetHSMError, Unauthorized

    where = f"slot {slot.label!r} instance {index} ({inst.url}, {slot.source})"
    print(f"  instance {index}: {inst.url}")
    try:
        der, took = _peer_certificate(inst.url, timeout)
    except OSError as exc:
        report.fail(where, "reachable", f"no: {exc}")
        return
    report.ok("reachable", f"connected in {took * 1000:.0f} ms")
    if not _check_tls(where, inst, der, report, timeout):
        print("    device state, logins: skipped (the module would refuse this TLS connection)")
        return
    # The module's own REST client, restricted to this instance, without retries.
    one = slot._replace(instances=(inst,), retries=None,
                        timeout_seconds=min(slot.timeout_seconds or timeout, timeout))
    client = NetHSM(one, threads=False)
    try:
        try:
            state = client.health_state()
        except NetHSMError as exc:
            report.fail(where, "device state", f"GET /health/state failed: {exc.describe()}")
            return
        caps = client.capabilities()
        print(f"    firmware: NetHSM {caps.api} API" + (
            "" if caps.labels is None else
            f" (key labels {'yes' if caps.labels else 'no'}, GET /keys?label= {'yes' if caps.label_query else 'no'},"
            f" /health/diagnose {'yes' if caps.diagnose else 'no'})"))
        if state == "Operational":
            report.ok("device state", "Operational (the token is present)")
        else:
            diagnosis = None
            if state == "Failed":
                try:
                    diagnosis = firmware.diagnosis_text(client.diagnose()) or "GET /health/diagnose gave no message"
                except NetHSMError as exc:
                    diagnosis = f"GET /health/diagnose failed: {exc.describe()}"
            report.fail(where, "device state", f"{state}, the token is absent: {firmware.advice(state, diagnosis)}")
            return
        for role, user in (("operator", slot.operator), ("administrator", slot.administrator)):
            if user is None:
                continue
            what = f"{role} '{user.username}'"
            if not user.has_password:
                report.note(where, what, "needs C_Login (no password in the config): "
                            + ("pkcs11-tool --login --pin ..." if role == "operator"
                               else "pkcs11-tool --login --login-type so --so-pin ..."))
                continue
            try:
                info = client.get_user(Credentials(user.username, user.password), user.username)
            except Unauthorized:
                report.fail(where, what, f"password rejected (401) by GET /users/{user.username}; "
                                         f"fix slots[].{role}.password in {slot.source}")
                continue
            except NetHSMError as exc:
                report.fail(where, what, f"login check failed: {exc.describe()}")
                continue
            role_seen = info.get("role", "?")
            expected = "Operator" if role == "operator" else "Administrator"
            if role_seen != expected:
                report.fail(where, what, f"logs in, but the NetHSM role is {role_seen}, expected {expected}")
            else:
                report.ok(what, f"login works (role {role_seen})")
    finally:
        client.close()


def _check_online(config, warnings: list[str], args) -> int:
    from p11nethsm.log import real

    # The module's client logs through its own loguru logger; the CLI prints its own verdicts
    # instead. It is switched off, and back on afterwards (main() may run inside a host).
    logger = real()
    sink = None
    if args.verbose:
        sink = logger.add(sys.stderr, level="DEBUG", format="{time:HH:mm:ss.SSS} {level} {name}: {message}")
    else:
        logger.disable("p11nethsm")
    try:
        return _check_all(config, warnings, args)
    finally:
        if sink is not None:
            logger.remove(sink)
        else:
            logger.enable("p11nethsm")


def _check_all(config, warnings: list[str], args) -> int:
    report = _Report()
    instances = 0
    for i, slot in enumerate(config.slots):
        print(f"checking slot {i} ({slot.label}, from {slot.source}):")
        for j, inst in enumerate(slot.instances):
            instances += 1
            _check_instance(slot, j, inst, report, args.timeout)
    counts = f"{len(config.slots)} slot(s), {instances} instance(s)"
    if report.problems:
        print(f"verdict: FAILED, {len(report.problems)} problem(s) in {counts}:")
        for problem in report.problems:
            print(f"  - {problem}")
        return EXIT_CHECKS
    extra = [f"{len(warnings)} config warning(s)"] if warnings else []
    extra += [f"{len(report.notes)} note(s)"] if report.notes else []
    print(f"verdict: OK, {counts} checked" + (f" ({', '.join(extra)})" if extra else ""))
    return EXIT_OK


# ---- emulator: alias of the `nethsm-emulator` console script of this venv ---------------------

def _emulator(args) -> int:
    import shutil

    from pathlib import Path

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
    from p11nethsm import trace

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
