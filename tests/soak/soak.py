"""Chaos soak: the built module in a host process (tests/soak/soak_host.py: 8 threads, a realistic
mix through the .so, periodic forks) against a two-instance NetHSM emulator cluster while a fault
driver changes faults at random: stall, slow drip, reset (before and after processing), close
mid-body, 500/503, lock/unlock, instance down and back.

Invariants, checked while it runs and at the end, each failure counted as a violation:
- every call returns within its deadline, (retries.count + 1) * timeout_seconds + 3 s;
- no CKR_GENERAL_ERROR, no traceback (host stderr, module log), no crash, no hung fork child;
- the keys on the NetHSM are exactly those the workers believe they created and did not delete;
- open fds, threads and RSS of the host do not grow (after warm-up vs. at the end).

    make soak                                   # SOAK_SECONDS=180 by default
    .venv/bin/python tests/soak/soak.py --duration 30 [--threads 8] [--seed 1] [--keep]

Prints a table of counts (calls, faults injected, forks, violations) and exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

TIMEOUT, RETRIES, DELAY = 2.0, 1, 0.2
DEADLINE = (RETRIES + 1) * TIMEOUT + 3
# growth allowed between the warm-up sample and the end (pools fill up, caches settle)
GROWTH = {"fds": 16, "threads": 4, "rss_kib": 64 * 1024}
PATHS = (None, r"/sign$", r"/decrypt$", r"/keys/generate$", r"/keys$", r"/keys/soak[^/]*$", r"/cert$",
         r"/health/ready$", r"/users/")


class FaultDriver:
    """Injects a random fault on a random instance every 0.3-1.5 s; each lasts 1-4 s."""

    KINDS = (("stall", 3), ("drip", 2), ("reset", 2), ("reset_after", 2), ("cut", 2), ("error", 3),
             ("lock", 1), ("down", 1))

    def __init__(self, instances, rng: random.Random):
        self.instances = instances
        self.rng = rng
        self.injected: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._restore: list[tuple[float, object, str]] = []
        self._thread = threading.Thread(target=self._run, name="fault-driver", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        for inst in self.instances:  # everything back to normal
            inst.clear_faults()
            inst.up()
            inst.unlock()

    def _inject(self, inst) -> str:
        kinds = [k for k, _ in self.KINDS]
        kind = self.rng.choices(kinds, [w for _, w in self.KINDS])[0]
        path = self.rng.choice(PATHS)
        if kind == "stall":
            inst.stall(path=path, count=self.rng.randint(1, 3))
        elif kind == "drip":
            inst.drip(0.3, path=path, count=1)
        elif kind == "reset":
            inst.reset_connections(path=path, count=2)
        elif kind == "reset_after":
            inst.reset_connections(path=path, count=1, after_processing=True)
        elif kind == "cut":
            inst.cut_body(path=path, count=1)
        elif kind == "error":
            inst.fail(self.rng.choice((500, 503)), path=path, count=self.rng.randint(1, 3))
        elif kind == "lock":
            inst.lock()
        elif kind == "down":
            inst.down()
        return kind

    def _run(self):
        while not self._stop.wait(self.rng.uniform(0.3, 1.5)):
            now = time.monotonic()
            try:
                for item in [r for r in self._restore if r[0] <= now]:
                    self._restore.remove(item)
                    _, inst, kind = item
                    if kind == "lock":
                        inst.unlock()
                    elif kind == "down":
                        inst.up()
                    else:
                        inst.clear_faults()  # also releases stalled requests
                inst = self.rng.choice(self.instances)
                kind = self._inject(inst)
                self.injected[kind] += 1
                self._restore.append((now + self.rng.uniform(1.0, 4.0), inst, kind))
            except Exception as exc:  # the driver must keep going; reported
                self.errors.append(f"{type(exc).__name__}: {exc}")


def self_signed_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "soak")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def write_config(path: str, hsm, log_file: str) -> None:
    instances = "".join(f'      - url: "{u}"\n        sha256_fingerprints: ["{hsm.fingerprint}"]\n'
                        f"        max_idle_connections: 4\n" for u in hsm.urls)
    with open(path, "w") as fh:
        fh.write(f"""log_level: Info
