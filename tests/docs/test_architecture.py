"""The architecture of issue 12 holds: tools/archcheck.py, one test per check, so a failure names
its offenders (the tool prints them: module:line and why)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from docs_helpers import ROOT

CHECKS = {
    "a": "import-linter contracts of pyproject.toml (layers, independence, no cycles)",
    "b": "no function-local import of our own modules; lazy ones carry '# lazy: <why>'",
    "c": "no .py file over 400 lines or function over 60 (libshim C included)",
    "d": "no citation of documents outside the repo; every docs/*.md cited exists",
}


@pytest.mark.parametrize("check", sorted(CHECKS), ids=["a-contracts", "b-local-imports", "c-sizes", "d-citations"])
def test_archcheck(check):
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "archcheck.py"), "--only", check],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, f"({check}) {CHECKS[check]}:\n{r.stdout}{r.stderr}"
