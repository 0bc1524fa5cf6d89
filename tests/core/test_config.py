"""Config loading: search paths, merging, env: passwords, every error names file and key."""

from __future__ import annotations

import os

import pytest

from p11nethsm.config import loader
from p11nethsm.config.loader import ConfigError, load, load_files

MINIMAL = """
slots:
  - label: A
    operator: {username: operator, password: secret-pass}
    instances: [{url: "https://a:8443/api/v1"}]
"""

FULL = """
enable_set_attribute_value: true
log_level: Debug
syslog_udp:
  to_addr: 127.0.0.1:514
  from_addr: 127.0.0.1:4789
syslog_facility: local3
syslog_hostname: localhsm-pkcs11
syslog_process: NetHSM Pkcs11
syslog_pid: 7
log_file: /tmp/p11nethsm.log
disable_threads: true
disable_thread_pool: true
slots:
  - label: LocalHSM
    description: Local HSM (docker)
    operator:
      username: "operator"
      password: "env:LOCALHSMPASS"
    administrator:
      username: "admin"
    instances:
      - url: "https://keyfender:8443/api/v1/"
        max_idle_connections: 10
        sha256_fingerprints:
          - "31:92:8E:A4:5E:16:5C:A7:33:44:E8:E9:8E:64:C4:AE:7B:2A:57:E5:77:43:49:F3:69:C9:8F:C4:2F:3A:3B:6E"
          - "31928ea45e165ca73344e8e98e64c4ae7b2a57e5774349f369c98fc42f3a3b6e"
        danger_insecure_cert: false
    retries: {count: 3, delay_seconds: 1}
    tcp_keepalive: {time_seconds: 600, interval_seconds: 60, retries: 3}
    connections_max_idle_duration: 1800
    timeout_seconds: 10
    certificate_format: der
"""


def test_full_documented_file_gives_every_value(write_config):
    path = write_config(FULL)
    cfg = load_files([path], {"LOCALHSMPASS": "localpass"}).config
    assert cfg.enable_set_attribute_value and cfg.disable_threads and cfg.disable_thread_pool
    assert cfg.log_level == "Debug"
    assert cfg.syslog_udp.to_addr == "127.0.0.1:514" and cfg.syslog_udp.from_addr == "127.0.0.1:4789"
    assert (cfg.syslog_facility, cfg.syslog_hostname, cfg.syslog_process, cfg.syslog_pid) == (
        "local3", "localhsm-pkcs11", "NetHSM Pkcs11", 7)
    assert cfg.log_file == "/tmp/p11nethsm.log"
    (slot,) = cfg.slots
    assert slot.label == "LocalHSM" and slot.description == "Local HSM (docker)"
    assert slot.operator.password == "localpass" and slot.administrator.password is None
    inst = slot.instances[0]
    assert inst.url == "https://keyfender:8443/api/v1"
    assert inst.max_idle_connections == 10
    assert len(inst.sha256_fingerprints) == 2 and inst.sha256_fingerprints[0] == inst.sha256_fingerprints[1]
    assert len(inst.sha256_fingerprints[0]) == 32 and inst.sha256_fingerprints[0][:2] == b"\x31\x92"
    assert slot.retries.count == 3 and slot.retries.delay_seconds == 1.0
    assert (slot.tcp_keepalive.time_seconds, slot.tcp_keepalive.interval_seconds, slot.tcp_keepalive.retries) == (600, 60, 3)
    assert slot.connections_max_idle_duration == 1800 and slot.timeout_seconds == 10
    assert slot.certificate_format == "DER"
    assert slot.source == path


