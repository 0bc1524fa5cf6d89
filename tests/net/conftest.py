from __future__ import annotations

import pytest
from p11nethsm.log import logger  # the module's own loguru logger (not the global one)

from p11nethsm.config.model import InstanceConfig, KeepaliveConfig, RetryConfig, SlotConfig

from .certs import make_cert
from .stub_server import StubServer


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca, ca_cert, ca_key = make_cert("Test Root CA", ca=True)
    leaf, _, _ = make_cert("127.0.0.1", issuer=(ca_cert, ca_key), san_ip="127.0.0.1")
    other_ca, _, _ = make_cert("Other CA", ca=True)
    selfsigned, _, _ = make_cert("keyfender")
    files = {}
    for name, pair in (("ca", ca), ("leaf", leaf), ("other_ca", other_ca), ("selfsigned", selfsigned)):
        (d / f"{name}.pem").write_bytes(pair.cert_pem)
        (d / f"{name}.key").write_bytes(pair.key_pem)
        files[name] = (str(d / f"{name}.pem"), str(d / f"{name}.key"), pair)
    return files


@pytest.fixture
def stub(pki):
    """HTTPS stub with the self-signed 'keyfender' certificate."""
    cert, key, _ = pki["selfsigned"]
    srv = StubServer(cert, key).start()
    yield srv
    srv.stop()


@pytest.fixture
def ca_stub(pki):
    """HTTPS stub with a certificate for IP 127.0.0.1 from the private test CA."""
    cert, key, _ = pki["leaf"]
    srv = StubServer(cert, key).start()
    yield srv
    srv.stop()


@pytest.fixture
def logs():
    """Every loguru line emitted during the test (message text)."""
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", format="{level} {message}")
    yield lines
    logger.remove(sink)


def make_slot(urls, *, pins=(), insecure=False, ca_file=None, retries=None, timeout=5.0,
              keepalive=None, max_idle=None, max_conns=4) -> SlotConfig:
    return SlotConfig(
        label="test",
        instances=tuple(InstanceConfig(url=u, max_idle_connections=max_conns, sha256_fingerprints=tuple(pins),
                                       danger_insecure_cert=insecure, ca_file=ca_file) for u in urls),
        retries=RetryConfig(*retries) if retries else None,
        timeout_seconds=timeout,
        tcp_keepalive=KeepaliveConfig(*keepalive) if keepalive else None,
        connections_max_idle_duration=max_idle)
