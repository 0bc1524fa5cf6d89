"""Connection pool behaviour against a real HTTPS server: reuse, idle expiry, keepalive, limits."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from p11nethsm.api.client import Credentials, NetHSM
from p11nethsm.net import instances as instances_mod

from .conftest import make_slot

OP = Credentials("operator", "opPassphrase")


@pytest.fixture
def pin(pki):
    return [pki["selfsigned"][2].sha256]


def test_connections_are_reused(stub, pin):
    c = NetHSM(make_slot([stub.url], pins=pin), threads=True)
    for _ in range(20):
        c.health_state()
    assert stub.connections == 1
    stats = c.stats[stub.url]
    assert (stats.requests, stats.connections) == (20, 1)
    c.close()


def test_idle_connection_older_than_max_idle_is_not_reused(stub, pin):
    c = NetHSM(make_slot([stub.url], pins=pin, max_idle=0.3), threads=True)
    c.health_state()
    c.health_state()
    assert stub.connections == 1
    time.sleep(0.5)
    c.health_state()
    assert stub.connections == 2
    assert c.stats[stub.url].expired == 1
    c.close()


def test_tcp_keepalive_options_are_set_on_the_socket(stub, pin):
    c = NetHSM(make_slot([stub.url], pins=pin, keepalive=(600, 60, 3)), threads=True)
    c.health_state()
    inst = c.instances[0]
    conn = inst.pool.pool.get(block=False)
    inst.pool.pool.put(conn)
    sock = conn.sock
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 600
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 60
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    c.close()


def test_no_keepalive_configured_leaves_it_off(stub, pin):
    c = NetHSM(make_slot([stub.url], pins=pin), threads=True)
    c.health_state()
    conn = c.instances[0].pool.pool.get(block=False)
    c.instances[0].pool.pool.put(conn)
    assert conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
    c.close()


def test_pool_keeps_at_most_max_idle_connections_without_blocking(stub, pin):
    barrier = threading.Barrier(6)
    stub.route = lambda h: (barrier.wait(5), (200, "application/json", b'{"state":"Operational"}'))[1]
    c = NetHSM(make_slot([stub.url], pins=pin, max_conns=2), threads=True)
    threads = [threading.Thread(target=c.health_state) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    stats = c.stats[stub.url]
    assert stats.connections == 6 and stats.discarded == 4
    assert sum(1 for x in c.instances[0].pool.pool.queue if x is not None) == 2
    c.close()


def test_basic_auth_and_media_types(stub, pin):
    seen = []

    def route(h):
        seen.append((h.command, h.path, h.headers.get("Authorization"), h.headers.get("Accept"),
                     h.headers.get("Content-Type")))
        if h.path.endswith("/public.pem"):
            return 200, "application/x-pem-file", b"-----BEGIN PUBLIC KEY-----\n"
        if h.path.endswith("/cert"):
            return (200, "application/octet-stream", b"\x30\x00") if h.command == "GET" else (201, None, b"")
        return 200, "application/json", b'{"signature":"AAEC"}'

    stub.route = route
    c = NetHSM(make_slot([stub.url], pins=pin), threads=True)
    assert c.sign(OP, "k1", "ECDSA", b"m") == b"\x00\x01\x02"
    c.public_pem(OP, "k1")
    assert c.get_cert(OP, "k1") == b"\x30\x00"
    c.put_cert(OP, "k1", b"data")
    auth = "Basic b3BlcmF0b3I6b3BQYXNzcGhyYXNl"
    assert seen == [
        ("POST", "/api/v1/keys/k1/sign", auth, "*/*", "application/json"),
        ("GET", "/api/v1/keys/k1/public.pem", auth, "application/x-pem-file", None),
        ("GET", "/api/v1/keys/k1/cert", auth, "application/octet-stream", None),
        ("PUT", "/api/v1/keys/k1/cert", auth, "*/*", "application/octet-stream"),
    ]
    c.close()


def test_odd_ids_are_quoted_in_paths(stub, pin):
    stub.route = lambda h: (204, None, b"")
    c = NetHSM(make_slot([stub.url], pins=pin), threads=True)
    c.delete_key(OP, "a/b?c")
    assert stub.requests[-1][1] == "/api/v1/keys/a%2Fb%3Fc"
    c.close()


def test_close_does_not_wait_for_the_checkers_back_off(stub, pin, monkeypatch):
    # An hour of back-off: a close() that waited for the checker's sleep would never return
    # within the (generous) wait below, however slow the machine is.
    monkeypatch.setattr(instances_mod, "BACKOFF", (3600.0,))
    stub.route = lambda h: (503, "application/json", b'{"message":"down"}')
    c = NetHSM(make_slot([stub.url], pins=pin), threads=True)
    with pytest.raises(Exception):
        c.health_state()
    checker = c._failover._checker
    assert checker is not None and checker.running
    closed = threading.Event()
    threading.Thread(target=lambda: (c.close(), closed.set()), daemon=True).start()
    assert closed.wait(60), "close() waited for the back-off"
    assert not checker.running


def test_forked_child_drops_pools_and_leaves_the_parents_connection_alone(stub, pin):
    c = NetHSM(make_slot([stub.url], pins=pin), threads=True)
    assert c.health_state() == "Operational"
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            c.drop_after_fork()
            code = 0 if c.health_state() == "Operational" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.health_state() == "Operational"  # the parent's pooled connection still works
    assert stub.connections == 2  # parent 1 (reused after the fork), child 1
    assert c.stats[stub.url].connections == 1
    c.close()


def test_construction_does_no_io_and_starts_no_thread():
    before = threading.active_count()
    c = NetHSM(make_slot(["https://192.0.2.1:8443/api/v1", "https://192.0.2.2:8443/api/v1"]), threads=True)
    assert all(i._pool is None for i in c.instances)
    assert c._failover._checker is None and threading.active_count() == before
    c.close()


def test_health_thread_starts_lazily_on_first_failure_only_with_threads(stub, pin):
    stub.route = lambda h: (503, "application/json", b'{"message":"x"}')
    for threads in (True, False):
        c = NetHSM(make_slot([stub.url], pins=pin), threads=threads)
        with pytest.raises(Exception):
            c.health_state()
        assert (c._failover._checker is not None) is threads
        if threads:
            assert c._failover._checker._thread.daemon
        c.close()


def test_credentials_repr_hides_the_password_and_header_is_cached():
    creds = Credentials("operator", "s3cret-passphrase")
    assert "s3cret" not in repr(creds)
    assert creds.headers is creds.headers
    assert creds == Credentials("operator", "s3cret-passphrase")


def test_default_pool_grows_with_concurrency_so_threads_do_not_churn_connections(stub, pin):
    """Without max_idle_connections (the default: number of CPUs, 2 here) 8 threads used to open
    a new TLS connection for most of their requests (the vendor module's issue #157)."""
    threads_n, rounds = 8, 5
    barrier = threading.Barrier(threads_n)
    stub.route = lambda h: (barrier.wait(5), (200, "application/json", b'{"state":"Operational"}'))[1]
    c = NetHSM(make_slot([stub.url], pins=pin, max_conns=None), threads=True)
    assert c.instances[0].pool.pool.maxsize == (os.cpu_count() or 1)

    def worker():
        for _ in range(rounds):
            c.health_state()
    workers = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    stats = c.stats[stub.url]
    assert stats.requests == threads_n * rounds
    assert stats.connections == threads_n and stats.discarded == 0
    c.close()
