"""Logs you can debug with, `p11nethsm trace`, and the Prometheus metrics file: pkcs11-tool through
the built module against the emulator, in its 5.0 mode and its default (4.0) mode."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from nethsm_emulator.testing import start_emulator

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODULE = os.path.join(ROOT, "p11nethsm", "libnethsm_pkcs11.so")
PKCS11_TOOL = shutil.which("pkcs11-tool")
P11NETHSM = [sys.executable, "-m", "p11nethsm.cli"]
OP_PIN = "opPassphrase"
WRONG_PIN = "definitely-not-the-pin"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(MODULE), reason="module not built"),
    pytest.mark.skipif(PKCS11_TOOL is None, reason="pkcs11-tool (opensc) not installed"),
]
KEYS = {"eckey": {"type": "EC_P256", "mechanisms": ["ECDSA_Signature"]},
        "rsakey": {"type": "RSA", "length": 2048, "mechanisms": ["RSA_Signature_PSS_SHA256"]}}


@pytest.fixture(scope="module", params=["5.0", "4.0"])
def hsm(request):
    with start_emulator(2, provisioned=True, keys=KEYS, throttle=False, labels=request.param == "5.0") as run:
        yield run


def write_config(tmp_path, hsm, *, fmt="text", metrics=None, urls=None):
    conf = tmp_path / "p11nethsm.conf"
    log = tmp_path / f"module.{fmt}.log"
    extra = f"metrics_file: {metrics}\nmetrics_interval_seconds: 1\n" if metrics else ""
    inst = "".join(f'\n      - url: {u}\n        sha256_fingerprints: ["{hsm.fingerprint}"]'
                   for u in (urls or hsm.urls[:1]))
    conf.write_text(f"""log_level: Debug
log_file: {log}
log_format: {fmt}
{extra}slots:
  - label: emu
    operator:
      username: operator
    administrator:
      username: admin
    instances:{inst}