def test_defaults_when_keys_are_absent(write_config):
    cfg = load_files([write_config(MINIMAL)], {}).config
    assert cfg.log_level is None and cfg.log_file is None and cfg.syslog_facility == "user"
    assert not cfg.enable_set_attribute_value and not cfg.disable_threads
    slot = cfg.slots[0]
    assert slot.retries is None and slot.timeout_seconds is None and slot.tcp_keepalive is None
    assert slot.certificate_format == "PEM" and slot.administrator is None
    assert slot.instances[0].max_idle_connections is None
    assert slot.instances[0].sha256_fingerprints == () and not slot.instances[0].danger_insecure_cert


def test_slots_of_all_files_are_used_and_first_file_sets_scalars(write_config):
    first = write_config("log_level: Error\n" + MINIMAL, "etc.conf")
    second = write_config("log_level: Trace\nsyslog_facility: local1\n" + MINIMAL.replace("label: A", "label: B"),
                          "home.conf")
    result = load_files([first, second], {})
    assert [s.label for s in result.config.slots] == ["A", "B"]
    assert result.config.log_level == "Error"  # the first file wins
    assert result.config.syslog_facility == "local1"  # set only by the second
    assert any("log_level" in w and "first file wins" in w for w in result.warnings)


def test_search_paths_are_merged_in_documented_order(tmp_path, monkeypatch):
    paths = [str(tmp_path / "etc.conf"), str(tmp_path / "usr.conf"), str(tmp_path / "home.conf")]
    monkeypatch.setattr(loader, "search_paths", lambda env=None: paths)
    for i, p in enumerate(paths):
        if i == 1:
            continue  # a missing file is skipped
        with open(p, "w") as fh:
            fh.write(f"log_level: {['Error', '', 'Debug'][i]}\n" + MINIMAL.replace("label: A", f"label: S{i}"))
    cfg = load({}).config
    assert [s.label for s in cfg.slots] == ["S0", "S2"]
    assert cfg.log_level == "Error"
    assert cfg.sources == (paths[0], paths[2])


def test_default_search_paths_match_the_doc():
    assert loader.search_paths({"HOME": "/home/u"}) == [
        "/etc/nitrokey/p11nethsm.conf",
        "/usr/local/etc/nitrokey/p11nethsm.conf",
        "/home/u/.config/nitrokey/p11nethsm.conf",
    ]


def test_env_var_selects_only_that_file(write_config, tmp_path, monkeypatch):
    other = str(tmp_path / "other.conf")
    with open(other, "w") as fh:
        fh.write(MINIMAL.replace("label: A", "label: Other"))
    monkeypatch.setattr(loader, "search_paths", lambda env=None: [other])
    only = write_config(MINIMAL)
    cfg = load({"P11NETHSM_CONFIG_FILE": only}).config
    assert [s.label for s in cfg.slots] == ["A"]


def test_env_var_naming_a_missing_file_fails():
    with pytest.raises(ConfigError) as e:
        load({"P11NETHSM_CONFIG_FILE": "/nonexistent/p11.conf"})
    assert e.value.file == "/nonexistent/p11.conf"


def test_no_config_file_at_all_fails_naming_the_paths(monkeypatch):
    monkeypatch.setattr(loader, "search_paths", lambda env=None: ["/nonexistent/a", "/nonexistent/b"])
    with pytest.raises(ConfigError, match="no configuration file found.*/nonexistent/a"):
        load({})


def test_unknown_key_is_reported_with_file_and_closest_key(write_config):
    path = write_config("log_levle: Debug\n" + MINIMAL.replace("    instances:", "    instancse: []\n    instances:"))
    result = load_files([path], {})
    text = "\n".join(result.warnings)
    assert f"{path}: unknown key 'log_levle' ignored; did you mean 'log_level'?" in text
    assert "'slots[0].instancse'" in text and "did you mean 'instances'" in text


def test_unknown_key_far_from_any_known_key_has_no_hint(write_config):
    result = load_files([write_config("zzzzqqq: 1\n" + MINIMAL)], {})
    assert any("'zzzzqqq'" in w and "did you mean" not in w for w in result.warnings)


