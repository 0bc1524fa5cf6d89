"""Shared plumbing for the benchmarks: build the C harness, run the emulator as a separate
process (optionally pinned to CPUs), provision it over REST, write the module's config, set up a
private SoftHSM token, run harness/baseline processes and parse their RESULT lines.

Only 127.0.0.1 is ever contacted.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(VENV_PY if VENV_PY.exists() else Path(sys.executable))
MODULE = ROOT / "p11nethsm" / "libnethsm_pkcs11.so"
SOFTHSM = Path("/usr/lib/softhsm/libsofthsm2.so")

ADMIN = ("admin", "Administrator")
OPERATOR = ("operator", "opPassphrase")
UNLOCK = "UnlockPassphrase"
SOFTHSM_PIN, SOFTHSM_SO_PIN = "123456", "12345678"


# ------------------------------------------------------------------ small utilities
def log(*a):
    print(*a, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_results(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("RESULT "):
            out.append(json.loads(line[7:]))
    return out


class BenchError(RuntimeError):
    pass


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_results(cmd: list[str], env=None, timeout=120, watch_pids=()) -> list[dict]:
    """Runs a harness/baseline process, returns its RESULT dicts (raises on an error result).

    For every measured window (between the child's "MARK start" and "MARK end" lines) the CPU the
    `watch_pids` processes (the emulators) used is added to that window's RESULT as "peer_cores"
    (1.0 = one core busy for the whole window).
    """
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_chunks: list[str] = []
    t_err = threading.Thread(target=lambda: err_chunks.append(p.stderr.read()), daemon=True)
    t_err.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    res, mark, peer = [], None, None
    try:
        for line in p.stdout:
            if line.startswith("MARK start"):
                mark = (time.monotonic(), sum(proc_cpu_seconds(x) for x in watch_pids))
            elif line.startswith("MARK end") and mark:
                dt = time.monotonic() - mark[0]
                peer = (sum(proc_cpu_seconds(x) for x in watch_pids) - mark[1]) / dt if dt > 0 else None
            elif line.startswith("RESULT "):
                r = json.loads(line[7:])
                if mark and watch_pids and "per_sec" in r:
                    r["peer_cores"] = round(peer, 3) if peer is not None else None
                    mark = None
                res.append(r)
        p.wait()
    finally:
        timer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    t_err.join(5)
    stderr = "".join(err_chunks)
    errs = [r for r in res if "error" in r]
    if p.returncode != 0 or errs or not res:
        raise BenchError(f"{Path(cmd[0]).name} {' '.join(cmd[1:3])}: rc={p.returncode} "
                         f"{errs[:1]} stderr={stderr.strip()[-600:]!r}")
    return res


# ------------------------------------------------------------------ C harness
def build_harness(workdir: Path) -> str:
    exe = workdir / "p11bench"
    cc = os.environ.get("CC", "gcc")
    subprocess.run([cc, "-O2", "-std=c11", "-Wall", "-Wextra", "-pthread", "-o", str(exe),
                    str(BENCH / "p11bench.c"), "-ldl"], check=True)
    return str(exe)


# ------------------------------------------------------------------ emulator process
class EmulatorProc:
    """`python -m nethsm_emulator` in its own process. `cpus`: set of CPUs to pin it to."""

    def __init__(self, state_dir: Path, listeners: int = 1, cpus=None, provisioned_from=None):
        self.state_dir = Path(state_dir)
        self.listeners = listeners
        self.cpus = cpus
        self.urls: list[str] = []
        self.fingerprint = ""
        self.control_url = ""
        self.proc = None

    def start(self) -> "EmulatorProc":
        cmd = [PY, "-m", "nethsm_emulator", "--state-dir", str(self.state_dir), "--no-throttle",
               "--control", "127.0.0.1:0"]
        for _ in range(self.listeners):
            cmd += ["--listen", "127.0.0.1:0"]
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT / "emulator") + os.pathsep + env.get("PYTHONPATH", "")
        cpus = self.cpus
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, preexec_fn=(lambda: os.sched_setaffinity(0, cpus))
                                     if cpus else None)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise BenchError(f"emulator exited: {self.proc.stderr.read()[-2000:]}")
            parts = line.split()
            if parts and parts[0] == "listening":
                self.urls.append(parts[1])
                self.fingerprint = parts[3]
            elif parts and parts[0] == "control":
                self.control_url = parts[1]
                break
        if len(self.urls) != self.listeners:
            raise BenchError("emulator did not report its listeners")
        # keep draining stdout/stderr so the pipes never fill
        for stream in (self.proc.stdout, self.proc.stderr):
            threading.Thread(target=lambda s=stream: [None for _ in s], daemon=True).start()
        return self

    # control endpoint (plain HTTP on loopback)
    def control(self, method: str, path: str, body=None):
        import urllib3
        r = urllib3.request(method, self.control_url + path,
                            body=None if body is None else json.dumps(body),
                            headers={"Content-Type": "application/json"}, retries=False, timeout=30)
        if r.status >= 400:
            raise BenchError(f"control {method} {path}: {r.status} {r.data[:200]!r}")
        return json.loads(r.data) if r.data else None

    def request_count(self, index: int = 0, path=None, method=None) -> int:
        q = "?count=1" + (f"&path={path}" if path else "") + (f"&method={method}" if method else "")
        return self.control("GET", f"/instances/{index}/requests{q}")["count"]

    def reset_requests(self, index: int = 0):
        self.control("DELETE", f"/instances/{index}/requests")

    def set_operational(self):
        for i in range(self.listeners):
            self.control("PUT", f"/instances/{i}/state", {"state": "Operational"})

    def stop(self):
        stop_process(self.proc)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Rest:
    """Minimal admin/operator REST client used for provisioning (not measured)."""

    def __init__(self, url: str, fingerprint: str, maxsize: int = 4):
        import urllib3
        urllib3.disable_warnings()
        hostport, self.prefix = url.split("//", 1)[1].split("/", 1)
        host, port = hostport.rsplit(":", 1)
        assert host == "127.0.0.1", "loopback only"
        self.prefix = "/" + self.prefix.rstrip("/")
        self.pool = urllib3.HTTPSConnectionPool(host, int(port), maxsize=maxsize, block=True,
                                                cert_reqs="CERT_NONE", assert_hostname=False,
                                                assert_fingerprint=fingerprint, retries=False,
                                                timeout=60)

    def call(self, method, path, body=None, auth=None, ok=(200, 201, 204)):
        h = {"Content-Type": "application/json"}
        if auth:
            h["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        r = self.pool.urlopen(method, self.prefix + path, headers=h,
                              body=None if body is None else json.dumps(body))
        if r.status not in ok:
            raise BenchError(f"{method} {path}: HTTP {r.status} {r.data[:300]!r}")
        return json.loads(r.data) if r.data else None

    def state(self) -> str:
        return self.call("GET", "/health/state")["state"]

    def provision(self):
        st = self.state()
        if st == "Unprovisioned":
            self.call("POST", "/provision", {"unlockPassphrase": UNLOCK, "adminPassphrase": ADMIN[1],
                                             "systemTime": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                         time.gmtime())})
        elif st == "Locked":
            self.call("POST", "/unlock", {"passphrase": UNLOCK})
        users = {u["user"] for u in self.call("GET", "/users", auth=ADMIN)}
        if OPERATOR[0] not in users:
            self.call("PUT", f"/users/{OPERATOR[0]}", {"realName": "Bench Operator", "role": "Operator",
                                                        "passphrase": OPERATOR[1]}, auth=ADMIN)

    def key_ids(self) -> set[str]:
        return {k["id"] for k in self.call("GET", "/keys", auth=ADMIN)}

    def generate(self, key_id: str, ktype: str, mechanisms: list[str], length: int | None = None):
        body = {"type": ktype, "mechanisms": mechanisms, "id": key_id}
        if length:
            body["length"] = length
        self.call("POST", "/keys/generate", body, auth=ADMIN)

    def generate_many(self, ids: list[str], ktype="EC_P256", mechanisms=("ECDSA_Signature",),
                      workers: int = 4):
        existing = self.key_ids()
        todo = [i for i in ids if i not in existing]
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda i: self.generate(i, ktype, list(mechanisms)), todo))


# Keys used by P1/P5 (ids; the module exposes the id as CKA_LABEL and CKA_ID).
EC_KEY, RSA_KEY, RSA4K_KEY = "benchec", "benchrsa", "benchrsa4k"
# What the C harness sends for each algorithm, i.e. what the raw baseline must send.
SIGN_CASES = {
    "ecdsa": {"alg": "ecdsa", "key": EC_KEY, "mode": "ECDSA", "msg_len": 32, "title": "ECDSA P-256 (CKM_ECDSA, 32 B)"},
    "rsa": {"alg": "rsa", "key": RSA_KEY, "mode": "PKCS1", "msg_len": 51,
            "title": "RSA-2048 (CKM_RSA_PKCS, 51 B DigestInfo)"},
    # P5: a signature that costs the emulator far more CPU than the client (like a real appliance)
    "rsa4k": {"alg": "rsa", "key": RSA4K_KEY, "mode": "PKCS1", "msg_len": 51,
              "title": "RSA-4096 (CKM_RSA_PKCS, 51 B DigestInfo)"},
}


SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")


def sign_message(alg: str) -> bytes:
    """Exactly the bytes p11bench.c passes to C_Sign (its g_msg), so the baseline signs the same."""
    msg = bytearray((0xA5 ^ i) & 0xFF for i in range(SIGN_CASES[alg]["msg_len"]))
    if alg == "rsa":
        msg[:len(SHA256_DIGESTINFO)] = SHA256_DIGESTINFO
    return bytes(msg)


def provision_bench_keys(rest: Rest):
    rest.provision()
    have = rest.key_ids()
    if EC_KEY not in have:
        rest.generate(EC_KEY, "EC_P256", ["ECDSA_Signature"])
    if RSA_KEY not in have:
        rest.generate(RSA_KEY, "RSA", ["RSA_Signature_PKCS1"], 2048)
    if RSA4K_KEY not in have:
        rest.generate(RSA4K_KEY, "RSA", ["RSA_Signature_PKCS1"], 4096)


# ------------------------------------------------------------------ module config
def write_module_config(path: Path, urls: list[str], fingerprint: str, log_file: Path,
                        label: str = "NetHSM", pool: int = 8, log_level: str = "Error") -> Path:
    lines = [f"log_level: {log_level}", f"log_file: {log_file}", "slots:", f"  - label: {label}",
             "    operator:", f"      username: {OPERATOR[0]}", f"      password: {OPERATOR[1]}",
             "    administrator:", f"      username: {ADMIN[0]}", f"      password: {ADMIN[1]}",
             "    instances:"]
    for u in urls:
        lines += [f"      - url: {u}", f"        max_idle_connections: {pool}",
                  "        sha256_fingerprints:", f"          - \"{fingerprint}\""]
    path.write_text("\n".join(lines) + "\n")
    return path


def module_env(config: Path) -> dict:
    env = dict(os.environ)
    env["P11NETHSM_CONFIG_FILE"] = str(config)
    return env


# ------------------------------------------------------------------ SoftHSM
class SoftHSM:
    """A private SoftHSM token (SOFTHSM2_CONF in a temp dir) with one EC P-256 key."""

    LABEL = "bench"

    def __init__(self, workdir: Path):
        self.dir = workdir / "softhsm"
        (self.dir / "tokens").mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "softhsm2.conf"
        self.conf.write_text(f"directories.tokendir = {self.dir / 'tokens'}\nobjectstore.backend = file\n"
                             "log.level = ERROR\n")
        self.env = dict(os.environ, SOFTHSM2_CONF=str(self.conf))

    @staticmethod
    def available() -> bool:
        return SOFTHSM.exists() and shutil.which("softhsm2-util") is not None

    def setup(self):
        q = {"env": self.env, "check": True, "capture_output": True}
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", self.LABEL,
                        "--so-pin", SOFTHSM_SO_PIN, "--pin", SOFTHSM_PIN], **q)
        if shutil.which("pkcs11-tool"):
            subprocess.run(["pkcs11-tool", "--module", str(SOFTHSM), "--login", "--pin", SOFTHSM_PIN,
                            "--keypairgen", "--key-type", "EC:prime256v1", "--id", "01",
                            "--label", EC_KEY], **q)
        return self


def tmpdir(prefix="p11bench-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def stop_process(proc) -> None:
    """Terminate a child the bench started (kill it after 10 s), if it still runs."""
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def print_table(title: str, cells: list[list[str]], notes=()) -> None:
    """Print formatted cells (first row: the header) as an aligned table with notes below."""
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    out = [f"\n== {title}"]
    for n, r in enumerate(cells):
        out.append("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    out += [f"   {n}" for n in notes]
    print("\n".join(out), flush=True)
