"""Log sinks: syslog (unix socket, UDP, TCP) in RFC 3164 format, file, stderr; levels; secrets."""

from __future__ import annotations

import os
import re
import socket
import tempfile
import threading

import pytest
from loguru import logger as host_logger  # the process-wide loguru logger: a Python host's

from p11nethsm import logflags, logging_setup
from p11nethsm.log import real as _own

logger = _own()  # the module's own loguru logger (its own core)
from p11nethsm.config.model import Config, SyslogUdp

# <PRI>Mmm dd hh:mm:ss [HOST ]PROCESS[PID]: Level message
RFC3164 = re.compile(
    r"^<(?P<pri>\d{1,3})>(?P<ts>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?:(?P<host>[^ ]+) )?"
    r"(?P<proc>[^\[]+)\[(?P<pid>\d+)\]: (?P<level>Trace|Debug|Info|Warn|Error) (?P<msg>.*)$",
    re.S,
)
log = logger.bind()  # records of this test module are not ours: emit as the package does
plog = logger.patch(lambda r: r.update(name="p11nethsm.test"))


def _cfg(**kw):
    return Config(slots=(), **kw)


@pytest.fixture
def udp_server():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def _recv_udp(sock):
    data, _ = sock.recvfrom(65536)
    return data.decode()


def test_udp_syslog_rfc3164_with_hostname_process_pid_facility(udp_server):
    port = udp_server.getsockname()[1]
    logging_setup.configure(_cfg(syslog_udp=SyslogUdp(f"127.0.0.1:{port}"), syslog_facility="local3",
                                 syslog_hostname="localhsm-pkcs11", syslog_process="NetHSM Pkcs11",
                                 syslog_pid=4242, log_level="Info"))
    plog.warning("hello {}", "world")
    m = RFC3164.match(_recv_udp(udp_server))
    assert m, "not RFC 3164"
    assert int(m["pri"]) == 19 * 8 + 4  # local3.warning
    assert (m["host"], m["proc"], m["pid"], m["level"], m["msg"]) == (
        "localhsm-pkcs11", "NetHSM Pkcs11", "4242", "Warn", "hello world")


def test_udp_from_addr_is_used(udp_server):
    port = udp_server.getsockname()[1]
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    from_port = probe.getsockname()[1]
    probe.close()
    logging_setup.configure(_cfg(syslog_udp=SyslogUdp(f"127.0.0.1:{port}", f"127.0.0.1:{from_port}"),
                                 log_level="Info"))
    plog.info("x")
    _, addr = udp_server.recvfrom(65536)
    assert addr == ("127.0.0.1", from_port)


def test_tcp_syslog_is_newline_framed_rfc3164():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    port = server.getsockname()[1]
    logging_setup.configure(_cfg(syslog_tcp=f"127.0.0.1:{port}", log_level="Debug"))
    plog.debug("first")
    plog.error("second\nline")
    conn, _ = server.accept()
    conn.settimeout(5)
    data = b""
    while data.count(b"\n") < 2:
        data += conn.recv(4096)
    lines = data.decode().split("\n")[:2]
    first, second = (RFC3164.match(line) for line in lines)
    assert first and second
    assert int(first["pri"]) == 1 * 8 + 7 and first["msg"] == "first" and first["pid"] == str(os.getpid())
    assert int(second["pri"]) == 1 * 8 + 3 and second["msg"] == "second#012line"
    assert first["host"] == socket.gethostname()
    conn.close()
    server.close()


