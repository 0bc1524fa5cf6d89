#!/usr/bin/env python3
"""W: the module against a zero-cost peer (issue 11). `make bench` runs it after run_all.py.

The emulator serves ~2k signatures/s and hides the module's own cost, so here the peer is Debian's
nginx on 127.0.0.1 (own prefix, self-signed certificate, `master_process off`), pinned to CPU 0,
serving canned NetHSM answers **recorded from the emulator at start** (health, info, keys, users,
one real signature per key). Every client runs pinned to CPU 1, so each figure is what one client
core achieves:

* `wrk` (C, keep-alive, a Lua script posting the same sign request): the physical limit;
* `plain_sign.py`: plain Python (ssl socket, one write, Content-Length, json, base64);
* the module through the C harness (bench/p11bench.c), one session per thread, **default config**
  (no tuning keys: no max_idle_connections, no timeouts).

Alternated in each round (rotating order), medians of --rounds. Reported: rates, module/wrk,
scaling 8/1 and 32/8, CPU us per signature (process CPU time / signatures: robust on a shared
machine), distinct TLS connections nginx accepted per 1,000 signatures (stub_status), a churn check
at 64 threads, and a py-spy profile summary of the module process.

    .venv/bin/python bench/wire.py                       # ECDSA, EdDSA, RSA-2048 at 1, 8, 32 threads
    .venv/bin/python bench/wire.py --algs ecdsa --rounds 3 --seconds 2 --save /tmp/w.json
    .venv/bin/python bench/wire.py --baseline bench/results/wire-before.json   # before/after table

Exit status 0 whatever the numbers; 1 if the bench could not run.
"""
from __future__ import annotations

import argparse
import base64
import collections
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import traceback
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (ADMIN, BENCH, MODULE, OPERATOR, PY, BenchError, EmulatorProc, Rest,  # noqa: E402
                     build_harness, free_port, log, median, parse_results, print_table, stop_process, tmpdir)

NGINX_CPU, CLIENT_CPU = "0", "1"
ALGS = {
    "ecdsa": {"key": "benchec", "type": "EC_P256", "mech": ["ECDSA_Signature"], "mode": "ECDSA", "len": 32,
              "title": "ECDSA P-256"},
    "eddsa": {"key": "benched", "type": "Curve25519", "mech": ["EdDSA_Signature"], "mode": "EdDSA", "len": 32,
              "title": "EdDSA Ed25519"},
    "rsa": {"key": "benchrsa", "type": "RSA", "mech": ["RSA_Signature_PKCS1"], "mode": "PKCS1", "len": 51,
            "length": 2048, "title": "RSA-2048 PKCS1"},
}
SHA256_DIGESTINFO = bytes.fromhex("3031300d060960864801650304020105000420")
GOALS = "module/wrk >= 0.60 @1, >= 0.30 @8; 8/1 >= 1.5; 32/8 >= 1.0; CPU <= 60 us @1, <= 40 us @8"


def message(alg: str) -> bytes:
    """The bytes p11bench.c signs (its g_msg), so every client sends the same request."""
    msg = bytearray((0xA5 ^ i) & 0xFF for i in range(ALGS[alg]["len"]))
    if alg == "rsa":
        msg[:len(SHA256_DIGESTINFO)] = SHA256_DIGESTINFO
    return bytes(msg)


def sign_body(alg: str) -> bytes:
    c = ALGS[alg]
    return json.dumps({"mode": c["mode"], "message": base64.b64encode(message(alg)).decode()},
                      separators=(",", ":")).encode()


