#!/usr/bin/env python3
"""p11nethsm end-to-end demo: real PKCS#11 clients against a NetHSM emulator.

    make demo                               # builds everything, then runs this
    .venv/bin/python demo/run_demo.py       # after `make build`
    .venv/bin/python demo/run_demo.py --keep --verbose

What it does (each step is printed with the exact command):
  start the emulator in its own process, provision it over REST, write a p11nethsm.conf that pins
  the emulator's TLS certificate, check it with `p11nethsm check-config`, then with pkcs11-tool and
  openssl (libp11 engine): list slots, log in, generate an EC and an RSA key as SO, sign and verify,
  make a self-signed certificate through the module, store and read it back, decrypt RSA-PKCS and
  RSA-OAEP. Everything lives in one temporary directory; the emulator is stopped and the directory
  removed at the end, also on failure or Ctrl-C (--keep keeps the directory for inspection).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin/ (nethsm-emulator, p11nethsm)

ADMIN = ("admin", "Administrator")
OPERATOR = ("operator", "opPassphrase")
UNLOCK = "UnlockPassphrase"
LABEL = "DemoHSM"


class DemoError(Exception):
    pass


class Interrupted(BaseException):
    """SIGTERM/SIGINT: unwinds through the finally blocks like Ctrl-C."""


class Demo:
    def __init__(self, args):
        self.args = args
        self.verbose = args.verbose
        self.number = 0
        self.work: Path | None = None
        self.emulator: subprocess.Popen | None = None
        self.url = self.fingerprint = None
        self.module = None
        self.env = dict(os.environ)

    # ---- output --------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.number += 1
        if self.args.fail_at_step == self.number:
            raise DemoError(f"failing on purpose at step {self.number} (--fail-at-step)")
        print(f"\n[{self.number}] {title}", flush=True)

    def say(self, text: str) -> None:
        print(textwrap.indent(text, "    "), flush=True)

    def _short(self, arg: str) -> str:
        """Commands are printed relative to the work dir, with the module path abbreviated."""
        if self.module and arg == self.module:
            return "$MODULE"
        if self.work and arg.startswith(str(self.work) + "/"):
            return arg[len(str(self.work)) + 1:]
        if arg.startswith(str(BIN) + "/"):
            return arg[len(str(BIN)) + 1:]  # the venv's p11nethsm, nethsm-emulator
        return arg

    def run(self, *cmd, show: int = 12, input: bytes | None = None, check: bool = True,
            env: dict | None = None) -> subprocess.CompletedProcess:
        cmd = [str(c) for c in cmd]
        print("    $ " + " ".join(shlex.quote(self._short(c)) for c in cmd), flush=True)
        r = subprocess.run(cmd, cwd=self.work, env=env or self.env, capture_output=True, input=input,
                           timeout=120)
        out = (r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")).rstrip()
        if check and r.returncode != 0:
            raise DemoError(f"command failed with exit code {r.returncode}:\n  {' '.join(cmd)}\n"
                            + textwrap.indent(out[-4000:], "  | "))
        lines = [ln for ln in out.splitlines() if ln.strip()]
        limit = None if self.verbose else show
        for ln in lines[:limit]:
            print("      " + ln)
        if limit and len(lines) > limit:
            print(f"      ... ({len(lines) - limit} more lines; --verbose shows all)")
        return r

    def pkcs11_tool(self, *args, **kw):
        return self.run("pkcs11-tool", "--module", self.module, *args, **kw)

    def so(self):
        return ["--login", "--login-type", "so", "--so-pin", ADMIN[1]]

    def user(self):
        return ["--login", "--pin", OPERATOR[1]]

    # ---- lifecycle -----------------------------------------------------------------------

    def start_emulator(self) -> None:
        exe = BIN / "nethsm-emulator"
        if not exe.exists():
            raise DemoError(f"{exe} not found: run `make build` (installs ./emulator into .venv)")
        # the NetHSM 5.0 API: key labels, so `--id 01 --label demo-ec` keeps both (firmware without
        # labels refuses a label that differs from the CKA_ID rather than dropping it)
        cmd = [str(exe), "--listen", "127.0.0.1:0", "--api-5.0", "--state-dir", str(self.work / "emulator-state")]
        print("    $ " + " ".join(shlex.quote(self._short(c)) for c in cmd) + " &", flush=True)
        self.emulator = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(self.work / "emulator.log", "wb"),
                                         text=True, start_new_session=True)
        print(f"      emulator pid {self.emulator.pid}")
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = self.emulator.stdout.readline()
            if not line:
                break
            m = re.match(r"listening (\S+) sha256 (\S+)", line.strip())
            if m:
                self.url, self.fingerprint = m.groups()
                print(f"      {line.strip()}")
                return
        log = (self.work / "emulator.log").read_text(errors="replace")[-2000:]
        raise DemoError(f"the emulator did not start (exit code {self.emulator.poll()}):\n{log}")

    def stop_emulator(self) -> None:
        proc, self.emulator = self.emulator, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        print(f"    emulator (pid {proc.pid}) stopped")

    def cleanup(self) -> None:
        print("\n[cleanup]")
        self.stop_emulator()
        if self.work and self.work.exists():
            if self.args.keep:
                print(f"    kept {self.work} (--keep)")
            else:
                shutil.rmtree(self.work, ignore_errors=True)
                print(f"    removed {self.work}")

    # ---- the walk-through ----------------------------------------------------------------

    def main(self) -> None:
        self.step("Prerequisites: the module, the emulator and the client tools")
        self.module = subprocess.run([str(BIN / "p11nethsm"), "module-path"], capture_output=True, text=True,
                                     check=True).stdout.strip()
        if not Path(self.module).exists():
            raise DemoError(f"{self.module} does not exist: run `make build`")
        self.say(f"MODULE={self.module}")
        missing = [t for t in ("pkcs11-tool", "openssl") if shutil.which(t) is None]
        engine = Path(subprocess.run(["openssl", "version", "-e"], capture_output=True, text=True).stdout
                      .split('"')[1] if shutil.which("openssl") else "/nonexistent") / "pkcs11.so"
        if not engine.exists():
            missing.append("libengine-pkcs11-openssl")
        if missing:
            raise DemoError(f"missing: {', '.join(missing)} (make deps installs them)")
        self.say(f"pkcs11-tool, openssl and the libp11 engine ({engine}) found")

        self.work = Path(tempfile.mkdtemp(prefix="p11nethsm-demo-"))
        self.say(f"work directory: {self.work}")

        self.step("Start the NetHSM emulator in its own process (TLS, self-signed certificate)")
        self.start_emulator()

        self.step("Provision it over the REST API (unlock passphrase, admin, operator user)")
        sys.path.insert(0, str(ROOT / "emulator"))
        from nethsm_emulator.provision import NetHSM, provision_standard

        provision_standard(self.url, fingerprint=self.fingerprint, keys={})
        hsm = NetHSM(self.url, self.fingerprint)
        self.say(f"POST /provision, PUT /users/{OPERATOR[0]}: state is now {hsm.state()}; no keys yet")
        self.say(f"administrator {ADMIN[0]}/{ADMIN[1]}, operator {OPERATOR[0]}/{OPERATOR[1]}")

        self.step("Write p11nethsm.conf: pin the emulator's certificate (TLS verification on)")
        conf = self.work / "p11nethsm.conf"
        conf.write_text(textwrap.dedent(f"""\
            # p11nethsm configuration written by demo/run_demo.py
            log_level: Debug
            log_file: {self.work / 'p11nethsm.log'}
            slots:
              - label: {LABEL}
                description: NetHSM emulator of the demo
                operator:
                  username: {OPERATOR[0]}
                  password: {OPERATOR[1]}
                administrator:
                  username: {ADMIN[0]}            # no password: C_Login as SO gives it
                instances:
                  - url: {self.url}
                    sha256_fingerprints:
                      - "{self.fingerprint}"
                timeout_seconds: 30
            """))
        self.env["P11NETHSM_CONFIG_FILE"] = str(conf)
        self.say(conf.read_text().rstrip())
        self.say(f"export P11NETHSM_CONFIG_FILE={conf}")

        self.step("Check the configuration like the module reads it: p11nethsm check-config")
        self.run(BIN / "p11nethsm", "check-config", show=20)

        self.step("List slots and tokens: pkcs11-tool -L")
        self.pkcs11_tool("-L")

        self.step("Log in as the user (operator) and list objects (none yet)")
        self.pkcs11_tool(*self.user(), "--list-objects")

        self.step("Generate an EC P-256 key pair as SO (administrator PIN via C_Login)")
        self.pkcs11_tool(*self.so(), "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01",
                         "--label", "demo-ec", show=8)

        self.step("Generate an RSA-2048 key pair as SO")
        self.pkcs11_tool(*self.so(), "--keypairgen", "--key-type", "rsa:2048", "--id", "02",
                         "--label", "demo-rsa", show=8)

        self.step("List the objects the token now has")
        self.pkcs11_tool("--list-objects", show=30)

        self.step("Export the public keys: pkcs11-tool --read-object --type pubkey")
        for name, kid in (("ec", "01"), ("rsa", "02")):
            self.pkcs11_tool("--read-object", "--type", "pubkey", "--id", kid, "-o", f"{name}.pub.der")
            self.run("openssl", "pkey", "-pubin", "-inform", "DER", "-in", f"{name}.pub.der",
                     "-out", f"{name}.pub.pem")
        self.say("ec.pub.pem and rsa.pub.pem written")

        data = self.work / "message.txt"
        data.write_text("Hello from p11nethsm\n")
        self.step("Sign with the EC key in the NetHSM (ECDSA-SHA256), verify with openssl")
        self.pkcs11_tool("--sign", "--id", "01", "-m", "ECDSA-SHA256", "--signature-format", "openssl",
                         "-i", "message.txt", "-o", "ec.sig")
        self.run("openssl", "dgst", "-sha256", "-verify", "ec.pub.pem", "-signature", "ec.sig", "message.txt")

        self.step("Sign with the RSA key (SHA256-RSA-PKCS), verify with openssl")
        self.pkcs11_tool("--sign", "--id", "02", "-m", "SHA256-RSA-PKCS", "-i", "message.txt", "-o", "rsa.sig")
        self.run("openssl", "dgst", "-sha256", "-verify", "rsa.pub.pem", "-signature", "rsa.sig", "message.txt")

        self.step("Self-signed certificate through the module: openssl req -x509 with the libp11 engine")
        engine_conf = self.work / "openssl-engine.cnf"
        engine_conf.write_text(textwrap.dedent(f"""\
            openssl_conf = openssl_init
            [openssl_init]
            engines = engine_section
            [engine_section]
            pkcs11 = pkcs11_section
            [pkcs11_section]
            engine_id = pkcs11
            dynamic_path = {engine}
            MODULE_PATH = {self.module}
            init = 0
            [req]
            distinguished_name = dn
            [dn]
            """))
        engine_env = dict(self.env, OPENSSL_CONF=str(engine_conf))
        uri = f"pkcs11:token={LABEL};id=%02;type=private"
        self.run("openssl", "req", "-new", "-x509", "-engine", "pkcs11", "-keyform", "engine", "-key", uri,
                 "-sha256", "-days", "30", "-subj", "/CN=p11nethsm demo", "-out", "rsa.cert.pem", env=engine_env)
        self.run("openssl", "verify", "-CAfile", "rsa.cert.pem", "rsa.cert.pem")
        self.run("openssl", "x509", "-in", "rsa.cert.pem", "-noout", "-subject", "-fingerprint", "-sha256")

        self.step("Store the certificate on the token (as SO) and read it back")
        self.run("openssl", "x509", "-in", "rsa.cert.pem", "-outform", "DER", "-out", "rsa.cert.der")
        self.pkcs11_tool(*self.so(), "--write-object", "rsa.cert.der", "--type", "cert", "--id", "02",
                         "--label", "demo-rsa")
        self.pkcs11_tool("--read-object", "--type", "cert", "--id", "02", "-o", "rsa.cert.back.der")
        if (self.work / "rsa.cert.back.der").read_bytes() != (self.work / "rsa.cert.der").read_bytes():
            raise DemoError("the certificate read back differs from the one written")
        self.say("read back: identical to the certificate written")

        secret = self.work / "secret.txt"
        secret.write_text("the launch code is 0000\n")
        self.step("Decrypt RSA-PKCS: encrypt with openssl and the public key, decrypt in the NetHSM")
        self.run("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", "rsa.pub.pem", "-in", "secret.txt",
                 "-out", "secret.pkcs1")
        self.pkcs11_tool(*self.user(), "--decrypt", "--id", "02", "-m", "RSA-PKCS", "-i", "secret.pkcs1",
                         "-o", "secret.pkcs1.out")
        self._same(secret, "secret.pkcs1.out")

        self.step("Decrypt RSA-OAEP (SHA-256, MGF1-SHA256)")
        self.run("openssl", "pkeyutl", "-encrypt", "-pubin", "-inkey", "rsa.pub.pem", "-in", "secret.txt",
                 "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256",
                 "-pkeyopt", "rsa_mgf1_md:sha256", "-out", "secret.oaep")
        self.pkcs11_tool(*self.user(), "--decrypt", "--id", "02", "-m", "RSA-PKCS-OAEP", "--hash-algorithm",
                         "SHA256", "--mgf", "MGF1-SHA256", "-i", "secret.oaep", "-o", "secret.oaep.out")
        self._same(secret, "secret.oaep.out")

        self.step("Troubleshooting: the module's log (state transitions and calls)")
        log = (self.work / "p11nethsm.log").read_text(errors="replace").splitlines()
        transitions = [ln for ln in log if "-->" in ln]
        self.say(f"{self.work / 'p11nethsm.log'}: {len(log)} lines, {len(transitions)} state transitions, e.g.:")
        picks = [ln for ln in transitions if "login" in ln or "token[" in ln][:4] + \
                [ln for ln in transitions if "op[" in ln][:2]
        for ln in picks:
            self.say("  " + ln.split(" ", 1)[1] if " " in ln else ln)
        self.say("(docs/state-machines.md explains every machine; README 'Troubleshooting')")

        self.step("Troubleshooting: `p11nethsm trace` renders the log as per-session timelines")
        sign = next((ln for ln in log if "C_SignInit(" in ln and "CKM_ECDSA_SHA256" in ln), None)
        pid = re.search(r"p11nethsm\[(\d+)\]", sign or "")
        if pid is None:
            raise DemoError("no C_SignInit with CKM_ECDSA_SHA256 in the module log")
        self.say("the pkcs11-tool process that signed with ECDSA-SHA256, then the summary of the whole log:")
        self.run(BIN / "p11nethsm", "trace", "p11nethsm.log", "--pid", pid.group(1), show=40)
        out = self.run(BIN / "p11nethsm", "trace", "p11nethsm.log", "--slowest", "3", show=0)
        summary = out.stdout.decode(errors="replace").split("summary:", 1)[-1]
        self.say("summary:" + summary.rstrip())

    def _same(self, expected: Path, got: str) -> None:
        if (self.work / got).read_bytes() != expected.read_bytes():
            raise DemoError(f"{got} differs from {expected.name}")
        self.say(f"decrypted: {(self.work / got).read_text().strip()!r} (matches)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="p11nethsm end-to-end demo against the NetHSM emulator")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (config, keys, log)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the full output of every command")
    ap.add_argument("--fail-at-step", type=int, default=0, help=argparse.SUPPRESS)  # tests: cleanup on failure
    args = ap.parse_args(argv)

    def interrupted(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    demo = Demo(args)
    started = time.monotonic()
    try:
        demo.main()
    except DemoError as exc:
        print(f"\nDEMO FAILED at step {demo.number}: {exc}", file=sys.stderr, flush=True)
        if demo.work and (demo.work / "p11nethsm.log").exists():
            tail = (demo.work / "p11nethsm.log").read_text(errors="replace").splitlines()[-15:]
            print("last lines of the module log:\n" + textwrap.indent("\n".join(tail), "  | "), file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"\ninterrupted ({exc}) at step {demo.number}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        demo.cleanup()
    print(f"\nDEMO OK: {demo.number} steps in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