log_file: {log_file}
slots:
  - label: SoakHSM
    operator: {{username: operator, password: opPassphrase}}
    administrator: {{username: admin, password: Administrator}}
    timeout_seconds: {TIMEOUT:g}
    retries: {{count: {RETRIES}, delay_seconds: {DELAY:g}}}
    instances:
{instances}""")


def soak_keys(hsm) -> set[str]:
    from nethsm_emulator.provision import ADMIN, NetHSM

    client = NetHSM(hsm.urls[0], hsm.fingerprint)
    r = client.request("GET", "/keys", ADMIN)
    return {k["id"] for k in json.loads(r.data) if k["id"].startswith("soak")}


def run(duration: float, threads: int, seed: int, keep: bool, fork_every: float) -> int:
    from nethsm_emulator.provision import ADMIN, NetHSM
    from nethsm_emulator.testing import start_emulator_process

    work = tempfile.mkdtemp(prefix="p11nethsm-soak-")
    hsm = start_emulator_process(instances=2, provisioned=True, throttle=False,
                                 state_dir=os.path.join(work, "emulator"))
    violations: list[str] = []
    try:
        rsa_pem = os.path.join(work, "rsakey.pub.pem")
        with open(rsa_pem, "wb") as fh:
            fh.write(NetHSM(hsm.urls[0], hsm.fingerprint).request("GET", "/keys/rsakey/public.pem", ADMIN).data)
        cert = os.path.join(work, "cert.der")
        with open(cert, "wb") as fh:
            fh.write(self_signed_der())
        conf, log, out = (os.path.join(work, n) for n in ("p11nethsm.conf", "module.log", "host.json"))
        write_config(conf, hsm, log)
        env = dict(os.environ, P11NETHSM_CONFIG_FILE=conf)
        quiet = max(6.0, 0.1 * duration)  # the last seconds run without faults: pending keys settle
        cmd = [sys.executable, "-m", "tests.soak.soak_host", "--duration", str(duration),
               "--threads", str(threads), "--deadline", str(DEADLINE), "--fork-every", str(fork_every),
               "--rsa-pem", rsa_pem, "--cert-der", cert, "--out", out, "--seed", str(seed)]
        host = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        driver = FaultDriver(hsm.instances, random.Random(seed)).start()
        time.sleep(max(0.0, duration - quiet))
        driver.stop()
        try:
            stdout, stderr = host.communicate(timeout=duration + 20 * DEADLINE + 60)
        except subprocess.TimeoutExpired:
            host.kill()
            stdout, stderr = host.communicate()
            violations.append("host did not finish (hang)")
        if host.returncode != 0:
            violations.append(f"host exited with {host.returncode}: {stderr.strip()[-2000:]}")
        if "Traceback" in stderr or "Traceback" in stdout:
            violations.append(f"traceback printed by the host: {stderr.strip()[-2000:]}")
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        if "Traceback" in text:
            violations.append("traceback in the module log")
        result = json.load(open(out)) if os.path.exists(out) else {}
        violations += result.get("violations", [])
        violations += [f"fault driver: {e}" for e in driver.errors]
        keys_note = "-"
        if result:
            on_hsm = soak_keys(hsm)
            believed, uncertain = set(result["believed"]), set(result["uncertain"])
            lost = believed - on_hsm
            extra = on_hsm - believed - uncertain
            if lost:
                violations.append(f"keys lost (believed created, not on the NetHSM): {sorted(lost)}")
            if extra:
                violations.append(f"keys on the NetHSM nobody believes exist: {sorted(extra)}")
            keys_note = (f"{len(on_hsm)} on the NetHSM = {len(believed)} believed + "
                         f"{len(on_hsm & uncertain)} of {len(uncertain)} whose deletion failed")
            warm, end = result["samples"]["warm"], result["samples"]["end"]
            for what, limit in GROWTH.items():
                if end[what] - warm[what] > limit:
                    violations.append(f"{what} grew from {warm[what]} to {end[what]} (more than {limit})")
        print_report(duration, threads, result, driver.injected, violations, keys_note)
        return 1 if violations else 0
    finally:
        hsm.stop()
        if keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def print_report(duration, threads, result, injected, violations, keys_note) -> None:
    forks = result.get("forks", {})
    print(f"chaos soak: {duration:g} s, {threads} threads, 2 emulator instances, deadline {DEADLINE:g} s per call")
    rows = [("calls", result.get("calls", 0)), ("faults injected", sum(injected.values())),
            ("forks", sum(forks.values())), ("violations", len(violations))]
    print("| " + " | ".join(name for name, _ in rows) + " |")
    print("|" + "|".join("-" * (len(name) + 1) + ":" for name, _ in rows) + "|")
    print("| " + " | ".join(f"{value:>{len(name)}}" for name, value in rows) + " |")
    print(f"faults: {', '.join(f'{k} {v}' for k, v in sorted(injected.items()))}")
    print(f"forks: {', '.join(f'{k} {v}' for k, v in sorted(forks.items())) or '-'}")
    print(f"slowest call: {result.get('slowest_s', '-')} s; keys: {keys_note}")
    s = result.get("samples", {})
    if s:
        print("host after warm-up -> end: " + ", ".join(f"{k} {s['warm'][k]} -> {s['end'][k]}" for k in GROWTH))
    rvs = Counter(result.get("rvs", {}))
    errors = [(k, v) for k, v in rvs.most_common() if not k.endswith(" CKR_OK")]
    print("return values other than CKR_OK: " + (", ".join(f"{k} {v}" for k, v in errors[:25]) or "none"))
    for v in violations[:50]:
        print(f"VIOLATION {v}")


def main() -> int:
    ap = argparse.ArgumentParser(description="chaos soak of the module (see the module docstring)")
    ap.add_argument("--duration", type=float, default=180.0, help="seconds (default 180)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--fork-every", type=float, default=5.0)
    ap.add_argument("--keep", action="store_true", help="keep the work directory (config, module log)")
    a = ap.parse_args()
    print(f"seed {a.seed}")
    return run(a.duration, a.threads, a.seed, a.keep, a.fork_every)


if __name__ == "__main__":
    sys.exit(main())
