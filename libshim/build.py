#!/usr/bin/env python3
"""Build libnethsm_pkcs11.so with the Python that runs this script.

    python libshim/build.py -o p11nethsm/libnethsm_pkcs11.so [--build-dir build/shim]

The running interpreter supplies Python.h (types only), the CPython minor and
the libpython soname that are baked into the shim; so run it with the venv's
python (one build per CPython minor). Used by setup.py and `make build`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
SO_NAME = "libnethsm_pkcs11.so"
SOURCES = ("forward.c", "bootstrap.c", "hostsafe.c")  # shim.h is their shared header


def _gen_module():
    """libshim/gen.py, loaded by path (this script runs from anywhere, without the package)."""
    spec = importlib.util.spec_from_file_location("_p11nethsm_shim_gen", os.path.join(HERE, "gen.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def _multiarch(cc: str) -> str:
    ma = sysconfig.get_config_var("MULTIARCH") or ""
    if ma:
        return ma
    try:
        return subprocess.run([cc, "-print-multiarch"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _soname() -> str:
    so = sysconfig.get_config_var("INSTSONAME") or ""
    if not so or not so.endswith(tuple(f".so{x}" for x in ("", ".1.0", ".1"))) and ".so" not in so:
        v = sysconfig.get_config_var("LDVERSION") or f"{sys.version_info[0]}.{sys.version_info[1]}"
        so = f"libpython{v}.so.1.0"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        print(f"build.py: warning: {sys.executable} has no shared libpython; the shim will look for {so}", file=sys.stderr)
    return so


def _c_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build(
    out: str,
    build_dir: str | None = None,
    cc: str | None = None,
    verbose: bool = True,
    baked_venv: str | None = None,
) -> str:
    """Compile the shim to `out`. baked_venv: last-resort venv path baked into
    the .so (default: this interpreter's venv, if it runs in one; "" = none)."""
    cc = cc or os.environ.get("CC") or "cc"
    out = os.path.abspath(out)
    build_dir = os.path.abspath(build_dir or os.path.join(os.path.dirname(out), "_shim_build"))
    os.makedirs(build_dir, exist_ok=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)

    gen = _gen_module()
    table = gen.load_table()
    for name, text in (("generated.h", gen.generate(table)), ("generated_stubs.h", gen.generate_stubs(table))):
        header = os.path.join(build_dir, name)
        with open(header + ".tmp", "w") as f:
            f.write(text)
        os.replace(header + ".tmp", header)

    if baked_venv is None:
        baked_venv = sys.prefix if sys.prefix != sys.base_prefix else ""
    venv = baked_venv
    defines = {
        "P11_PY_SONAME": _c_str(_soname()),
        "P11_MULTIARCH": _c_str(_multiarch(cc)),
        "P11_BUILD_VENV": _c_str(venv),
    }
    tmp_out = out + ".tmp"
    cmd = [
        cc, "-std=gnu11", "-O2", "-g", "-fPIC", "-fvisibility=hidden",
        "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-format-truncation",
        "-I", build_dir, "-I", sysconfig.get_paths()["include"],
        *(f"-D{k}={v}" for k, v in defines.items()),
        "-shared", "-o", tmp_out, *(os.path.join(HERE, c) for c in SOURCES),
        "-Wl,--no-undefined", "-Wl,-z,nodelete", "-Wl,-z,now",
        f"-Wl,--version-script={os.path.join(HERE, 'exports.map')}",
        "-pthread", "-ldl",
    ]
    if verbose:
        print(shlex.join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True)
    os.replace(tmp_out, out)  # atomic: never a half-written .so in place
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--output", default=os.path.join(HERE, os.pardir, "p11nethsm", SO_NAME))
    ap.add_argument("--build-dir", default=None)
    ap.add_argument("--cc", default=None)
    ap.add_argument("--baked-venv", default=None, help='fallback venv baked in ("" = none; default: the running venv)')
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    if shutil.which(a.cc or os.environ.get("CC") or "cc") is None:
        print("build.py: no C compiler (cc) found", file=sys.stderr)
        return 1
    path = build(a.output, a.build_dir, a.cc, verbose=not a.quiet, baked_venv=a.baked_venv)
    if not a.quiet:
        print(f"built {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
