#!/usr/bin/env python3
"""p11nethsm benchmarks (`make bench`): P1 signing throughput, P2 enumeration, P3 start-up,
P4 per-call floor, P5 scale-out, plus the emulator's own throughput.

Everything runs on 127.0.0.1 against the NetHSM emulator, started as separate processes. The
module is driven by a small C program (bench/p11bench.c, built into a temp dir) that dlopens it
and uses only C_GetFunctionList. Module and baseline run in the same run, alternating, for several
rounds; the tables show medians. Goals are reported, never asserted: this exits 0 whatever the
numbers are (non-zero only if a benchmark could not run at all).

    .venv/bin/python bench/run_all.py            # full run (about 4.5 minutes)
    .venv/bin/python bench/run_all.py --quick    # short run (about 1 minute)
    .venv/bin/python bench/run_all.py --only P1,P4 --rounds 5 --json results.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (BENCH, MODULE, OPERATOR, PY, SIGN_CASES, SOFTHSM, SOFTHSM_PIN, BenchError,  # noqa: E402
                     EmulatorProc, Rest, SoftHSM, build_harness, log, median, module_env,
                     print_table, provision_bench_keys, run_results, sign_message, tmpdir, write_module_config)

MODULE_TOKEN = "NetHSM"
# P5: service time of the emulator's capacity model per signing case. 5 ms (200/s per instance at 1 slot)
# is far below what the client side drives; RSA-4096 gets 20 ms because the emulator's own RSA-4096
# signature costs ~2-3 ms of CPU here (more on a busy machine), which would otherwise eat the 5 ms.
P5_SERVICE_TIME = {"ecdsa": 0.005, "rsa": 0.005, "rsa4k": 0.020}


# ------------------------------------------------------------------ output helpers
def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, (str, int)):
        return str(x)
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def table(title: str, header: list[str], rows: list[list], notes: list[str] = ()):
    print_table(title, [[str(h) for h in header]] + [[c if isinstance(c, str) else fmt(c) for c in r]
                                                     for r in rows], notes)


def verdict(ok) -> str:
    return "n/a" if ok is None else ("MET" if ok else "MISSED")


def ratio(a, b):
    return a / b if a is not None and b else None


# ------------------------------------------------------------------ the run
class Bench:
    def __init__(self, args):
        self.a = args
        self.work = tmpdir()
        self.harness = build_harness(self.work)
        self.module = str(args.module)
        self.results: dict = {"argv": sys.argv[1:], "quick": args.quick}
        self.emu: EmulatorProc | None = None
        self.softhsm: SoftHSM | None = None
        self.failures: list[str] = []
        self.case_errors: list = []

    # -------------------------------------------------------------- fixtures
    def module_ok(self) -> bool:
        return Path(self.module).exists()

    def main_emulator(self) -> EmulatorProc:
        if self.emu is None:
            self.emu = EmulatorProc(self.work / "state-main").start()
            provision_bench_keys(Rest(self.emu.urls[0], self.emu.fingerprint))
            self.main_cfg = write_module_config(self.work / "p11nethsm-main.yaml", self.emu.urls,
                                                self.emu.fingerprint, self.work / "module-main.log")
        return self.emu

    def get_softhsm(self) -> SoftHSM | None:
        if self.softhsm is None and SoftHSM.available():
            self.softhsm = SoftHSM(self.work).setup()
        return self.softhsm

    def harness_cmd(self, module: str, *args) -> list[str]:
        return [self.harness, module, *map(str, args)]

    def run_module(self, cfg: Path, *args, timeout=180, watch=()):
        return run_results(self.harness_cmd(self.module, *args), env=module_env(cfg), timeout=timeout,
                           watch_pids=watch)

    def attempt(self, where: str, fn):
        """Runs one measurement; a failure is noted under the table instead of aborting the benchmark."""
        try:
            return fn()
        except (BenchError, subprocess.TimeoutExpired) as exc:
            self.case_errors.append((where, str(exc)))
            log(f"{where}: {exc}")
            return None

    def take_errors(self, prefix: str) -> list[str]:
        mine = [e for e in self.case_errors if e[0].startswith(prefix)]
        self.case_errors = [e for e in self.case_errors if not e[0].startswith(prefix)]
        if mine:
            self.failures.append(prefix + " (partly)")
        seen, notes = set(), []
        for where, msg in mine:
            key = where.split(" ")[1] + msg[:80]
            if key not in seen:
                seen.add(key)
                notes.append(f"ERROR {where}: {msg[:300]}")
        return notes

    # -------------------------------------------------------------- emulator's own throughput
    def e0_emulator(self):
        script = BENCH / "emulator_bench.py"
        if not script.exists():
            print("\n== E0 emulator throughput: bench/emulator_bench.py not present; the raw column "
                  "of P1 is the emulator's throughput as seen by a Python client.", flush=True)
            return
        cmd = [PY, str(script)]
        if self.a.quick:
            try:
                helptext = subprocess.run(cmd + ["--help"], capture_output=True, text=True, timeout=30).stdout
            except subprocess.TimeoutExpired:
                helptext = ""
            if "--quick" in helptext:
                cmd.append("--quick")
            elif "--seconds" in helptext:
                cmd += ["--seconds", "1"]
        print(f"\n== E0 emulator throughput ({' '.join(Path(c).name for c in cmd[1:])})", flush=True)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=str(BENCH.parent))
            print(p.stdout.rstrip(), flush=True)
            if p.returncode:
                print(f"   (emulator_bench.py exited {p.returncode}: {p.stderr.strip()[-400:]})")
            self.results["E0"] = {"stdout": p.stdout, "rc": p.returncode}
        except subprocess.TimeoutExpired:
            print("   emulator_bench.py timed out (240 s)")

    # -------------------------------------------------------------- P1
    def p1_sign(self):
        emu = self.main_emulator()
        R, S, W = self.a.rounds, self.a.seconds, self.a.warmup
        rows, res = [], {}
        for alg in ("ecdsa", "rsa"):
            case = SIGN_CASES[alg]
            for threads in (1, 8):
                runs = {"module": [], "raw": []}
                for r in range(R):
                    order = ("module", "raw") if r % 2 == 0 else ("raw", "module")
                    for side in order:
                        if side == "module":
                            out = self.attempt(f"P1 module {alg}/{threads}", lambda: self.run_module(
                                self.main_cfg, "sign", "--token", MODULE_TOKEN, "--pin", OPERATOR[1], "--key",
                                case["key"], "--mech", alg, "--threads", threads, "--seconds", S, "--warmup", W,
                                watch=[emu.proc.pid]))
                        else:
                            out = self.attempt(f"P1 raw {alg}/{threads}", lambda: run_results(
                                self.raw_cmd([emu.urls[0]], case, threads, S, W), timeout=180,
                                watch_pids=[emu.proc.pid]))
                        if out:
                            runs[side].append(out[-1])
                for v in runs.values():
                    for x in v:  # client CPU per signature: the module's own cost, whoever is the bottleneck
                        x["cpu_us_per_op"] = x["cpu_cores"] / x["per_sec"] * 1e6 if x.get("per_sec") else None
                md = {side: {k: median([x.get(k) for x in v])
                             for k in ("per_sec", "cpu_cores", "peer_cores", "cpu_us_per_op")}
                      for side, v in runs.items()}
                m, b = md["module"]["per_sec"], md["raw"]["per_sec"]
                q = ratio(m, b)
                res[f"{alg}/{threads}"] = {"runs": runs, "ratio": q}
                rows.append([case["title"], threads, m, b, fmt(q, 2),
                             f"{fmt(md['module']['cpu_us_per_op'], 0)} / {fmt(md['raw']['cpu_us_per_op'], 0)}",
                             f"{fmt(md['module']['peer_cores'], 2)} / {fmt(md['raw']['peer_cores'], 2)}",
                             ">= 0.90", verdict(None if q is None else q >= 0.90)])
                log(f"P1 {alg} t={threads}: module {[x['per_sec'] for x in runs['module']]} "
                    f"raw {[x['per_sec'] for x in runs['raw']]}")
        self.results["P1"] = res
        table("P1 signing throughput: C_SignInit+C_Sign through the .so vs raw urllib3 POST /keys/{id}/sign",
              ["case", "threads", "module/s", "raw/s", "ratio", "client CPU us/op (mod/raw)", "emu cores (mod/raw)",
               "goal", "result"], rows,
              [f"medians of {R} alternating rounds, {S:g} s measured after {W:g} s warm-up, fresh process each; "
               "raw = separate Python process, same JSON body/mode/size, Basic auth, pool of N connections for N threads",
               "client CPU us/op = CPU time of the client process per signature in the measured window (the "
               "module's whole cost: C harness + embedded Python + TLS; raw: the urllib3 process), so it "
               "compares the two sides even when the emulator is the bottleneck",
               "emu cores = CPU the emulator process used in the window (1.00 = one core busy); it is one Python "
               "process (one GIL), so near 1.0 it is the bottleneck; client and emulator share this machine's "
               f"{os.cpu_count()} cores"] + self.take_errors("P1"))

    def raw_cmd(self, urls, case, threads, seconds, warmup):
        cmd = [PY, str(BENCH / "raw_sign.py"), "--key", case["key"], "--mode", case["mode"],
               "--message-hex", sign_message(case["alg"]).hex(), "--threads", str(threads), "--seconds", str(seconds),
               "--warmup", str(warmup), "--user", OPERATOR[0], "--password", OPERATOR[1]]
        for u in urls:
            cmd += ["--url", u, "--fingerprint", self.emu_fp_for(u)]
        return cmd

    def emu_fp_for(self, url):
        return self.emu.fingerprint  # every emulator in a run shares the main state dir's TLS identity

    # -------------------------------------------------------------- P2
    def p2_enumeration(self):
        n = self.a.keys
        emu = EmulatorProc(self.work / "state-enum").start()
        try:
            rest = Rest(emu.urls[0], emu.fingerprint, maxsize=4)
            rest.provision()
            t0 = time.monotonic()
            rest.generate_many([f"k{i:05d}" for i in range(n)], workers=3)
            log(f"P2: {n} keys generated in {time.monotonic() - t0:.1f} s")
            cfg = write_module_config(self.work / "p11nethsm-enum.yaml", emu.urls, emu.fingerprint,
                                      self.work / "module-enum.log")
            rows, notes, res = [], [], {"keys": n}
            variants = (("empty template (all objects)", None),
                        ("CKA_CLASS=CKO_PRIVATE_KEY", 3))  # what libp11/SunPKCS11/p11tool mostly ask
            for name, cls in variants:
                runs = []
                for r in range(self.a.enum_rounds):
                    one = self.attempt(f"P2 {name}", lambda: self.p2_one(emu, cfg, cls))
                    if one:
                        runs.append(one)
                res[name] = runs
                if not runs:
                    continue
                first_req = median([x["first_requests"] for x in runs])
                first_ms = median([x["first_ms"] for x in runs])
                rep_req = median([x["repeat_requests"] for x in runs])
                rep_ms = median([x["repeat_ms"] for x in runs])
                objs = runs[-1]["objects"]
                rows += [[name, "first", objs[0], first_req, first_ms, f"<= {n + 1} requests",
                          verdict(first_req <= n + 1)],
                         [name, "repeat", objs[1], rep_req, rep_ms, "1 request, < 100 ms",
                          verdict(rep_req <= 1 and rep_ms < 100)]]
                notes += [f"{name}: first pass by route: " + ", ".join(
                              f"{k} x{v}" for k, v in sorted(runs[-1]["first_by_path"].items())),
                          f"{name}: repeat pass by route: " + (", ".join(
                              f"{k} x{v}" for k, v in sorted(runs[-1]["repeat_by_path"].items())) or "none")]
            self.results["P2"] = res
            table(f"P2 enumeration: C_FindObjectsInit/C_FindObjects(100 per call)/C_FindObjectsFinal over {n} keys",
                  ["template", "pass", "objects", "requests", "ms", "goal", "result"], rows,
                  [f"medians of {self.a.enum_rounds} fresh processes per template (each: C_Initialize, C_Login, "
                   "then two passes); requests = the emulator's per-instance request log, reset after login"]
                  + notes + self.take_errors("P2"))
        finally:
            emu.stop()

    def p2_one(self, emu: EmulatorProc, cfg: Path, cls) -> dict:
        extra = ["--class", str(cls)] if cls is not None else []
        p = subprocess.Popen(self.harness_cmd(self.module, "find", "--token", MODULE_TOKEN, "--pin", OPERATOR[1],
                                              "--passes", "2", "--sync", "--batch", "100", *extra),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=module_env(cfg))
        out = {"objects": []}

        def read_result():
            while True:
                line = p.stdout.readline()
                if not line:
                    raise BenchError(f"find harness exited: {p.stderr.read()[-800:]}")
                if line.startswith("RESULT "):
                    r = json.loads(line[7:])
                    if "error" in r:
                        raise BenchError(f"find harness: {r}")
                    return r
        try:
            read_result()  # ready
            time.sleep(0.2)  # let any post-login background request land before the reset
            for name in ("first", "repeat"):
                emu.reset_requests(0)
                p.stdin.write("go\n")
                p.stdin.flush()
                r = read_result()
                reqs = emu.control("GET", "/instances/0/requests")
                out[f"{name}_requests"] = len(reqs)
                out[f"{name}_ms"] = r["ms"]
                out["objects"].append(r["objects"])
                out[f"{name}_by_path"] = summarize_paths(reqs)
            p.stdin.close()
            p.wait(30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        return out

    # -------------------------------------------------------------- P3
    def p3_startup(self):
        emu = self.main_emulator()
        sh = self.get_softhsm()
        n = self.a.init_rounds
        mod, soft = [], []
        for r in range(n):
            mod.append(self.run_module(self.main_cfg, "init", "--token", MODULE_TOKEN, "--pin", OPERATOR[1]))
            if sh:
                soft.append(run_results(self.harness_cmd(str(SOFTHSM), "init", "--token", SoftHSM.LABEL,
                                                         "--pin", SOFTHSM_PIN), env=sh.env))

        def pick(runs, cmd, key):
            return median([next(x[key] for x in r if x["cmd"] == cmd) for r in runs]) if runs else None

        rows = []
        for name, runs in (("p11nethsm", mod), ("SoftHSM 2", soft)):
            if not runs:
                continue
            init_ms = pick(runs, "init", "initialize_ms")
            rss_mb = pick(runs, "init", "rss_growth_total_kb") / 1024
            goal = name == "p11nethsm"
            rows.append([name, pick(runs, "init", "dlopen_ms"), init_ms, pick(runs, "init", "initialize_cpu_ms"), rss_mb,
                         pick(runs, "first_session", "ms"), pick(runs, "login", "ms"),
                         pick(runs, "login", "rss_kb") / 1024,
                         "<= 50 ms, <= 25 MB" if goal else "(scale)",
                         f"time {verdict(init_ms <= 50)}, RSS {verdict(rss_mb <= 25)}" if goal else ""])
        self.results["P3"] = {"module": mod, "softhsm": soft}
        table("P3 start-up in a fresh C process",
              ["module", "dlopen ms", "C_Initialize ms", "(CPU ms)", "RSS growth MB", "slots+session ms", "C_Login ms",
               "RSS after login MB", "goal", "result"], rows,
              [f"medians of {n} fresh processes; RSS growth = VmRSS after C_Initialize minus before dlopen "
               "(dlopen + C_Initialize); the harness itself is ~1 MB",
               "(CPU ms) = CPU time the process spent inside C_Initialize: the wall time minus waiting for a "
               "busy machine",
               "slots+session = first C_GetSlotList + C_GetTokenInfo + C_OpenSession (for p11nethsm: the token "
               "presence check, i.e. the first REST call, TLS handshake and the lazy urllib3/ssl imports)"])

    # -------------------------------------------------------------- P4
    def p4_percall(self):
        emu = self.main_emulator()
        sh = self.get_softhsm()
        R, S = self.a.rounds, self.a.percall_seconds
        rows, res = [], {}
        for fn in ("sessioninfo", "getattr"):
            for threads in (1, 8):
                mod, soft = [], []
                for r in range(R):
                    order = ("module", "softhsm") if r % 2 == 0 else ("softhsm", "module")
                    for side in order:
                        common = ["--fn", fn, "--threads", threads, "--seconds", S, "--warmup", 0.3,
                                  "--key", SIGN_CASES["ecdsa"]["key"]]
                        if side == "module":
                            out = self.attempt(f"P4 module {fn}/{threads}", lambda: self.run_module(
                                self.main_cfg, "percall", "--token", MODULE_TOKEN, "--pin", OPERATOR[1], *common))
                            if out:
                                mod.append(out[-1]["per_sec"])
                        elif sh:
                            out = self.attempt(f"P4 softhsm {fn}/{threads}", lambda: run_results(self.harness_cmd(
                                str(SOFTHSM), "percall", "--token", SoftHSM.LABEL, "--pin", SOFTHSM_PIN, *common),
                                env=sh.env))
                            if out:
                                soft.append(out[-1]["per_sec"])
                m, s = median(mod), median(soft)
                name = {"sessioninfo": "C_GetSessionInfo",
                        "getattr": "C_GetAttributeValue(KEY_TYPE, ID)"}[fn]
                goal = fn == "sessioninfo" and threads == 1
                rows.append([name, threads, m, s, fmt(ratio(m, s), 2), ">= 300k/s" if goal else "",
                             verdict(None if m is None else m >= 300_000) if goal else ""])
                res[f"{fn}/{threads}"] = {"module": mod, "softhsm": soft}
        self.results["P4"] = res
        table("P4 per-call floor (calls/s, aggregate over threads)",
              ["call", "threads", "p11nethsm", "SoftHSM", "p11nethsm/SoftHSM", "goal", "result"], rows,
              [f"medians of {R} alternating rounds, {S:g} s each; C_GetAttributeValue on the EC P-256 private "
               "key (p11nethsm: cached object, no network)",
               "8 threads on 2 cores: the module's calls are serialized by the embedded interpreter's GIL"]
              + self.take_errors("P4"))

    # -------------------------------------------------------------- P5
    def p5_scaleout(self):
        """1 vs 2 instances, the emulator made the bottleneck by its capacity model (like an appliance
        whose crypto engines are busy), not by starving it of CPU: each instance processes at most
        P5_CONCURRENT requests at once, each for at least P5_SERVICE_TIME, i.e. a ceiling of
        P5_CONCURRENT / P5_SERVICE_TIME requests/s per instance, far below what this machine's client
        side can drive. Instance 2 is a second emulator *process* on the same state dir (same keys,
        users, TLS identity), so the two instances share neither a GIL nor a capacity model."""
        emu = self.main_emulator()
        conc = self.a.p5_concurrent
        emu_b = EmulatorProc(emu.state_dir).start()
        try:
            emu_b.set_operational()  # a second process boots "Locked" like a rebooted appliance
            Rest(emu_b.urls[0], emu_b.fingerprint).call("GET", f"/keys/{SIGN_CASES['rsa4k']['key']}",
                                                        auth=OPERATOR)  # the second process sees the keys
            cfg1 = self.main_cfg
            cfg2 = write_module_config(self.work / "p11nethsm-two.yaml", emu.urls + emu_b.urls, emu.fingerprint,
                                       self.work / "module-two.log")
            R, S, W = self.a.rounds, self.a.seconds, self.a.warmup
            rows, res, caps = [], {"concurrent": conc}, []
            for alg in self.a.p5_algs:
                case = SIGN_CASES[alg]
                st = self.a.p5_service_time or P5_SERVICE_TIME[alg]
                ceiling = conc / st  # requests/s of one instance
                caps.append(f"{case['title'].split(' (')[0]} {st * 1000:g} ms = {ceiling:,.0f}/s")
                for e in (emu, emu_b):
                    e.control("PUT", "/instances/0/capacity", {"concurrent": conc, "service_time": st})
                data = {k: [] for k in ("mod1", "mod2", "raw1", "raw2")}
                runs = [("mod1", cfg1, emu.urls), ("raw1", None, emu.urls),
                        ("mod2", cfg2, emu.urls + emu_b.urls), ("raw2", None, emu.urls + emu_b.urls)]
                watch = [emu.proc.pid, emu_b.proc.pid]
                for r in range(R):
                    for key, cfg, urls in runs[r % 4:] + runs[:r % 4]:
                        emu.reset_requests(0)
                        emu_b.reset_requests(0)
                        if cfg is not None:
                            out = self.attempt(f"P5 {key} {alg}", lambda: self.run_module(
                                cfg, "sign", "--token", MODULE_TOKEN, "--pin", OPERATOR[1], "--key", case["key"],
                                "--mech", case["alg"], "--threads", 8, "--seconds", S, "--warmup", W, watch=watch))
                        else:
                            out = self.attempt(f"P5 {key} {alg}", lambda: run_results(
                                self.raw_cmd(urls, case, 8, S, W), timeout=180, watch_pids=watch))
                        if out:
                            n_a, n_b = emu.request_count(0), emu_b.request_count(0)
                            out[-1]["share_b"] = n_b / (n_a + n_b) if n_a + n_b else None
                            # mean line length a request found on arrival at its instance (whole run)
                            cs = [e.control("GET", "/instances/0/capacity") for e in (emu, emu_b)]
                            n = sum(c["processed"] for c in cs)
                            out[-1]["mean_line"] = (sum(c["processed"] * (c["mean_line"] or 0) for c in cs) / n
                                                    if n else None)
                            data[key].append(out[-1])
                md = {k: median([x["per_sec"] for x in v]) for k, v in data.items()}
                line = {k: median([x.get("mean_line") for x in v]) for k, v in data.items()}
                share = {k: median([x.get("share_b") for x in v]) for k, v in data.items()}
                peer = {k: median([x.get("peer_cores") for x in v]) for k, v in data.items()}
                cli = {k: median([x.get("cpu_cores") for x in v]) for k, v in data.items()}
                res[alg] = {"runs": data}
                for side, one, two in (("p11nethsm", "mod1", "mod2"), ("raw urllib3", "raw1", "raw2")):
                    add = ratio(md[two] - md[one], md[one]) if md[one] and md[two] else None
                    used = [ratio(md[one], ceiling), ratio(md[two], 2 * ceiling)]
                    rows.append([f"{case['title']}, {st * 1000:g} ms", side, md[one], md[two], fmt(add, 2),
                                 " / ".join(fmt(None if u is None else 100 * u, 0) + "%" for u in used),
                                 f"{fmt(line[one], 1)} / {fmt(line[two], 1)}",
                                 self.p5_bottleneck([line[one], line[two]]),
                                 f"{fmt(cli[one], 2)} / {fmt(cli[two], 2)}",
                                 f"{fmt(peer[one], 2)} / {fmt(peer[two], 2)}",
                                 fmt(None if share[two] is None else 100 * share[two], 0) + "%",
                                 ">= 0.7x" if side == "p11nethsm" else "(scale)",
                                 verdict(None if add is None else add >= 0.7) if side == "p11nethsm" else ""])
                log(f"P5 {alg}: { {k: [x['per_sec'] for x in v] for k, v in data.items()} }")
            self.results["P5"] = res
            table(f"P5 scale-out: 8-thread signing, 1 vs 2 instances, emulator capacity-bound "
                  f"({conc} request at a time per instance)",
                  ["case, service time", "client", "1 inst/s", "2 inst/s", "2nd adds", "of ceiling (1/2)",
                   "line (1/2)", "bottleneck", "client cores (1/2)", "emu cores (1/2)", "inst 2 share", "goal",
                   "result"], rows,
                  [f"each instance models an appliance: at most {conc} request(s) processed at once, each for at least "
                   f"the service time (emulator capacity model, control PUT /instances/0/capacity; the others wait "
                   f"in line); ceiling per instance = {conc} / service time: {'; '.join(caps)}",
                   "instance 1 = the main emulator process, instance 2 = a second emulator process on the same state "
                   "dir (same keys, users, TLS identity), both unpinned: neither shares a GIL or a capacity model",
                   "2nd adds = (2-instance rate - 1-instance rate) / 1-instance rate (1.00 = doubled); module config "
                   "lists both instances (round-robin), raw client alternates between them; inst 2 share = requests "
                   "the second instance served in the 2-instance runs",
                   "of ceiling = rate / (instances x ceiling); a slot is held for the service time plus the "
                   "emulator's own scheduling gaps, so ~90 % is full use",
                   "line = mean number of requests already waiting for a slot when a request arrived (8 threads, 1 "
                   "slot: up to 7 for 1 instance, 3 for 2); bottleneck = 'emulator capacity' when requests wait "
                   "(line >= 1), else 'client/machine' (the client side or the CPU, not the modelled device, "
                   "limits the rate)",
                   "client/emu cores = CPU of the client process / both emulator processes in the measured window",
                   f"medians of {R} rounds in rotating order, {S:g} s each"] + self.take_errors("P5"))
        finally:
            emu_b.stop()
            try:
                emu.control("PUT", "/instances/0/capacity", {"concurrent": None})
            except BenchError:
                pass

    @staticmethod
    def p5_bottleneck(lines) -> str:
        def one(q):
            return "-" if q is None else ("emulator capacity" if q >= 1.0 else "client/machine")
        a, b = one(lines[0]), one(lines[1])
        return a if a == b else f"{a} / {b}"

    # -------------------------------------------------------------- driver
    def run(self) -> int:
        steps = [("E0", self.e0_emulator), ("P1", self.p1_sign), ("P2", self.p2_enumeration),
                 ("P3", self.p3_startup), ("P4", self.p4_percall), ("P5", self.p5_scaleout)]
        print(f"p11nethsm benchmarks  module={self.module}  cpus={os.cpu_count()}  "
              f"{'quick' if self.a.quick else 'full'} run  (goals are reported, not asserted)", flush=True)
        load = os.getloadavg()[0]
        print(f"load average before the run: {load:.2f}" + ("  -- WARNING: other processes are busy; the "
              "numbers below compete with them for the CPU" if load > 0.5 else ""), flush=True)
        if not self.module_ok():
            print(f"module not built: {self.module} (run `make build`); module columns will fail", flush=True)
        t_start = time.monotonic()
        try:
            for name, fn in steps:
                if self.a.only and name not in self.a.only:
                    continue
                t0 = time.monotonic()
                try:
                    fn()
                except Exception as exc:  # one broken benchmark must not hide the others
                    self.failures.append(name)
                    print(f"\n== {name}: could not run: {exc}", flush=True)
                    log(traceback.format_exc())
                log(f"[{name} took {time.monotonic() - t0:.0f} s]")
        finally:
            if self.emu:
                self.emu.stop()
            if self.a.json:
                Path(self.a.json).write_text(json.dumps(self.results, indent=1, default=str))
            if not self.a.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                print(f"work dir kept: {self.work}")
        print(f"\ntotal {time.monotonic() - t_start:.0f} s, load average (1 min) at the end "
              f"{os.getloadavg()[0]:.2f}" +
              (f"; benchmarks that could not run: {', '.join(self.failures)}" if self.failures else ""))
        return 1 if self.failures else 0


def summarize_paths(reqs: list[dict]) -> dict:
    """Groups request-log entries by method and route shape (/keys/<id> for any key id)."""
    import re
    out: dict = {}
    for r in reqs:
        path = re.sub(r"^/api/v1", "", r.get("path", "").split("?")[0])
        path = re.sub(r"^/keys/(?!generate$)[^/]+", "/keys/{id}", path)
        k = f"{r.get('method', '?')} {path}"
        out[k] = out.get(k, 0) + 1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run: fewer rounds, shorter windows")
    ap.add_argument("--only", type=lambda s: set(s.upper().split(",")), help="e.g. P1,P4 (E0 = emulator)")
    ap.add_argument("--module", type=Path, default=MODULE)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--seconds", type=float, help="measured window per P1/P5 run")
    ap.add_argument("--p5-concurrent", type=int, default=1, metavar="N",
                    help="P5: requests each emulator instance processes at once (default 1)")
    ap.add_argument("--p5-service-time", type=float, metavar="SECONDS",
                    help="P5: minimum time per request in the emulator, all cases (default: ECDSA 0.005, "
                         "RSA-4096 0.020)")
    ap.add_argument("--keys", type=int, default=1000, help="P2 key count")
    ap.add_argument("--json", help="also write all raw numbers here")
    ap.add_argument("--keep", action="store_true", help="keep the temp work dir (configs, module logs)")
    a = ap.parse_args(argv)
    a.rounds = a.rounds or (1 if a.quick else 4)
    a.seconds = a.seconds or (1.5 if a.quick else 2.0)
    a.warmup = 0.5
    a.percall_seconds = 1.0 if a.quick else 1.5
    a.init_rounds = 2 if a.quick else 5
    a.enum_rounds = 1 if a.quick else 3
    a.p5_algs = ["ecdsa"] if a.quick else ["ecdsa", "rsa4k"]
    return Bench(a).run()


if __name__ == "__main__":
    sys.exit(main())
