"""OpenSSH with the module: `ssh-keygen -D` lists the token's RSA and ECDSA keys, and `ssh -I`
logs in to a local sshd (Debian openssh-server) that this test runs in inetd mode (`sshd -i`)
on a socket it listens on (127.0.0.1, port 0), with its own config, host key and an
authorized_keys made from `ssh-keygen -D`. OpenSSH 9.2 has no Ed25519 over PKCS#11."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from clientenv import MODULE, OPERATOR, need

SSHD = "/usr/sbin/sshd"


@pytest.fixture(scope="module")
def ssh_env(rsa_ec_only):
    need("ssh", "ssh-keygen")
    if not os.path.exists(SSHD):
        pytest.skip("openssh-server not installed")
    return rsa_ec_only


def keygen_d(env) -> list[str]:
    r = env.run("ssh-keygen", "-D", MODULE)
    return [line for line in r.stdout.decode().splitlines() if line.strip()]


def test_ssh_keygen_lists_rsa_and_ecdsa_keys(ssh_env):
    env = ssh_env
    lines = keygen_d(env)
    kinds = sorted(line.split()[0] for line in lines)
    assert kinds == ["ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ssh-rsa"], lines
    # the listed RSA key is the NetHSM's rsakey
    from cryptography.hazmat.primitives import serialization

    pub = serialization.load_pem_public_key(env.public_pem("rsakey").read_bytes())
    ssh_rsa = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert ssh_rsa.split()[1] in [line.split()[1] for line in lines]


class InetdSshd:
    """Accepts one connection on 127.0.0.1:0 and hands it to `sshd -i`."""

    def __init__(self, workdir: Path, authorized_keys: str):
        self.dir = workdir / "sshd"
        self.dir.mkdir(exist_ok=True)
        self.dir.chmod(0o700)
        hostkey = self.dir / "host_ed25519"
        if not hostkey.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey)], check=True)
        (self.dir / "authorized_keys").write_text(authorized_keys)
        (self.dir / "authorized_keys").chmod(0o600)
        self.log = self.dir / "sshd.log"
        self.config = self.dir / "sshd_config"
        self.config.write_text(f"""HostKey {hostkey}
AuthorizedKeysFile {self.dir / 'authorized_keys'}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PidFile none
""")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.proc = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(120)
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn, open(self.log, "wb") as log:
            self.proc = subprocess.Popen([SSHD, "-i", "-e", "-f", str(self.config)], stdin=conn, stdout=conn,
                                         stderr=log)
            self.proc.wait(timeout=120)

    def close(self):
        self.sock.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        self.thread.join(timeout=10)


def test_ssh_logs_in_with_a_token_key(ssh_env):
    env = ssh_env
    authorized = "\n".join(line for line in keygen_d(env) if line.startswith("ecdsa-sha2-nistp256")) + "\n"
    sshd = InetdSshd(env.workdir, authorized)
    try:
        # ssh asks for the token PIN (CKF_LOGIN_REQUIRED) through SSH_ASKPASS when there is no tty;
        # no IdentitiesOnly: with it, ssh drops PKCS#11 keys that no -i file names
        askpass = sshd.dir / "askpass"
        askpass.write_text(f"#!/bin/sh\necho '{OPERATOR[1]}'\n")
        askpass.chmod(0o700)
        r = subprocess.run(["ssh", "-F", "/dev/null", "-I", str(MODULE), "-o", "IdentityFile=none",
                            "-o", "StrictHostKeyChecking=no", "-o", f"UserKnownHostsFile={sshd.dir / 'known_hosts'}",
                            "-p", str(sshd.port), f"{getpass.getuser()}@127.0.0.1", "echo", "logged-in-with-token-key"],
                           env=dict(env.env, SSH_ASKPASS=str(askpass), SSH_ASKPASS_REQUIRE="force", DISPLAY=":0"),
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    finally:
        sshd.close()
    out = (r.stdout + r.stderr).decode(errors="replace")
    assert r.returncode == 0, out + sshd.log.read_text(errors="replace")[-2000:]
    assert "logged-in-with-token-key" in out
    assert "Accepted publickey" in sshd.log.read_text(errors="replace")
