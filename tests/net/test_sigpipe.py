"""A host that leaves SIGPIPE at its default (pkcs11-tool, most C programs) must survive a
NetHSM that closes the connection while the module is still writing: the write then fails
with EPIPE, which would otherwise raise SIGPIPE and kill the host."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
import threading

from tests.net.certs import make_cert

CLIENT = textwrap.dedent(
    """
    import signal, sys
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # as a C host has it
    from p11nethsm.api.client import NetHSM, Credentials
    from p11nethsm.api.errors import NetHSMError
    from p11nethsm.config.model import InstanceConfig, SlotConfig
    inst = InstanceConfig(url=sys.argv[1], danger_insecure_cert=True)
    api = NetHSM(SlotConfig(label="s", instances=(inst,), timeout_seconds=5), threads=False)
    creds = Credentials("operator", "opPassphrase")
    for _ in range(10):
        try:
            api.sign(creds, "k", "PKCS1", b"x" * (8 << 20))
        except NetHSMError as exc:
            print("error", type(exc).__name__, file=sys.stderr)
    api.close()
    print("survived", file=sys.stderr)
    """
)


def _closing_tls_server(stop: threading.Event, tmp_path) -> tuple[int, threading.Thread]:
    """Completes each TLS handshake, then closes the connection without reading."""
    pair, _, _ = make_cert("127.0.0.1")
    (tmp_path / "c.pem").write_bytes(pair.cert_pem)
    (tmp_path / "k.pem").write_bytes(pair.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    lsock = socket.create_server(("127.0.0.1", 0))
    lsock.settimeout(0.2)

    def serve():
        while not stop.is_set():
            try:
                raw, _ = lsock.accept()
            except OSError:
                continue
            try:
                tls = ctx.wrap_socket(raw, server_side=True)
                # RST at once (linger 0), so the client's next write gets EPIPE.
                pass
                tls.close()
            except OSError:
                raw.close()
        lsock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return lsock.getsockname()[1], thread


def test_host_with_default_sigpipe_survives_peer_close_during_write(tmp_path):
    stop = threading.Event()
    port, thread = _closing_tls_server(stop, tmp_path)
    try:
        proc = subprocess.run([sys.executable, "-c", CLIENT, f"https://127.0.0.1:{port}/api/v1"],
                              capture_output=True, timeout=60)
    finally:
        stop.set()
        thread.join(5)
    err = proc.stderr.decode()
    assert proc.returncode == 0, f"host died (rc={proc.returncode}): {err[-2000:]}"
    assert "survived" in err and "error" in err, err[-2000:]
