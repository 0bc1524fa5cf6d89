"""`make test` across CPython minors: the module embeds the CPython it is built with, so each
minor gets its own build and test run.

    .venv/bin/python tools/pymatrix.py --versions "3.11 3.12 3.13" \
        --matrix-tests "tests/core tests/shim" --matrix-env P11NETHSM_FUZZ_CALLS=20000 -- tests

- The tree's own venv (.venv, `make build`) runs the whole suite (the arguments after `--`).
- Every other minor found on the machine gets build/py<minor>/: a copy of the tree (without the
  files .gitignore names) with its own .venv and shim build (`make build PYTHON=...` there), and
  runs --matrix-tests. All builds come first, so every run can see every other minor's venv
  (build/matrix/pythons.json, $P11NETHSM_MATRIX_PYTHONS: cross-version host tests).
- A minor that is not on the machine (or cannot build the module) is recorded as skipped with the
  reason. Each run writes build/matrix/cpython-<minor>.json (+ .junit.xml); the last step is a
  pytest run of tools/matrix_report.py over them, so pytest's closing line counts every version.
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "matrix")
PROBE = (
    "import json, os, sys, sysconfig, importlib.util as u\n"
    "inc = sysconfig.get_paths()['include']\n"
    "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], 'exe': os.path.realpath(sys.executable),\n"
    " 'shared': bool(sysconfig.get_config_var('Py_ENABLE_SHARED')),\n"
    " 'headers': os.path.exists(os.path.join(inc, 'Python.h')), 'include': inc,\n"
    " 'ensurepip': u.find_spec('ensurepip') is not None}))\n"
)


# ---------------------------------------------------------------- interpreters
def candidates(minor: str) -> list[str]:
    """Where a CPython <minor> may be: PATH (pyenv shims included), pyenv's versions dir
    (newest patch first), the usual system and container prefixes."""
    out = []
    found = shutil.which(f"python{minor}")
    if found:
        out.append(found)
    pyenv = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")

    def patch(path: str) -> int:
        tail = path.split("/versions/")[1].split("/")[0].split(".")[2]
        return int(tail) if tail.isdigit() else -1

    out += sorted(glob.glob(os.path.join(pyenv, "versions", f"{minor}.*", "bin", f"python{minor}")),
                  key=patch, reverse=True)
    out += [p for p in (f"/usr/local/bin/python{minor}", f"/usr/bin/python{minor}") if os.path.exists(p)]
    return list(dict.fromkeys(out))


def probe(exe: str) -> dict | None:
    try:
        r = subprocess.run([exe, "-c", PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None  # e.g. a pyenv shim for a version that pyenv does not activate
    try:
        return json.loads(r.stdout)
    except ValueError:
        return None


def find_python(minor: str) -> tuple[dict | None, str]:
    """(probe of a usable CPython <minor>, "") or (None, why not)."""
    problems = []
    for exe in candidates(minor):
        info = probe(exe)
        if info is None or not info["version"].startswith(minor + "."):
            continue
        missing = [what for what, ok in (
            ("a shared libpython (built without --enable-shared)", info["shared"]),
            (f"the C headers ({info['include']}/Python.h: install python{minor}-dev)", info["headers"]),
            (f"ensurepip for venvs (install python{minor}-venv)", info["ensurepip"])) if not ok]
        if not missing:
            info["exe"] = exe if "/shims/" not in exe else info["exe"]
            return info, ""
        problems.append(f"{exe} ({info['version']}) lacks " + ", ".join(missing))
    if problems:
        return None, "; ".join(problems)
    return None, (f"no python{minor} on PATH, in $PYENV_ROOT/versions, /usr/local/bin or /usr/bin "
                  f"(install CPython {minor}, e.g. `pyenv install {minor}`, to test it)")


# ---------------------------------------------------------------- tree copy
def ignore_patterns() -> list[str]:
    pats = [".git", "build", ".venv"]  # the copies live in build/: never copy them into themselves
    try:
        with open(os.path.join(ROOT, ".gitignore"), encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith(("#", "!")):
                    pats.append(line.strip("/"))
    except OSError:
        pass
    return pats


def ignored(name: str, pats: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p) for p in pats)


def sync_tree(dest: str) -> None:
    """Make dest a copy of the working tree (uncommitted edits included), keeping dest's own
    ignored files (.venv, build/, the built .so) so a re-run does not rebuild the venv."""
    pats = ignore_patterns()
    keep = set()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel = os.path.relpath(dirpath, ROOT)
        dirnames[:] = [d for d in dirnames if not ignored(d, pats)]
        os.makedirs(os.path.join(dest, rel), exist_ok=True)
        keep.add(os.path.normpath(rel))
        for d in dirnames:
            keep.add(os.path.normpath(os.path.join(rel, d)))
        for f in filenames:
            if ignored(f, pats):
                continue
            src, dst = os.path.join(dirpath, f), os.path.join(dest, rel, f)
            keep.add(os.path.normpath(os.path.join(rel, f)))
            s = os.stat(src)
            try:
                d = os.stat(dst)
                if d.st_size == s.st_size and int(d.st_mtime) == int(s.st_mtime):
                    continue
            except FileNotFoundError:
                pass
            shutil.copy2(src, dst)
    for dirpath, dirnames, filenames in os.walk(dest, topdown=True):
        rel = os.path.relpath(dirpath, dest)
        for d in list(dirnames):
            r = os.path.normpath(os.path.join(rel, d))
            if ignored(d, pats):
                dirnames.remove(d)
            elif r not in keep:
                shutil.rmtree(os.path.join(dirpath, d))
                dirnames.remove(d)
        for f in filenames:
            if not ignored(f, pats) and os.path.normpath(os.path.join(rel, f)) not in keep:
                os.remove(os.path.join(dirpath, f))


def child_env(**extra: str) -> dict:
    # the parent make's variables (PYTHON=... on its command line) must not leak into a sub-make
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def build_copy(minor: str, info: dict) -> tuple[str, str]:
    """build/py<minor>: sync the tree, `make build` with that interpreter. -> (dir, "" or error)."""
    where = os.path.join(ROOT, "build", f"py{minor}")
    log = os.path.join(OUT, f"cpython-{minor}.build.log")
    sync_tree(where)
    with open(log, "w") as fh:
        r = subprocess.run(["make", "--no-print-directory", "build", f"PYTHON={info['exe']}"], cwd=where,
                           stdout=fh, stderr=subprocess.STDOUT, env=child_env(), stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        with open(log, errors="replace") as fh:
            tail = fh.read()[-3000:]
        return where, f"`make build PYTHON={info['exe']}` in {os.path.relpath(where, ROOT)} failed " \
                      f"(exit {r.returncode}); log {os.path.relpath(log, ROOT)}:\n{tail}"
    return where, ""


def as_ignores(root: str, includes: list[str]) -> list[str]:
    """`tests --ignore=...` for a list of test paths: pytest then collects as in the whole run
    (each directory's conftest imported when its tests are, where several test dirs given as
    arguments would all import their `conftest` up front and shadow each other)."""
    want = [os.path.normpath(p) for p in includes]
    top = sorted({p.split(os.sep)[0] for p in want})
    args = []
    for base in top:
        args.append(base)
        stack = [base]
        while stack:
            d = stack.pop()
            if d in want:
                continue
            for name in sorted(os.listdir(os.path.join(root, d))):
                rel = os.path.join(d, name)
                if rel in want:
                    continue
                if any(w.startswith(rel + os.sep) for w in want):
                    stack.append(rel)
                elif name.startswith("test_") or os.path.isdir(os.path.join(root, rel)) and name != "__pycache__":
                    args.append(f"--ignore={rel}")
    return args


def venv_python(where: str) -> str:
    return os.path.join(where, ".venv", "bin", "python")


def venv_version(py: str) -> str:
    r = subprocess.run([py, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


# ---------------------------------------------------------------- report
# the project's config and the venv's plugins (schemathesis, hypothesis: seconds to load) stay out
REPORT_ARGS = ["-m", "pytest", "-c", os.devnull, "-p", "matrix_report", "-p", "no:cacheprovider", "-rfE", "-q"]


def report_env() -> dict:
    return child_env(PYTHONPATH=os.path.join(ROOT, "tools"), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--versions", default="3.11 3.12 3.13", help="CPython minors to cover")
    ap.add_argument("--matrix-tests", default="tests", help="what the other minors run (space-separated)")
    ap.add_argument("--matrix-env", default="", help="NAME=VALUE ... for the other minors' runs")
    ap.add_argument("--no-report", action="store_true", help="stop before the aggregating pytest run")
    ap.add_argument("full", nargs="*", default=["tests"], help="pytest arguments of the tree's own run")
    a = ap.parse_args(argv)

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    own_py = venv_python(ROOT)
    own_version = venv_version(own_py)
    own_minor = own_version.rsplit(".", 1)[0]
    minors = list(dict.fromkeys([own_minor, *a.versions.split()]))
    matrix_tests = a.matrix_tests.split()
    matrix_env = dict(kv.split("=", 1) for kv in a.matrix_env.split())

    # 1. find and build every minor first
    runs, pythons = [], {}
    for minor in minors:
        rec = {"minor": minor, "status": "ran", "reason": ""}
        if minor == own_minor:
            rec.update(python=own_version, exe=os.path.realpath(own_py), where=".venv (in the tree)",
                       dir=ROOT, args=a.full, env={})
        else:
            info, why = find_python(minor)
            if info is None:
                rec.update(status="skipped", reason=why)
                print(f"pymatrix: CPython {minor}: skipped: {why}", flush=True)
            else:
                t0 = time.monotonic()
                print(f"pymatrix: CPython {info['version']} ({info['exe']}): building build/py{minor} ...", flush=True)
                where, err = build_copy(minor, info)
                rec.update(python=info["version"], exe=info["exe"], where=f"build/py{minor}", dir=where,
                           args=matrix_tests, env=matrix_env, build_seconds=round(time.monotonic() - t0, 1))
                if err:
                    rec.update(status="build-failed", reason=err)
                    print(f"pymatrix: CPython {minor}: BUILD FAILED\n{err}", flush=True)
        if rec["status"] == "ran":
            pythons[minor] = {"python": venv_python(rec["dir"]), "version": rec["python"],
                              "module": os.path.join(rec["dir"], "p11nethsm", "libnethsm_pkcs11.so")}
        runs.append(rec)
    pythons_file = os.path.join(OUT, "pythons.json")
    with open(pythons_file, "w") as fh:
        json.dump(pythons, fh, indent=1)

    # 2. one pytest run per minor, output streamed
    for rec in runs:
        junit = os.path.join(OUT, f"cpython-{rec['minor']}.junit.xml")
        if rec["status"] == "ran":
            args = rec["args"] if rec["dir"] == ROOT else as_ignores(rec["dir"], rec["args"])
            cmd = [venv_python(rec["dir"]), "-m", "pytest", *args, f"--junitxml={junit}"]
            print(f"\npymatrix: ===== CPython {rec['python']} in {rec['where']}: pytest {' '.join(rec['args'])}"
                  + "".join(f" {k}={v}" for k, v in rec["env"].items()) + " =====", flush=True)
            t0 = time.monotonic()
            r = subprocess.run(cmd, cwd=rec["dir"], stdin=subprocess.DEVNULL,
                               env=child_env(P11NETHSM_MATRIX_PYTHONS=pythons_file, **rec["env"]))
            rec.update(rc=r.returncode, seconds=round(time.monotonic() - t0, 1), junit=junit)
        with open(os.path.join(OUT, f"cpython-{rec['minor']}.json"), "w") as fh:
            json.dump(rec, fh, indent=1)

    if a.no_report:
        return 0
    # 3. the aggregating run: its closing line is the last thing printed
    print("\npymatrix: ===== all CPython versions =====", flush=True)
    sys.stdout.flush()
    os.execve(own_py, [own_py, *REPORT_ARGS, f"--rootdir={OUT}", OUT], report_env())
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
