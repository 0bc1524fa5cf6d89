"""pytest plugin (registered with `-p tests.security.logtee` in pyproject addopts): every module
process of the whole test run writes a Trace-level copy of its log into one directory, and
tests/security/test_no_secrets_in_logs.py scans it for passphrases; this plugin runs that test
(marked `after_all_tests`) after every other test of the session.

- Subprocesses (the .so in pkcs11-tool, C hosts, python hosts...) inherit P11NETHSM_LOG_TEE and
  write `p11nethsm-<pid>.log` at Trace (p11nethsm/logging_setup.py).
- The pytest process itself is exempt from that (P11NETHSM_LOG_TEE_SKIP_PID): its tests check the
  level flags. Instead a loguru sink here records, at Trace, every p11nethsm record the in-process
  tests emit, into `pytest-<pid>.log`.
The directory is removed at the end of a passing run (kept, and printed, when something failed).

Exempt (EXEMPT_TESTS): throughput tests whose bound a Trace line per call would break; they run at
log_level Error without any PIN, and the variable is removed only while their body runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

TEE_ENV = "P11NETHSM_LOG_TEE"
SKIP_ENV = "P11NETHSM_LOG_TEE_SKIP_PID"

# Every PIN / passphrase / password the test suite (tests/, bench/, demo/) hands to the module or
# the emulator. Matched as whole tokens (not inside a longer alphanumeric run). Not listed:
# "Operator" (a user's real name, logged legitimately) and SoftHSM's numeric PINs (never given to
# this module).
SECRETS = (
    # the standard NetHSM test credentials (emulator, README, demo)
    "Administrator", "UnlockPassphrase", "opPassphrase",
    # C_SetPIN / wrong-PIN tests
    "opPassphrase2", "wrongPassphrase", "WrongPassphrase", "wrong-passphrase", "wrong-password",
    "brandNewPassphrase", "newPassphrase", "not-the-passphrase", "NewUnlockPass",
    "Passphrase1", "Passphrase2", "other-pin-123", "0123456789",
    "configuredSecret1", "typedOperatorPin", "wrongOperatorPin", "localpass", "not-a-secret",
    # tests/security
    "zzFinalNewPin1", "garbageOpPass1",
)

# node ids (relative to the rootdir) run without the tee
# (empty now: the calls-per-second assert moved to bench/, which does not run under pytest)
EXEMPT_TESTS: frozenset[str] = frozenset()

_state: dict = {}


def tee_dir() -> str | None:
    return os.environ.get(TEE_ENV)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "after_all_tests: run after every other test of the session (it checks what they left)")
    d = os.environ.get(TEE_ENV)
    if not d:
        d = tempfile.mkdtemp(prefix="p11nethsm-logtee-")
        os.environ[TEE_ENV] = d
        _state["owner"] = True
    os.environ[SKIP_ENV] = str(os.getpid())
    _state["dir"] = d
    from p11nethsm.log import logger  # the module's own loguru logger

    def _ours(record) -> bool:
        name = record["name"] or ""
        return name == "p11nethsm" or name.startswith("p11nethsm.")

    _state["sink"] = logger.add(
        os.path.join(d, f"pytest-{os.getpid()}.log"), level="TRACE", filter=_ours, colorize=False,
        format="{time:YYYY-MM-DDTHH:mm:ss.SSSZZ} pytest[{process}] {level} {name}: {message}\n{exception}",
        backtrace=False, diagnose=False)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Tests marked after_all_tests go to the end, in their collected order (not by file name)."""
    last = [item for item in items if item.get_closest_marker("after_all_tests")]
    if last:
        items[:] = [item for item in items if item not in last] + last


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if item.nodeid not in EXEMPT_TESTS:
        yield
        return
    saved = os.environ.pop(TEE_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[TEE_ENV] = saved


def pytest_sessionfinish(session, exitstatus):
    d = _state.get("dir")
    if d and _state.get("owner"):
        if exitstatus == 0 and not os.environ.get("P11NETHSM_KEEP_LOG_TEE"):
            _state["remove"] = True
        else:
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"p11nethsm Trace logs of this run (P11NETHSM_LOG_TEE): {d}")


def pytest_unconfigure(config):
    sink = _state.pop("sink", None)
    if sink is not None:
        from p11nethsm.log import logger

        try:
            logger.remove(sink)
        except ValueError:
            pass
    if _state.get("remove"):
        shutil.rmtree(_state["dir"], ignore_errors=True)
