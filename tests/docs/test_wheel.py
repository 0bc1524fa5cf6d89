"""`pip install .` under a CPython yields a wheel tagged for that CPython minor and platform (the
wheel carries the compiled shim, built against that interpreter), as the Dockerfile relies on.
Run under every minor by `make test` (tools/pymatrix.py)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile

from docs_helpers import ROOT


def test_wheel_is_tagged_for_this_cpython_and_carries_its_shim(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list(tmp_path.glob("p11nethsm-*.whl"))
    assert len(wheels) == 1, wheels
    cp = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    assert wheels[0].name.endswith(f"-{cp}-{cp}-{platform}.whl"), wheels[0].name
    with zipfile.ZipFile(wheels[0]) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/WHEEL"))).decode()
        assert "Root-Is-Purelib: false" in meta, meta
        so = zf.read("p11nethsm/libnethsm_pkcs11.so")
    assert so.startswith(b"\x7fELF")
    # the libpython the shim loads is this interpreter's minor
    assert f"libpython{sys.version_info[0]}.{sys.version_info[1]}.so".encode() in so