def test_removed_vendor_key_is_accepted(write_config):
    result = load_files([write_config("enable_set_attribute_value: true\n" + MINIMAL)], {})
    assert result.config.enable_set_attribute_value and not result.warnings


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("slots: [{label: A, instances: [{url: 'https://a'}]}]", "slots[0]", "no user configured"),
        ("slots: [{operator: {username: o}, instances: [{url: 'https://a'}]}]", "slots[0].label", "is required"),
        ("slots: [{label: A, operator: {username: o}}]", "slots[0].instances", "at least one instance"),
        ("slots: [{label: A, operator: {username: o}, instances: [{port: 1}]}]", "slots[0].instances[0].url", "is required"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'ftp://a'}]}]", "slots[0].instances[0].url", "http"),
        ("slots: [{label: A, operator: {password: x}, instances: [{url: 'https://a'}]}]", "slots[0].operator.username", "is required"),
        ("slots: [{label: A, operator: {username: o, password: 'env:NOPE_NOT_SET'}, instances: [{url: 'https://a'}]}]",
         "slots[0].operator.password", "NOPE_NOT_SET is not set"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a', sha256_fingerprints: ['zz']}]}]",
         "slots[0].instances[0].sha256_fingerprints[0]", "not hex"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a', sha256_fingerprints: ['AB:CD']}]}]",
         "slots[0].instances[0].sha256_fingerprints[0]", "2 bytes"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a', max_idle_connections: ten}]}]",
         "slots[0].instances[0].max_idle_connections", "integer"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a', danger_insecure_cert: 1}]}]",
         "slots[0].instances[0].danger_insecure_cert", "true or false"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a', ca_file: /nonexistent.pem}]}]",
         "slots[0].instances[0].ca_file", "does not exist"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a'}], retries: {count: -1}}]",
         "slots[0].retries.count", "from 0 to 100"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a'}], timeout_seconds: soon}]",
         "slots[0].timeout_seconds", "seconds"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a'}], certificate_format: CRT}]",
         "slots[0].certificate_format", "PEM or DER"),
        ("slots: [{label: A, operator: {username: o}, instances: [{url: 'https://a'}], tcp_keepalive: 5}]",
         "slots[0].tcp_keepalive", "mapping"),
        ("log_level: Verbose\nslots: []", "log_level", "Trace, Debug, Info, Warn, Error"),
        ("syslog_facility: local9\nslots: []", "syslog_facility", "local7"),
        ("syslog_tcp: localhost\nslots: []", "syslog_tcp", "host:port"),
        ("syslog_udp: {from_addr: '127.0.0.1:1'}\nslots: []", "syslog_udp.to_addr", "is required"),
        ("syslog_tcp: 127.0.0.1:601\nsyslog_socket: /dev/log\nslots: []", "syslog_tcp", "only one syslog target"),
        ("disable_threads: yes please\nslots: []", "disable_threads", "true or false"),
        ("syslog_pid: abc\nslots: []", "syslog_pid", "integer"),
        ("slots: {label: A}", "slots", "must be a list"),
        ("- just\n- a list", "(top level)", "mapping"),
    ],
)
def test_malformed_config_names_file_key_and_problem(write_config, text, key, problem):
    path = write_config(text)
    with pytest.raises(ConfigError) as e:
        load_files([path], {})
    assert e.value.file == path
    assert e.value.key == key
    assert problem in e.value.problem
    assert path in str(e.value) and key in str(e.value)


def test_invalid_yaml_names_file_and_line(write_config):
    path = write_config("slots:\n  - label: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML at line") as e:
        load_files([path], {})
    assert e.value.file == path


def test_two_syslog_targets_across_files_are_refused(write_config):
    a = write_config("syslog_socket: /dev/log\nslots: []", "a.conf")
    b = write_config("syslog_tcp: 127.0.0.1:601\nslots: []", "b.conf")
    with pytest.raises(ConfigError, match="only one syslog target"):
        load_files([a, b], {})