""")
    return str(conf), log


def tool(conf, *args, check=True):
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=conf)
    out = subprocess.run([PKCS11_TOOL, "--module", MODULE, *args], env=env, capture_output=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out


def session_of_calls(conf, tmp_path):
    data = tmp_path / "in.bin"
    data.write_bytes(b"hello" * 20)
    tool(conf, "--login", "--pin", OP_PIN, "--sign", "--id", b"eckey".hex(), "-m", "ECDSA-SHA256",
         "-i", str(data), "-o", str(tmp_path / "sig.bin"))
    tool(conf, "--login", "--pin", OP_PIN, "--sign", "--id", b"rsakey".hex(), "-m", "SHA256-RSA-PKCS-PSS",
         "--salt-len", "32", "-i", str(data), "-o", str(tmp_path / "sig2.bin"))
    bad = tool(conf, "--login", "--pin", WRONG_PIN, "-O", check=False)
    assert bad.returncode != 0


def test_text_log_names_mechanism_template_thread_and_call(hsm, tmp_path):
    conf, log = write_config(tmp_path, hsm)
    session_of_calls(conf, tmp_path)
    text = log.read_text()
    assert WRONG_PIN not in text and OP_PIN not in text
    lines = text.splitlines()
    calls = [ln for ln in lines if " p11nethsm.dispatch: C_" in ln]
    assert calls and all(re.search(r"\[\S+ call=\d+ C_\w+", ln) for ln in calls)
    sign_init = [ln for ln in calls if "C_SignInit(" in ln]
    assert any("pMechanism=CKM_ECDSA_SHA256," in ln for ln in sign_init)
    assert any("pMechanism=CKM_SHA256_RSA_PKCS_PSS{hashAlg=CKM_SHA256, mgf=CKG_MGF1_SHA256, sLen=32}" in ln
               for ln in sign_init)
    finds = [ln for ln in calls if "C_FindObjectsInit(" in ln]
    assert any("CKA_CLASS=CKO_PRIVATE_KEY" in ln and "CKA_ID='eckey'" in ln for ln in finds)
    login = [ln for ln in calls if "C_Login(" in ln and "CKR_PIN_INCORRECT" in ln]
    assert login and "userType=CKU_USER" in login[0] and "ulPinLen=22" in login[0]
    # every transition caused by a call names the call and its slot (and the session if any)
    transitions = [ln for ln in lines if "-->" in ln and "MainThread" in ln]
    # (the module-lifecycle machine has no slot: its C_Finalize transitions name the call)
    per_slot = [ln for ln in transitions if " module: " not in ln]
    assert per_slot and all(re.search(r"call=\d+ C_\w+ slot=\d+", ln) for ln in per_slot)
    assert all("call=" in ln for ln in transitions if " module: " in ln and "--finalize" in ln)
    assert any(re.search(r"call=\d+ C_SignInit slot=0 session=\d+\].*op\[sign .*idle --begin--> active", ln)
               for ln in transitions)


def test_json_log_one_object_per_line_with_fields(hsm, tmp_path):
    conf, log = write_config(tmp_path, hsm, fmt="json")
    session_of_calls(conf, tmp_path)
    text = log.read_text()
    assert WRONG_PIN not in text and OP_PIN not in text
    objs = [json.loads(ln) for ln in text.splitlines()]
    for o in objs:
        assert {"time", "level", "pid", "thread", "message"} <= set(o)
    calls = [o for o in objs if o.get("kind") == "call"]
    assert calls and all({"call", "function", "ckr", "ms"} <= set(o) for o in calls)
    bad = [o for o in calls if o["ckr"] == "CKR_PIN_INCORRECT"]
    assert bad and bad[0]["function"] == "C_Login" and bad[0]["reason"] and bad[0]["slot"] == 0
    trans = [o for o in objs if o.get("kind") == "transition" and "call" in o]
    per_slot = [o for o in trans if o["machine"] != "module"]  # the module lifecycle has no slot
    assert per_slot and all({"machine", "source", "event", "target", "slot"} <= set(o) for o in per_slot)
    sign = [o for o in trans if o["machine"].startswith("op[sign") and o["event"] == "finish"]
    assert sign and all(o["function"] == "C_Sign" and "session" in o for o in sign)
    reqs = [o for o in objs if o.get("kind") == "request"]
    assert any(o["method"] == "POST" and o["path"].endswith("/sign") and o["status"] == 200 and o["instance"]
               for o in reqs)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_trace_renders_sessions_and_summary(hsm, tmp_path, fmt):
    conf, log = write_config(tmp_path, hsm, fmt=fmt)
    session_of_calls(conf, tmp_path)
    out = subprocess.run([*P11NETHSM, "trace", str(log)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    sessions = re.findall(r"^== pid (\d+) session (\d+) \(slot 0\)$", text, re.M)
    assert len({pid for pid, _ in sessions}) == 3  # three pkcs11-tool processes
    assert re.search(r"#\d+ C_SignInit\(.*pMechanism=CKM_ECDSA_SHA256.*\) = CKR_OK", text)
    assert re.search(r"net POST https://\S+/keys/eckey/sign -> 200", text)
    assert re.search(r"!! #\d+ C_Login\(.*\) = CKR_PIN_INCORRECT \(.+\)", text)
    assert re.search(r"op\[sign slot 0 session \d+\]: idle --begin--> active", text)
    summary = text.split("summary:", 1)[1]
    assert re.search(r"calls by CKR: CKR_OK \d+, .*CKR_PIN_INCORRECT 1", summary)
    assert "slowest calls:" in summary and "instance health changes:" in summary
    # filters: one pid, one session
    pid, session = sessions[0]
    one = subprocess.run([*P11NETHSM, "trace", str(log), "--pid", pid, "--session", session],
                         capture_output=True, text=True, timeout=60).stdout
    assert one.count("\n== ") + one.startswith("== ") == 1 and f"== pid {pid} session {session}" in one


def test_trace_follows_a_growing_file(hsm, tmp_path):
    conf, log = write_config(tmp_path, hsm)
    session_of_calls(conf, tmp_path)
    source = log.read_text().splitlines(keepends=True)
    growing = tmp_path / "growing.log"
    growing.write_text("")
    proc = subprocess.Popen([*P11NETHSM, "trace", "--follow", str(growing)], stdout=subprocess.PIPE, text=True)
    try:
        with growing.open("a") as fh:
            for line in source:
                fh.write(line)
                fh.flush()
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            seen.append(line)
            if "CKR_PIN_INCORRECT" in line:
                break
        assert any("CKR_PIN_INCORRECT" in ln for ln in seen)
        assert any(re.match(r"\[pid \d+ session \d+ \(slot 0\)\] ", ln) for ln in seen)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
    assert "summary:" in rest and "CKR_PIN_INCORRECT 1" in rest


def test_metrics_file_parses_as_prometheus_text(hsm, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    prom = tmp_path / "p11nethsm.prom"
    # instance 1 is down: requests fail over from it
    hsm.instances[1].down()
    try:
        conf, _ = write_config(tmp_path, hsm, metrics=prom, urls=[hsm.urls[1], hsm.urls[0]])
        session_of_calls(conf, tmp_path)
    finally:
        hsm.instances[1].up()
    assert not list(tmp_path.glob("*.tmp"))  # written through a temp file, renamed
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    up, down = hsm.urls[0], hsm.urls[1]
    assert families["p11nethsm_request_duration_seconds"].type == "histogram"
    count = samples[("p11nethsm_request_duration_seconds_count", (("instance", up), ("slot", "emu")))]
    assert count == samples[("p11nethsm_requests_total", (("instance", up), ("slot", "emu")))] > 0
    assert samples[("p11nethsm_instance_up", (("instance", up), ("slot", "emu")))] == 1
    assert samples[("p11nethsm_instance_up", (("instance", down), ("slot", "emu")))] == 0
    assert samples[("p11nethsm_failovers_total", (("instance", down), ("slot", "emu")))] >= 1
    assert samples[("p11nethsm_request_errors_total", (("instance", down), ("kind", "transport"), ("slot", "emu")))] >= 1
    # this file is the last process's (the wrong-PIN one): its calls by function and CKR
    assert samples[("p11nethsm_calls_total", (("ckr", "CKR_PIN_INCORRECT"), ("function", "C_Login")))] == 1
    assert samples[("p11nethsm_request_errors_total", (("instance", up), ("kind", "http_401"), ("slot", "emu")))] == 1


def test_metrics_file_written_every_interval(hsm, tmp_path, monkeypatch):
    """While a process keeps the module initialized, the file is rewritten every interval."""
    prom = tmp_path / "live.prom"
    conf, _ = write_config(tmp_path, hsm, metrics=prom)
    script = tmp_path / "host.py"
    script.write_text(f"""
import sys
from tests.p11calls import SO  # cwd: the repository root
p = SO()
p.ok("C_Initialize", None)
s = p.open()
print("ready", flush=True)
sys.stdin.readline()  # until the test has seen the file rewritten
p.ok("C_Finalize", None)
""")
    env = dict(os.environ, P11NETHSM_CONFIG_FILE=conf)
    proc = subprocess.Popen([sys.executable, "-c", script.read_text()], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # C_OpenSession is counted in a file written after it, while the host still runs (a write
        # from before it, during a slow first connection, may be there first)
        want = 'p11nethsm_calls_total{function="C_OpenSession",ckr="CKR_OK"} 1'
        # The host waits for us: a file written only at C_Finalize would never show the count.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (prom.exists() and want in prom.read_text()):
            time.sleep(0.1)
        assert prom.exists() and want in prom.read_text(), "not rewritten while the host runs"
        assert proc.poll() is None  # written by the interval thread, not at C_Finalize
        proc.stdin.write("done\n")
        proc.stdin.flush()
    finally:
        assert proc.wait(timeout=60) == 0