def test_unix_socket_syslog_omits_hostname():
    path = os.path.join(tempfile.mkdtemp(), "log.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    logging_setup.configure(_cfg(syslog_socket=path, log_level="Info", syslog_facility="auth"))
    plog.info("via unix")
    data = sock.recv(65536).decode()
    m = RFC3164.match(data)
    assert m and m["host"] is None and m["msg"] == "via unix" and int(m["pri"]) == 4 * 8 + 6
    sock.close()


def test_unix_stream_socket_is_supported():
    path = os.path.join(tempfile.mkdtemp(), "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(5)
    logging_setup.configure(_cfg(syslog_socket=path, log_level="Info"))
    got = {}

    def accept():
        conn, _ = server.accept()
        got["data"] = conn.recv(65536)

    t = threading.Thread(target=accept)
    t.start()
    plog.info("stream")
    t.join(5)
    assert RFC3164.match(got["data"].rstrip(b"\0").decode())["msg"] == "stream"


def test_syslog_send_failure_never_raises():
    logging_setup.configure(_cfg(syslog_tcp="127.0.0.1:1", log_level="Info"))
    plog.info("nobody listens")  # connection refused: dropped silently


def test_log_file_and_level_filtering(tmp_path):
    path = tmp_path / "p11.log"
    logging_setup.configure(_cfg(log_file=str(path), log_level="Warn"))
    plog.info("hidden")
    plog.warning("shown")
    text = path.read_text()
    assert "shown" in text and "hidden" not in text and " Warn " in text
    assert not logflags.DEBUG and not logflags.TRACE


def test_log_file_dash_is_stderr_and_nothing_on_stdout(capfd):
    logging_setup.configure(_cfg(log_file="-", log_level="Trace"))
    assert logflags.DEBUG and logflags.TRACE
    plog.trace("to stderr")
    out, err = capfd.readouterr()
    assert "to stderr" in err and " Trace " in err and out == ""


def test_default_is_syslog_and_stderr(monkeypatch, capfd):
    path = os.path.join(tempfile.mkdtemp(), "devlog")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    monkeypatch.setattr(logging_setup, "DEFAULT_SOCKETS", ("/nonexistent/dev/log", path))
    logging_setup.configure(_cfg(log_level="Info"))
    plog.info("both")
    assert RFC3164.match(sock.recv(65536).decode())["msg"] == "both"
    assert "both" in capfd.readouterr().err
    sock.close()


def test_syslog_key_alone_turns_stderr_off(udp_server, capfd):
    port = udp_server.getsockname()[1]
    logging_setup.configure(_cfg(syslog_udp=SyslogUdp(f"127.0.0.1:{port}"), log_level="Info"))
    plog.info("only syslog")
    assert "only syslog" in _recv_udp(udp_server)
    assert capfd.readouterr().err == ""


def test_default_level_is_warn(capfd):
    logging_setup.configure(_cfg(log_file="-"))
    plog.info("quiet")
    plog.warning("loud")
    err = capfd.readouterr().err
    assert "loud" in err and "quiet" not in err


def test_records_of_other_packages_are_not_taken(capfd):
    logging_setup.configure(_cfg(log_file="-", log_level="Trace"))
    host_logger.patch(lambda r: r.update(name="hostapp")).warning("host message")
    logger.patch(lambda r: r.update(name="hostapp")).warning("host message")
    # the host's own loguru handlers (here pytest's default stderr one) may print it; ours do not
    ours = [line for line in capfd.readouterr().err.splitlines() if "host message" in line and "p11nethsm[" in line]
    assert not ours


def test_dispatcher_import_loads_no_loguru_and_prints_nothing_before_configuration():
    """loguru costs ~55 ms at C_Initialize, so it is loaded on the first line written; a line
    logged before logging is configured is written nowhere (stdout belongs to the host)."""
    import subprocess
    import sys

    code = ("import sys; from p11nethsm import dispatch; assert 'loguru' not in sys.modules; "
            "from p11nethsm.log import logger; logger.error('early'); logger.warning('early'); "
            "assert 'loguru' not in sys.modules; "
            "import loguru; logger.error('early after a host imported loguru')")
    env = {k: v for k, v in os.environ.items() if k != "P11NETHSM_LOG_TEE"}  # the suite's tee logs at Trace
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "" and out.stdout == ""


def test_first_line_at_the_configured_level_loads_loguru_and_reaches_the_sink(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "p.log"
    code = ("import sys; from p11nethsm import logging_setup; from p11nethsm.config.model import Config; "
            f"logging_setup.configure(Config(slots=(), log_level='Warn', log_file={str(path)!r})); "
            "from p11nethsm.log import logger; "
            # our sinks take only records of the p11nethsm package: log as one of its modules
            "g = {'__name__': 'p11nethsm.example', 'logger': logger}; "
            "exec(\"logger.info('not written')\", g); assert 'loguru' not in sys.modules; "
            "exec(\"logger.warning('written')\", g); assert 'loguru' in sys.modules")
    env = {k: v for k, v in os.environ.items() if k != "P11NETHSM_LOG_TEE"}  # the suite's tee logs at Trace
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    text = path.read_text()
    assert "written" in text and "not written" not in text


def test_trace_login_logout_logs_transitions_and_no_password(init, tmp_path, udp_server, capfd):
    """All sinks (file, UDP syslog, a loguru catch-all) at Trace: transitions with slot and
    session ids are there, passwords and PINs are not."""
    port = udp_server.getsockname()[1]
    logfile = tmp_path / "p11.log"
    everything = []
    hid = logger.add(lambda m: everything.append(str(m)), level="TRACE", format="{message}\n{exception}")
    try:
        call = init(f"""
log_level: Trace
log_file: {logfile}
syslog_udp: {{to_addr: "127.0.0.1:{port}"}}
slots:
  - label: LocalHSM
    operator: {{username: operator, password: "configuredSecret1"}}
    administrator: {{username: admin}}
    instances: [{{url: "https://a:8443/api/v1"}}]
""")
        from core_fakes import cluster

        cluster("LocalHSM").users["operator"] = ("typedOperatorPin", "Operator")
        h = call.open()
        assert call.login(h, 1, "typedOperatorPin") == 0
        assert call("C_Logout", h) == 0
        assert call.login(h, 1, "wrongOperatorPin") != 0
        assert call("C_Finalize", None) == 0
    finally:
        logger.remove(hid)
    udp_server.settimeout(0.5)
    datagrams = []
    try:
        while True:
            datagrams.append(_recv_udp(udp_server))
    except socket.timeout:
        pass
    captured = capfd.readouterr()
    sinks = {
        "file": logfile.read_text(),
        "syslog": "\n".join(datagrams),
        "catch-all": "".join(everything),
        "stderr": captured.err,
        "stdout": captured.out,
    }
    for name, text in sinks.items():
        for secret in ("configuredSecret1", "typedOperatorPin", "wrongOperatorPin"):
            assert secret not in text, f"{secret} leaked to {name}"
    for name in ("file", "syslog"):
        assert f"login[0]: public --login_user--> user (session {h})" in sinks[name], name
        assert f"login[0]: user --logout--> public (session {h})" in sinks[name], name
        assert "C_Login(hSession=" in sinks[name] and "ulPinLen=16" in sinks[name], name
    assert all(RFC3164.match(d) for d in datagrams)
    assert sinks["stdout"] == ""


def test_failed_config_still_logs_to_stderr(call, write_config, monkeypatch, capfd):
    monkeypatch.setenv("P11NETHSM_CONFIG_FILE", write_config("slots: [{label: A}]"))
    assert call("C_Initialize", None) != 0
    err = capfd.readouterr().err
    assert "configuration error" in err and "slots[0]" in err


_ = log


def test_unreachable_syslog_is_not_retried_on_every_message(monkeypatch):
    sink = logging_setup.SyslogSink(logging_setup.SyslogTarget("tcp", "127.0.0.1:1"))
    attempts = []
    real = sink._connect

    def counting():
        attempts.append(1)
        return real()

    monkeypatch.setattr(sink, "_connect", counting)
    logging_setup.configure(_cfg(log_level="Info", log_file=os.devnull))
    hid = logger.add(sink, level="INFO", format="{message}")
    try:
        for _ in range(5):
            plog.info("x")
    finally:
        logger.remove(hid)
    assert len(attempts) == 2  # the first message: connect + one reconnect; then dropped for a while