def sign_request(alg: str, port: int) -> bytes:
    """The exact HTTP request bytes of one sign call, as the module sends them (plain Python's)."""
    body = sign_body(alg)
    return (f"POST /api/v1/keys/{ALGS[alg]['key']}/sign HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: {basic(OPERATOR)}\r\nAccept: */*\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def basic(user) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


# ------------------------------------------------------------------ recording
def record(work: Path, algs: list[str]) -> dict[tuple[str, str], tuple[int, str, bytes]]:
    """Provision an emulator, then record the answers the module's sign path needs."""
    emu = EmulatorProc(work / "emu-state").start()
    try:
        rest = Rest(emu.urls[0], emu.fingerprint)
        rest.provision()
        have = rest.key_ids()
        for alg in algs:
            c = ALGS[alg]
            if c["key"] not in have:
                rest.generate(c["key"], c["type"], c["mech"], c.get("length"))
        answers = {}

        def grab(method, path, auth, body=None):
            h = {"Authorization": basic(auth)} if auth else {}
            if body is not None:
                h["Content-Type"] = "application/json"
            r = rest.pool.urlopen(method, rest.prefix + path, headers=h, body=body)
            answers[(method, path)] = (r.status, r.headers.get("Content-Type") or "application/json", r.data)

        for path in ("/health/state", "/health/ready", "/health/alive", "/info"):
            grab("GET", path, None)
        grab("GET", "/system/info", ADMIN)
        grab("GET", "/keys", OPERATOR)
        grab("GET", f"/users/{OPERATOR[0]}", OPERATOR)
        grab("GET", f"/users/{ADMIN[0]}", ADMIN)
        for alg in algs:
            k = ALGS[alg]["key"]
            for sub in ("", "/public.pem", "/cert"):
                grab("GET", f"/keys/{k}{sub}", OPERATOR)
            grab("POST", f"/keys/{k}/sign", OPERATOR, sign_body(alg))
            assert answers[("POST", f"/keys/{k}/sign")][0] == 200, answers[("POST", f"/keys/{k}/sign")]
        return answers
    finally:
        emu.stop()


# ------------------------------------------------------------------ nginx
def _nginx_text(body: bytes) -> str:
    text = body.decode()
    if "$" in text:
        raise BenchError("a recorded answer contains '$' (nginx would read a variable)")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Nginx:
    def __init__(self, work: Path, answers):
        self.prefix = work / "nginx"
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.port, self.status_port = free_port(), free_port()
        cert, key = self.prefix / "cert.pem", self.prefix / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=keyfender"],
                       check=True, capture_output=True)
        fp = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", str(cert)],
                            check=True, capture_output=True, text=True).stdout
        self.fingerprint = fp.strip().split("=", 1)[1]
        locations = []
        for (method, path), (status, ctype, body) in sorted(answers.items()):
            locations.append(f"    location = /api/v1{path} {{ types {{ }} default_type {ctype.split(';')[0]}; "
                             f"return {status} {_nginx_text(body)}; }}")
        tmp = self.prefix / "tmp"
        conf = f"""
daemon off;
master_process off;
worker_processes 1;
pid {self.prefix}/nginx.pid;
error_log {self.prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  server {{
    listen 127.0.0.1:{self.status_port};
    location = /status {{ stub_status; }}
  }}
  server {{
    listen 127.0.0.1:{self.port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{ default_type application/json; return 404 '{{"message":"not recorded"}}'; }}
{chr(10).join(locations)}
  }}
}}
"""
        (self.prefix / "nginx.conf").write_text(conf)
        self.proc = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/api/v1"

    def start(self) -> "Nginx":
        self.proc = subprocess.Popen(["taskset", "-c", NGINX_CPU, "nginx", "-p", str(self.prefix), "-c",
                                      str(self.prefix / "nginx.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.counters()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise BenchError(f"nginx exited: {self.proc.stderr.read()[-1500:]!r}")
                time.sleep(0.05)
        raise BenchError("nginx did not start")

    def counters(self) -> tuple[int, int]:
        """(connections accepted, requests served) so far, from stub_status."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}/status", timeout=5).read().decode()
        accepts, _handled, requests = map(int, text.splitlines()[2].split())
        return accepts - 1, requests - 1  # less this status request's own connection and request

    def stop(self):
        stop_process(self.proc)


# ------------------------------------------------------------------ an earlier commit, side by side
def before_module(work: Path, rev: str) -> tuple[str, dict]:
    """The module of commit `rev` (package + shim) with a venv of its own that puts that package
    before this venv's dependencies: (path of its .so, env additions). Alternated with the current
    module in the same rounds, so machine load hits both alike."""
    src, venv = work / "before-src", work / "before-venv"
    src.mkdir()
    archive = subprocess.run(["git", "-C", str(BENCH.parent), "archive", rev, "p11nethsm", "libshim"],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    so = src / "p11nethsm" / "libnethsm_pkcs11.so"
    subprocess.run([PY, "libshim/build.py", "-q", "-o", str(so), "--build-dir", str(src / "build"),
                    "--baked-venv", ""], cwd=src, check=True, capture_output=True)
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True)
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / ver / "site-packages"
    deps = Path(PY).parent.parent / "lib" / ver / "site-packages"
    (site / "00-p11nethsm-before.pth").write_text(f"{src}\n")
    (site / "zz-deps.pth").write_text(f"{deps}\n")
    return str(so), {"P11NETHSM_VENV": str(venv)}


# ------------------------------------------------------------------ clients
def module_config(work: Path, nginx: Nginx) -> Path:
    """The module's config file for the bench: the default config, i.e. credentials, the
    instance and its pin only (no tuning keys)."""
    conf = work / "module.conf"
    conf.write_text(f"log_file: {work / 'module.log'}\nslots:\n  - label: NetHSM\n"
                    f"    operator: {{username: {OPERATOR[0]}, password: {OPERATOR[1]}}}\n"
                    f"    administrator: {{username: {ADMIN[0]}, password: {ADMIN[1]}}}\n"
                    f"    instances:\n      - url: {nginx.url}\n"
                    f"        sha256_fingerprints: [\"{nginx.fingerprint}\"]\n")
    return conf


class Clients:
    def __init__(self, a, work: Path, nginx: Nginx):
        self.a, self.work, self.nginx = a, work, nginx
        self.harness = build_harness(work)
        self.env = dict(os.environ, P11NETHSM_CONFIG_FILE=str(module_config(work, nginx)))
        self.before = None
        if a.before:
            so, extra = before_module(work, a.before)
            self.before = (so, dict(self.env, **extra))
        for alg in ALGS:
            body = sign_body(alg)
            (work / f"{alg}.lua").write_text(
                'wrk.method = "POST"\n'
                f"wrk.body = '{body.decode()}'\n"
                'wrk.headers["Content-Type"] = "application/json"\n'
                'wrk.headers["Accept"] = "*/*"\n'
                f'wrk.headers["Authorization"] = "{basic(OPERATOR)}"\n')
            (work / f"{alg}.http").write_bytes(sign_request(alg, nginx.port))

    def _run(self, cmd, env=None, timeout=120) -> tuple[str, dict]:
        """Run a client pinned to the client CPU; (stdout, nginx counter deltas)."""
        c0, u0 = self.nginx.counters(), _children_cpu()
        p = subprocess.run(["taskset", "-c", CLIENT_CPU, *cmd], env=env, capture_output=True, text=True,
                           timeout=timeout)
        c1, u1 = self.nginx.counters(), _children_cpu()
        if p.returncode != 0:
            raise BenchError(f"{Path(cmd[0]).name}: rc={p.returncode} {p.stdout[-400:]!r} {p.stderr[-800:]!r}")
        return p.stdout, {"connections": c1[0] - c0[0], "requests": c1[1] - c0[1], "child_cpu": u1 - u0}

    def _module_cmd(self, alg: str, threads: int, seconds: float, module: str | None = None) -> list[str]:
        return [self.harness, module or self.a.module, "sign", "--mech", alg, "--key", ALGS[alg]["key"],
                "--threads", str(threads), "--seconds", str(seconds), "--warmup", str(self.a.warmup),
                "--token", "NetHSM", "--pin", OPERATOR[1]]

    def module(self, alg: str, threads: int, before: bool = False) -> dict:
        so, env = self.before if before else (None, self.env)
        out, counts = self._run(self._module_cmd(alg, threads, self.a.seconds, so), env=env)
        r = [x for x in parse_results(out) if "per_sec" in x][-1]
        return {"per_sec": r["per_sec"], "cpu_us": 1e6 * r["cpu_cores"] / r["per_sec"] if r["per_sec"] else None,
                **counts}

    def profile(self, alg: str, threads: int, raw: Path, seconds: float = 4.0) -> bool:
        """py-spy on the module process in its steady state (attached after start-up and warm-up);
        False when py-spy is not installed (it comes with the `bench` extra)."""
        spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
        if not os.access(spy, os.X_OK):
            log("  profile skipped: py-spy is not installed (pip install '.[bench]'; make bench does)")
            return False
        p = subprocess.Popen(["taskset", "-c", CLIENT_CPU, *self._module_cmd(alg, threads, seconds + 6)],
                             env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(self.a.warmup + 1.5)
            subprocess.run(["taskset", "-c", CLIENT_CPU, spy, "record", "--pid", str(p.pid), "--format", "raw",
                            "--rate", "1000", "--duration", str(int(seconds)), "--output", str(raw), "--gil"],
                           check=True, capture_output=True, timeout=seconds + 30)
        finally:
            p.wait(60)
        return True

    def before_module(self, alg: str, threads: int) -> dict:
        return self.module(alg, threads, before=True)

    def wrk(self, alg: str, threads: int) -> dict:
        out, counts = self._run(["wrk", "-t1", f"-c{threads}", f"-d{max(1, round(self.a.seconds))}s", "-s",
                                 str(self.work / f"{alg}.lua"), f"{self.nginx.url}/keys/{ALGS[alg]['key']}/sign"])
        if "Non-2xx" in out:
            raise BenchError(f"wrk got errors: {out[-500:]}")
        # wrk's whole process CPU (user + kernel, rusage) per request nginx counted: what a C
        # client spends per signature on this machine, the floor for the module's CPU figures
        cpu_us = 1e6 * counts["child_cpu"] / counts["requests"] if counts["requests"] else None
        return {"per_sec": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "cpu_us": cpu_us, **counts}

    def plain(self, alg: str, threads: int) -> dict:
        out, counts = self._run([PY, str(BENCH / "plain_sign.py"), "--port", str(self.nginx.port),
                                 "--request-file", str(self.work / f"{alg}.http"), "--threads", str(threads),
                                 "--seconds", str(self.a.seconds), "--warmup", str(self.a.warmup)])
        r = parse_results(out)[-1]
        if "error" in r:
            raise BenchError(f"plain_sign: {r['error']}")
        return {"per_sec": r["per_sec"], "cpu_us": 1e6 * r["cpu_cores"] / r["per_sec"] if r["per_sec"] else None,
                **counts}


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ profile summary
def profile_summary(raw: Path, top: int = 12) -> list[tuple[str, float, float]]:
    """From py-spy's raw (collapsed) stacks: [(function, self %, total %)] by self time (lines merged)."""
    own, incl, total = collections.Counter(), collections.Counter(), 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [re.sub(r":\d+\)$", ")", re.sub(r" \(/.*/(p11nethsm|site-packages|python3\.\d+)/", r" (\1/", f))
                  for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return []
    return [(f, 100 * c / total, 100 * incl[f] / total) for f, c in own.most_common(top)]


# ------------------------------------------------------------------ the run
def fmt(x, nd=2):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def table(title, header, rows, notes=()):
    print_table(title, [header] + [[fmt(c) for c in r] for r in rows], notes)


def run(a) -> dict:
    work = tmpdir("p11wire-")
    log(f"wire bench in {work}; load average {os.getloadavg()}")
    answers = record(work, a.algs)
    nginx = Nginx(work, answers).start()
    res: dict = {"load_start": os.getloadavg(), "runs": {}}
    try:
        cl = Clients(a, work, nginx)
        kinds = ["module", "wrk", "plain"] + (["before_module"] if a.before else [])
        for alg in a.algs:
            for n in a.threads:
                runs = res["runs"].setdefault(f"{alg}/{n}", {k: [] for k in kinds})
                for r in range(a.rounds):
                    order = kinds[r % len(kinds):] + kinds[:r % len(kinds)]
                    for kind in order:
                        x = getattr(cl, kind)(alg, n)
                        runs[kind].append(x)
                        log(f"  {alg:5} {n:>2} threads round {r}: {kind:6} {x['per_sec']:>9,.0f}/s"
                            + (f"  {x['cpu_us']:.0f} us CPU/sig" if x.get("cpu_us") else "")
                            + f"  {x['connections']} conns")
        churn = {}
        for n in a.churn_threads:
            churn[n] = cl.module(a.algs[0], n)
            log(f"  churn {n} threads: {churn[n]['connections']} connections, {churn[n]['requests']} requests")
        res["churn"] = churn
        if a.profile:
            for n in (1, 8):
                raw = work / f"profile-{n}.txt"
                if not cl.profile(a.algs[0], n, raw):
                    break
                res[f"profile_{n}"] = profile_summary(raw)
    finally:
        nginx.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    res["load_end"] = os.getloadavg()
    return res


def summarize(res: dict, base: dict | None, a) -> None:
    med = {}
    for key, runs in res["runs"].items():
        med[key] = {k: {f: median([x.get(f) for x in v]) for f in ("per_sec", "cpu_us", "connections", "requests")}
                    for k, v in runs.items()}
    res["medians"] = med
    if any("before_module" in m for m in med.values()):  # measured side by side in this run
        base = {"medians": {k: {"module": m["before_module"], "wrk": m["wrk"]} for k, m in med.items()}}
    bmed = base.get("medians", {}) if base else {}
    rows = []
    for key, m in med.items():
        alg, n = key.split("/")
        mod, wrk, pl = m["module"], m["wrk"], m["plain"]
        conns = 1000 * mod["connections"] / mod["requests"] if mod["requests"] else None
        b = bmed.get(key, {}).get("module", {})
        rows.append([ALGS[alg]["title"], n, wrk["per_sec"], pl["per_sec"], mod["per_sec"],
                     mod["per_sec"] / wrk["per_sec"], pl["per_sec"] / wrk["per_sec"], mod["cpu_us"], pl["cpu_us"],
                     wrk["cpu_us"], conns] + ([b.get("per_sec"), b["per_sec"] / bmed[key]["wrk"]["per_sec"] if b else None,
                                b.get("cpu_us"),
                                1000 * b["connections"] / b["requests"] if b.get("requests") else None]
                               if base else []))
    header = ["case", "threads", "wrk/s", "python/s", "module/s", "module/wrk", "python/wrk",
              "module CPU us/sig", "python CPU us/sig", "wrk CPU us/req", "conns/1k sigs"]
    if base:
        header += ["before module/s", "before module/wrk", "before CPU us/sig", "before conns/1k"]
    table(f"W wire speed against nginx (canned answers), medians of {a.rounds} alternated rounds x {a.seconds} s;"
          f" nginx on CPU {NGINX_CPU}, each client on CPU {CLIENT_CPU}", header, rows,
          [f"goals: {GOALS}", "conns/1k sigs: TLS connections nginx accepted per 1,000 requests of the module run"
           " (warm-up and set-up included)", "wrk CPU us/req: wrk's user + kernel CPU (rusage) per request"
           " nginx counted: a C client's cost per signature on this machine"])
    srows = []
    for alg in a.algs:
        def rate(n, src=med):
            return src.get(f"{alg}/{n}", {}).get("module", {}).get("per_sec")
        r1, r8, r32 = rate(1), rate(8), rate(32)
        w1 = med.get(f"{alg}/1", {}).get("wrk", {}).get("per_sec")
        w8 = med.get(f"{alg}/8", {}).get("wrk", {}).get("per_sec")
        c1 = med.get(f"{alg}/1", {}).get("module", {}).get("cpu_us")
        c8 = med.get(f"{alg}/8", {}).get("module", {}).get("cpu_us")
        # None: not measured in this run (a --threads list without 1, 8 or 32)
        ok = [r1 / w1 >= 0.60 if r1 and w1 else None, r8 / w8 >= 0.30 if r8 and w8 else None,
              r8 / r1 >= 1.5 if r1 and r8 else None, r32 >= r8 if r8 and r32 else None,
              c1 <= 60 if c1 is not None else None, c8 <= 40 if c8 is not None else None]
        row = [ALGS[alg]["title"], r8 / r1 if r1 and r8 else None, r32 / r8 if r8 and r32 else None,
               " ".join("n/a" if x is None else "MET" if x else "MISSED" for x in ok)]
        if base:
            b1, b8, b32 = rate(1, bmed), rate(8, bmed), rate(32, bmed)
            row += [b8 / b1 if b1 and b8 else None, b32 / b8 if b8 and b32 else None]
        srows.append(row)
    table("W scaling of the module and goals", ["case", "8/1", "32/8",
          "goals (wrk@1, wrk@8, 8/1, 32/8, cpu@1, cpu@8)"] + (["before 8/1", "before 32/8"] if base else []), srows)
    if res.get("churn"):
        table("W connection churn, default config (module)", ["threads", "signatures", "TLS connections",
              "conns/1k sigs", "goal: connections ~ threads"],
              [[n, c["requests"], c["connections"], 1000 * c["connections"] / c["requests"] if c["requests"] else None,
                "MET" if c["connections"] <= 1.25 * n + 2 else "MISSED"] for n, c in res["churn"].items()])
    for n in (1, 8):
        prof = res.get(f"profile_{n}")
        if prof:
            table(f"W py-spy profile of the module process, {n} thread(s) (share of samples)",
                  ["function (file)", "self %", "total %"], [[f[:110], s, t] for f, s, t in prof])
    print(f"\n   load average: start {res['load_start']}, end {res['load_end']} (a shared machine moves the"
          " rates; CPU us/sig and the ratios of alternated rounds are the robust figures)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--algs", default="ecdsa,eddsa,rsa", type=lambda s: s.split(","))
    ap.add_argument("--threads", default="1,8,32", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--churn-threads", default="64", type=lambda s: [int(x) for x in s.split(",") if x])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--module", default=str(MODULE))
    ap.add_argument("--no-profile", dest="profile", action="store_false")
    ap.add_argument("--baseline", type=Path, help="a --save file of an earlier run: adds 'before' columns")
    ap.add_argument("--before", metavar="REV", help="also run the module of git commit REV in every round"
                    " (alternated with the current one): 'before' columns measured side by side")
    ap.add_argument("--save", type=Path, help="write every number (JSON) here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (nginx prefix, module log)")
    a = ap.parse_args(argv)
    for tool in ("nginx", "wrk", "taskset", "openssl"):
        if not shutil.which(tool):
            log(f"wire bench: {tool} not found (make bench installs nginx-light and wrk)")
            return 1
    if len(os.sched_getaffinity(0)) < 2:
        log("wire bench: needs 2 CPUs (nginx on one, the clients on the other)")
        return 1
    try:
        res = run(a)
    except (BenchError, subprocess.SubprocessError, OSError):
        traceback.print_exc()
        return 1
    base = json.loads(a.baseline.read_text()) if a.baseline else None
    summarize(res, base, a)
    if a.save:
        a.save.write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
