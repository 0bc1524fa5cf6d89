"""Issue 10, defects 5 and 6: values that used to load and then break every call (or every log
line) are rejected at load: C_Initialize fails with CKR_FUNCTION_FAILED (not CKR_GENERAL_ERROR)
and prints a message naming the file, the key and the allowed range on stderr; `p11nethsm
check-config` exits 1 with the same message. Driven from a C host through the built .so.

And a known key at the wrong level is reported with the place it belongs.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from guestenv import MODULE, host_env

CLI = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   ".venv", "bin", "p11nethsm")
CKR_FUNCTION_FAILED = "0x6"


def _config(tmp_path, *, url="https://127.0.0.1:8443/api/v1", slot_extra="", instance_extra="", head=""):
    path = tmp_path / "p11nethsm.conf"
    path.write_text(f"""{head}slots:
  - label: Bad
    operator: {{username: operator, password: not-a-secret}}
{slot_extra}    instances:
      - url: "{url}"
        danger_insecure_cert: true
{instance_extra}""")
    return str(path)


CASES = {
    # id: (config kwargs, key named, words of the allowed range/problem)
    "port-99999": (dict(url="https://127.0.0.1:99999/api/v1"), "slots[0].instances[0].url", "1 to 65535"),
    "port-0": (dict(url="https://127.0.0.1:0/api/v1"), "slots[0].instances[0].url", "1 to 65535"),
    "no-host": (dict(url="https://:8443/api/v1"), "slots[0].instances[0].url", "no host name"),
    "no-host-at-all": (dict(url="https:///api/v1"), "slots[0].instances[0].url", "no host name"),
    "scheme-ftp": (dict(url="ftp://127.0.0.1:8443/api/v1"), "slots[0].instances[0].url", "https URL"),
    "scheme-http": (dict(url="http://127.0.0.1:8443/api/v1"), "slots[0].instances[0].url", "https URL"),
    "user-info": (dict(url="https://operator:s3cretPass@127.0.0.1:8443/api/v1"), "slots[0].instances[0].url",
                  "user name or password"),
    "timeout-nan": (dict(slot_extra="    timeout_seconds: .nan\n"), "slots[0].timeout_seconds", "0 to 86400"),
    "timeout-inf": (dict(slot_extra="    timeout_seconds: .inf\n"), "slots[0].timeout_seconds", "0 to 86400"),
    "delay-inf": (dict(slot_extra="    retries: {count: 1, delay_seconds: .inf}\n"), "slots[0].retries.delay_seconds",
                  "0 to 3600"),
    "keepalive-idle": (dict(slot_extra="    tcp_keepalive: {time_seconds: 99999}\n"),
                       "slots[0].tcp_keepalive.time_seconds", "1 to 32767"),
    "keepalive-interval": (dict(slot_extra="    tcp_keepalive: {interval_seconds: 40000}\n"),
                           "slots[0].tcp_keepalive.interval_seconds", "1 to 32767"),
    "keepalive-count": (dict(slot_extra="    tcp_keepalive: {retries: 1000}\n"),
                        "slots[0].tcp_keepalive.retries", "1 to 127"),
    "idle-connections": (dict(instance_extra="        max_idle_connections: 1000000000\n"),
                         "slots[0].instances[0].max_idle_connections", "1 to 1024"),
    "log-file-missing-dir": (dict(head="log_file: /nonexistent-p11nethsm-dir/module.log\n"), "log_file",
                             "does not exist"),
    "log-file-unwritable-dir": (dict(head="log_file: /proc/self/module.log\n"), "log_file", "not writable"),
    "log-file-is-a-directory": (dict(head="log_file: /tmp\n"), "log_file", "is a directory"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rejected_at_load_through_the_so_and_by_check_config(guest_host, tmp_path, case):
    kwargs, key, words = CASES[case]
    conf = _config(tmp_path, **kwargs)
    r = subprocess.run([guest_host, "init", MODULE, "0"], env=host_env(conf), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert f"RESULT C_Initialize={CKR_FUNCTION_FAILED}" in r.stderr, r.stderr
    assert conf in r.stderr and f"'{key}'" in r.stderr and words in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "s3cretPass" not in r.stderr

    c = subprocess.run([CLI, "check-config", conf, "--offline"], capture_output=True, text=True, timeout=60)
    assert c.returncode == 1, c.stdout + c.stderr
    assert conf in c.stderr and f"'{key}'" in c.stderr and words in c.stderr, c.stderr
    assert "s3cretPass" not in c.stdout + c.stderr


def test_a_known_key_at_the_wrong_level_says_where_it_belongs(guest_host, tmp_path):
    conf = _config(tmp_path, head="max_idle_connections: 4\n", slot_extra="    sha256_fingerprints: []\n")
    c = subprocess.run([CLI, "check-config", conf, "--offline"], capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stdout + c.stderr
    assert ("key 'max_idle_connections' ignored: 'max_idle_connections' is not a setting at the top level, "
            "it belongs in an instance (slots[].instances[])") in c.stdout, c.stdout
    assert ("key 'slots[0].sha256_fingerprints' ignored: 'sha256_fingerprints' is not a setting in slots[0], "
            "it belongs in an instance (slots[].instances[])") in c.stdout, c.stdout
    assert "did you mean" not in c.stdout
    # the module loads it (a warning, as any unknown key) and logs the same hint
    log = tmp_path / "module.log"
    with open(conf, "a") as f:
        f.write(f"log_file: {log}\n")
    r = subprocess.run([guest_host, "init", MODULE, "0"], env=host_env(conf), capture_output=True, text=True,
                       timeout=60)
    assert "RESULT C_Initialize=0x0" in r.stderr, r.stderr
    assert "it belongs in an instance (slots[].instances[])" in log.read_text()


def test_a_missing_syslog_socket_is_a_warning(tmp_path):
    """A syslog daemon may create its socket later, so not an error; but lines are dropped until
    then, and check-config says so."""
    conf = _config(tmp_path, head=f"syslog_socket: {tmp_path}/no-such-socket\n")
    c = subprocess.run([CLI, "check-config", conf, "--offline"], capture_output=True, text=True, timeout=60)
    assert c.returncode == 0, c.stdout + c.stderr
    assert f"key 'syslog_socket': {tmp_path}/no-such-socket does not exist (yet)" in c.stdout, c.stdout
