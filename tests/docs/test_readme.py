"""The README stays consistent with the code: config keys, its example config, CLI, make targets."""

from __future__ import annotations

import re

from docs_helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_two_commands_are_documented():
    assert "make demo" in README and "make test" in README
    assert "Debian 12" in README


def _reference_rows(heading: str) -> dict[str, str]:
    """The rows of one table of the README's configuration reference: key -> the row's text."""
    section = README.split(f"### Reference: {heading}\n", 1)[1].split("\n### ", 1)[0]
    return {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z_0-9]+)` \|.*$", section, re.M)}


def _braced_keys(text: str) -> set[str]:
    """The keys of the `{a: 1, b: 2}` examples in a row."""
    return {k for block in re.findall(r"\{([^}]*)\}", text) for k in re.findall(r"([a-z_]+):", block)}


def test_the_reference_tables_are_the_loaders_keys_both_ways():
    """Every key the loader accepts has its row at its level, and every row is a key the loader
    accepts there: a key added to config/model.py without a row fails, and so does a stale row."""
    from p11nethsm.config import schema

    assert set(_reference_rows("top-level keys")) == schema.TOP_KEYS
    assert set(_reference_rows("`slots[]`")) == schema.SLOT_KEYS
    assert set(_reference_rows("`slots[].instances[]`")) == schema.INSTANCE_KEYS


def test_the_nested_keys_are_in_their_rows_both_ways():
    from p11nethsm.config import schema

    top, slot = _reference_rows("top-level keys"), _reference_rows("`slots[]`")
    assert _braced_keys(slot["retries"]) == schema.RETRY_KEYS
    assert _braced_keys(slot["tcp_keepalive"]) == schema.KEEPALIVE_KEYS
    assert _braced_keys(top["syslog_udp"]) == schema.UDP_KEYS
    users = re.search(r"^`operator`/`administrator` keys: (.*?)\. ", README, re.M | re.S).group(1)
    assert set(re.findall(r"`([a-z_]+)` \(", users)) == schema.USER_KEYS


def test_the_example_config_loads_without_warnings(tmp_path):
    from p11nethsm.config.loader import load_files

    block = re.search(r"```yaml\n(# p11nethsm.conf\n.*?)```", README, re.S)
    assert block, "README has a ```yaml block starting with '# p11nethsm.conf'"
    path = tmp_path / "p11nethsm.conf"
    path.write_text(block.group(1))
    result = load_files([str(path)], {"LOCALHSMPASS": "x" * 10})
    assert result.warnings == []
    slot = result.config.slots[0]
    assert slot.label == "LocalHSM" and slot.operator.has_password and not slot.administrator.has_password


def test_defaults_match_the_model():
    from p11nethsm.config.model import Config, InstanceConfig, SlotConfig

    assert Config(slots=()).enable_set_attribute_value is False and "| `enable_set_attribute_value` | `false` |" in README
    assert Config(slots=()).syslog_facility == "user" and "| `syslog_facility` | `user` |" in README
    assert SlotConfig(label="x", instances=()).certificate_format == "PEM" and "| `certificate_format` | `PEM` |" in README
    assert InstanceConfig(url="u").danger_insecure_cert is False and "| `danger_insecure_cert` | `false` |" in README
    assert "| `disable_threads` | `false` |" in README and "| `disable_thread_pool` | `false` |" in README


def test_every_client_has_a_section():
    for client in ("pkcs11-tool", "OpenSSL 3 (pkcs11-provider)", "OpenSSL (libp11 engine)", "OpenSSH", "GnuTLS", "Java SunPKCS11", "EJBCA",
                   "python-pkcs11", "p11-kit", "nitrokey/nethsm:testing", "Troubleshooting"):
        assert client in README, client


def test_cli_subcommands_and_make_targets_exist():
    from p11nethsm.cli import main  # noqa: F401 - importable

    cli = (ROOT / "p11nethsm" / "cli.py").read_text()
    for sub in re.findall(r"`p11nethsm ([a-z-]+)", README):
        assert f'"{sub}"' in cli, f"README mentions p11nethsm {sub}, cli.py has no such subcommand"
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z0-9-]+):", makefile, re.M))
    for target in set(re.findall(r"`make ([a-z0-9-]+)", README)):
        assert target in targets, f"README mentions make {target}, the Makefile has no such target"


def test_links_to_files_exist():
    for link in re.findall(r"\]\(((?!https?:|#)[^)]+)\)", README):
        assert (ROOT / link).exists(), link
