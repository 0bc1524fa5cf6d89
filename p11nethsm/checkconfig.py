"""`p11nethsm check-config` without --offline: check every slot/instance over the network
(reachable, TLS as the module would judge it, device state and firmware, the configured logins),
with the module's own REST client (see README "check-config").
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

from p11nethsm import presence
from p11nethsm.api.client import Credentials, NetHSM
from p11nethsm.api.errors import NetHSMError, Unauthorized
from p11nethsm.log import real
from p11nethsm.net.tls import TLSMode, format_fingerprint, make_ssl_context, pin_matches, tls_mode

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
        if _check_state(client, where, report):
            for role, user in (("operator", slot.operator), ("administrator", slot.administrator)):
                if user is not None:
                    _check_login(client, slot, role, user, where, report)
    finally:
        client.close()


def _check_state(client: NetHSM, where: str, report: _Report) -> bool:
    """Device state and firmware; False if the token is absent (no login can be checked)."""
    try:
        state = client.health_state()
    except NetHSMError as exc:
        report.fail(where, "device state", f"GET /health/state failed: {exc.describe()}")
        return False
    caps = client.capabilities()
    print(f"    firmware: NetHSM {caps.api} API" + (
        "" if caps.labels is None else
        f" (key labels {'yes' if caps.labels else 'no'}, GET /keys?label= {'yes' if caps.label_query else 'no'},"
        f" /health/diagnose {'yes' if caps.diagnose else 'no'})"))
    if state == presence.OPERATIONAL:  # the same test as the token presence
        report.ok("device state", "Operational (the token is present)")
        return True
    report.fail(where, "device state", f"{state}, the token is absent: {presence.explain(client, state)}")
    return False


def _check_login(client: NetHSM, slot, role: str, user, where: str, report: _Report) -> None:
    what = f"{role} '{user.username}'"
    if not user.has_password:
        report.note(where, what, "needs C_Login (no password in the config): "
                    + ("pkcs11-tool --login --pin ..." if role == "operator"
                       else "pkcs11-tool --login --login-type so --so-pin ..."))
        return
    try:
        info = client.get_user(Credentials(user.username, user.password), user.username)
    except Unauthorized:
        report.fail(where, what, f"password rejected (401) by GET /users/{user.username}; "
                                 f"fix slots[].{role}.password in {slot.source}")
        return
    except NetHSMError as exc:
        report.fail(where, what, f"login check failed: {exc.describe()}")
        return
    role_seen = info.get("role", "?")
    expected = "Operator" if role == "operator" else "Administrator"
    if role_seen != expected:
        report.fail(where, what, f"logs in, but the NetHSM role is {role_seen}, expected {expected}")
    else:
        report.ok(what, f"login works (role {role_seen})")


def check_online(config, warnings: list[str], args) -> int:
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
