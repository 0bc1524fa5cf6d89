"""Build hook: compile the C shim (libshim/) into the package as
p11nethsm/libnethsm_pkcs11.so. Everything else is in pyproject.toml.

The shim is built with the Python running the build (its headers, minor and
libpython soname are baked in), so wheels are tagged per CPython minor and
platform (has_ext_modules).
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
SO_NAME = "libnethsm_pkcs11.so"


def _build_shim(out: str, build_dir: str) -> None:
    sys.path.insert(0, os.path.join(HERE, "libshim"))
    try:
        import build as shim_build  # libshim/build.py
    finally:
        sys.path.pop(0)
    shim_build.build(out, build_dir=build_dir)


class BuildPyWithShim(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # editable install: the package dir is the source tree
            out = os.path.join(HERE, "p11nethsm", SO_NAME)
            build_dir = os.path.join(HERE, "build", "shim")
        else:
            out = os.path.join(os.path.abspath(self.build_lib), "p11nethsm", SO_NAME)
            build_dir = os.path.join(os.path.abspath(self.build_lib), os.pardir, "shim")
        _build_shim(out, build_dir)

    def get_outputs(self, include_bytecode=True):
        outs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outs.append(os.path.join(self.build_lib, "p11nethsm", SO_NAME))
        return outs


class BinaryDistribution(Distribution):
    def has_ext_modules(self):  # platform + CPython-minor specific wheel
        return True


setup(cmdclass={"build_py": BuildPyWithShim}, distclass=BinaryDistribution)
