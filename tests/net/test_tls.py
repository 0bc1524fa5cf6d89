"""TLS modes against a real HTTPS server on 127.0.0.1: pinning, CA file, system trust, insecure."""

from __future__ import annotations

import hashlib

import pytest

from p11nethsm.api.client import NetHSM
from p11nethsm.api.errors import TLSVerificationError
from p11nethsm.net.tls import format_fingerprint, parse_fingerprint

from .conftest import make_slot


def client(urls, **kw) -> NetHSM:
    return NetHSM(make_slot(urls, **kw), threads=False)


def test_pinned_fingerprint_accepts_the_self_signed_device(stub, pki):
    c = client([stub.url], pins=[pki["selfsigned"][2].sha256])
    assert c.health_state() == "Operational"
    c.close()


def test_any_of_several_fingerprints_passes(stub, pki):
    c = client([stub.url], pins=[b"\x01" * 32, pki["selfsigned"][2].sha256, b"\x02" * 32])
    assert c.health_state() == "Operational"
    c.close()


def test_fingerprint_mismatch_fails_and_logs_instance_and_both_fingerprints(stub, pki, logs):
    wrong = hashlib.sha256(b"not it").digest()
    c = client([stub.url], pins=[wrong])
    with pytest.raises(TLSVerificationError) as exc:
        c.health_state()
    assert exc.value.instance == stub.url
    line = next(m for m in logs if "fingerprint mismatch" in m)
    assert stub.url in line
    assert format_fingerprint(wrong) in line
    assert format_fingerprint(pki["selfsigned"][2].sha256) in line
    assert not stub.requests  # nothing was sent
    c.close()


def test_system_trust_store_rejects_a_self_signed_certificate(stub):
    c = client([stub.url])
    with pytest.raises(TLSVerificationError):
        c.health_state()
    c.close()


def test_ca_file_of_the_right_ca_verifies_chain_and_ip(ca_stub, pki):
    c = client([ca_stub.url], ca_file=pki["ca"][0])
    assert c.health_state() == "Operational"
    c.close()


def test_ca_file_of_a_wrong_ca_fails(ca_stub, pki):
    c = client([ca_stub.url], ca_file=pki["other_ca"][0])
    with pytest.raises(TLSVerificationError):
        c.health_state()
    c.close()


def test_ca_file_checks_the_hostname(ca_stub, pki):
    # the certificate names IP 127.0.0.1, not "localhost"
    url = ca_stub.url.replace("127.0.0.1", "localhost")
    c = client([url], ca_file=pki["ca"][0])
    with pytest.raises(TLSVerificationError):
        c.health_state()
    c.close()


def test_danger_insecure_cert_skips_checks(stub):
    # (its start-up warning comes from C_Initialize: tests/core/test_general.py)
    c = client([stub.url], insecure=True)
    assert c.health_state() == "Operational"
    c.close()


def test_tls_failure_fails_over_to_the_next_instance(stub, ca_stub, pki):
    # instance 1 presents a cert that misses the pin: never sent, so even a generate fails over
    pin = pki["selfsigned"][2].sha256
    c = client([ca_stub.url, stub.url], pins=[pin], retries=(1, 0))
    for _ in range(3):
        assert c.health_state() == "Operational"
    assert not ca_stub.requests
    assert [r[:2] for r in stub.requests] == [("GET", "/api/v1/health/state")] * 3  # it served all
    c.close()


def test_fingerprint_text_round_trip():
    raw = bytes(range(32))
    assert parse_fingerprint(format_fingerprint(raw)) == raw
    assert parse_fingerprint(raw.hex()) == raw
    with pytest.raises(ValueError):
        parse_fingerprint("AB:CD")