def test_empty_password_counts_as_none(write_config):
    cfg = load_files([write_config(MINIMAL.replace("secret-pass", '""'))], {}).config
    assert cfg.slots[0].operator.password is None and not cfg.slots[0].operator.has_password


def test_password_is_not_in_repr(write_config):
    cfg = load_files([write_config(MINIMAL)], {}).config
    assert "secret-pass" not in repr(cfg)


def test_fingerprint_normalisation_accepts_any_case_and_separators():
    fp = loader.normalise_fingerprint("AB" * 32)
    assert fp == loader.normalise_fingerprint(":".join(["ab"] * 32)) == bytes([0xAB]) * 32


def test_log_level_is_case_insensitive(write_config):
    assert load_files([write_config("log_level: warn\n" + MINIMAL)], {}).config.log_level == "Warn"


def test_check_config_cli_reports_problems(write_config, capsys):
    from p11nethsm.cli import main

    good = write_config("log_levle: Debug\n" + MINIMAL, "good.conf")
    assert main(["check-config", "--offline", good]) == 0
    out = capsys.readouterr().out
    assert "did you mean 'log_level'" in out and "slot 0: A" in out
    bad = write_config("log_level: Loud\n" + MINIMAL, "bad.conf")
    assert main(["check-config", "--offline", bad]) == 1
    assert "log_level" in capsys.readouterr().err


def test_unreadable_file_is_reported(tmp_path):
    path = tmp_path / "p.conf"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as e:
        load_files([str(path)], {})
    assert e.value.file == str(path)
    assert os.path.basename(str(path)) in str(e.value)


def test_module_path_cli_prints_the_shim_path(capsys):
    from p11nethsm._shim_path import module_path
    from p11nethsm.cli import main

    assert main(["module-path"]) == 0
    assert capsys.readouterr().out.strip() == module_path()


def test_check_config_uses_the_env_var(write_config, monkeypatch, capsys):
    from p11nethsm.cli import main

    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config(MINIMAL))
    assert main(["check-config", "--offline"]) == 0
    assert "P11NETHSM_CONFIG_FILE" in capsys.readouterr().out


def _switch_config(level: str, name: str, value: str) -> str:
    top = f"{name}: {value}\n" if level == "top" else ""
    slot = f"    {name}: {value}\n" if level == "slot" else ""
    inst = f", {name}: {value}" if level == "instance" else ""
    return (f"{top}slots:\n  - label: A\n    operator: {{username: operator, password: secret-pass}}\n{slot}"
            f"    instances: [{{url: \"https://a:8443/api/v1\"{inst}}}]\n")


def _switches():
    from p11nethsm.config import schema

    return ([("top", n) for n in schema.TOP_SWITCHES] + [("slot", n) for n in schema.SLOT_SWITCHES]
            + [("instance", n) for n in schema.INSTANCE_SWITCHES])


def test_the_switches_are_the_models_bool_fields():
    names = {n for _, n in _switches()}
    assert {"enable_set_attribute_value", "disable_threads", "disable_thread_pool", "danger_insecure_cert"} <= names


@pytest.mark.parametrize("level,name", _switches())
def test_every_switch_is_read_and_checked_without_code_of_its_own(tmp_path, level, name):
    """A bool field of the model is a true/false key: read at its level, false when unset, and a
    non-boolean names the file and the key."""
    def value(text):
        path = tmp_path / "p.conf"
        path.write_text(_switch_config(level, name, text))
        cfg = load_files([str(path)], {}).config
        return {"top": cfg, "slot": cfg.slots[0], "instance": cfg.slots[0].instances[0]}[level]

    assert getattr(value("true"), name) is True
    assert getattr(value("false"), name) is False
    with pytest.raises(ConfigError) as err:
        value("'yes please'")
    assert name in str(err.value) and "p.conf" in str(err.value)
