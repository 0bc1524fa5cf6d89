"""Issue 10, defect 4: a Python host's logging is its own. python-pkcs11 in the venv's python
(host mode: the module runs in the host's interpreter and shares its loguru and logging modules)
sets up loguru (default stderr handler kept, plus a sink of its own) and stdlib logging (root at
DEBUG with a handler), then initializes the module, logs in, signs and finalizes. Afterwards:

- loguru: the host's handlers are exactly those it had, its default stderr handler still prints
  its lines, and its sinks received none of the module's records;
- stdlib logging: root level/handlers, every pre-existing logger's level/handlers/propagate/
  disabled, logging.disable, the logger class, the record factory and warnings.showwarning are
  unchanged, and the host's handler received no record of the module;
- the module's own log file has the module's lines and none of the host's.
"""

from __future__ import annotations

import subprocess

from guestenv import MODULE, PY, host_env, slot_yaml, write_config

SCRIPT = r"""
import logging, sys, warnings
from loguru import logger

module, log_path = sys.argv[1:3]
host_sink = []
logger.add(lambda m: host_sink.append(m.record), level="TRACE", format="{message}")
logger.info("host loguru line before")

class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []
    def emit(self, record):
        self.records.append(record)

std = ListHandler()
logging.basicConfig(level=logging.DEBUG, handlers=[std])
logging.getLogger("host.app").setLevel(logging.INFO)
logging.getLogger("host.app").info("host stdlib line before")

def loguru_state():
    return sorted(logger._core.handlers)

def stdlib_state():
    d = logging.root.manager.loggerDict
    loggers = {n: (l.level, list(l.handlers), l.propagate, l.disabled) for n, l in d.items()
               if isinstance(l, logging.Logger)}
    return (logging.root.level, list(logging.root.handlers), loggers, logging.root.manager.disable,
            logging.getLoggerClass(), logging.getLogRecordFactory(), warnings.showwarning, logging.lastResort)

lg0, st0 = loguru_state(), stdlib_state()

import pkcs11
from pkcs11 import KeyType, Mechanism, ObjectClass
lib = pkcs11.lib(module)
token = lib.get_token(token_label="Guest")
with token.open(user_pin="opPassphrase") as s:
    key = s.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label="p256key")
    assert len(key.sign(b"x" * 32, mechanism=Mechanism.ECDSA)) == 64
lib.reinitialize()  # C_Finalize + C_Initialize: the module reconfigures its own logging
with token.open(user_pin="opPassphrase") as s:
    pass

lg1, st1 = loguru_state(), stdlib_state()
logger.info("host loguru line after")
logging.getLogger("host.app").info("host stdlib line after")

problems = []
if lg1 != lg0:
    problems.append(f"loguru handlers changed: {lg0} -> {lg1}")
# pre-existing stdlib loggers: same settings (new loggers of libraries imported since are theirs)
old = st0[2]
new = {n: v for n, v in st1[2].items() if n in old}
if (st0[:2], old, st0[3:]) != (st1[:2], new, st1[3:]):
    problems.append(f"stdlib logging changed:\n{st0}\n{st1}")
ours = [r["name"] for r in host_sink if (r["name"] or "").startswith("p11nethsm")]
if ours:
    problems.append(f"host loguru sink got {len(ours)} module records, e.g. {ours[:3]}")
mine = [r["message"] for r in host_sink]
if mine != ["host loguru line before", "host loguru line after"]:
    problems.append(f"host loguru sink: {mine}")
std_ours = [r.name for r in std.records if r.name.startswith("p11nethsm")]
if std_ours:
    problems.append(f"host stdlib handler got module records: {std_ours[:3]}")
if [r.getMessage() for r in std.records if r.name == "host.app"] != ["host stdlib line before", "host stdlib line after"]:
    problems.append("host stdlib lines lost")
text = open(log_path).read()
if "p11nethsm.handlers" not in text:
    problems.append("the module logged nothing to its own file")
if "host loguru line" in text or "host stdlib line" in text:
    problems.append("host lines in the module's log file")
for p in problems:
    print("PROBLEM", p, file=sys.stderr)
print("ok" if not problems else "failed")
"""


def test_python_host_loguru_and_logging_untouched(hsm, tmp_path):
    log = tmp_path / "module.log"
    conf = write_config(tmp_path / "p.conf", [slot_yaml("Guest", hsm.url, hsm.fingerprint, passwords=False)],
                        log_file=log, level="Debug")
    r = subprocess.run([PY, "-c", SCRIPT, MODULE, str(log)], env=host_env(conf), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr[-4000:]
    # the host's default loguru handler (stderr) still prints the host's lines, and only those
    assert "host loguru line before" in r.stderr and "host loguru line after" in r.stderr, r.stderr[-3000:]
    assert "p11nethsm." not in r.stderr, r.stderr[-3000:]


def test_check_config_verbose_shows_the_modules_own_log(hsm, tmp_path):
    """`check-config -v` adds a sink to the module's own logger (not loguru's global one, which
    the module no longer uses): the module's lines are shown; without -v they are not."""
    import os

    cli = os.path.join(os.path.dirname(PY), "p11nethsm")
    conf = write_config(tmp_path / "p.conf", [slot_yaml("Guest", hsm.url, hsm.fingerprint)],
                        log_file=tmp_path / "m.log", level="Info")
    verbose = subprocess.run([cli, "check-config", conf, "-v"], capture_output=True, text=True, timeout=120)
    quiet = subprocess.run([cli, "check-config", conf], capture_output=True, text=True, timeout=120)
    assert verbose.returncode == 0 and quiet.returncode == 0, verbose.stdout + verbose.stderr
    assert "p11nethsm.api.firmware:" in verbose.stdout + verbose.stderr
    assert "p11nethsm.api." not in quiet.stdout + quiet.stderr
