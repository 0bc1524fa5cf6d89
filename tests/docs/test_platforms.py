"""The CPython minors `make test` covers (Makefile PY_VERSIONS), the README's "Supported platforms"
table and the Dockerfile's PYTHON_VERSION build argument agree."""

from __future__ import annotations

import re

from docs_helpers import ROOT


def _make_var(name: str) -> list[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    m = re.search(rf"^{name}\s*\?=\s*(.*)$", text, re.M)
    assert m, f"Makefile has no {name} ?= ..."
    return m.group(1).split()


def _platform_rows() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    assert "## Supported platforms" in readme
    section = readme.split("## Supported platforms", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in section.splitlines()
            if ln.startswith("|") and not ln.startswith("|---")][1:]


def test_every_tested_minor_has_a_readme_row_saying_what_make_test_runs():
    rows = _platform_rows()
    for minor in _make_var("PY_VERSIONS"):
        tested = [r for r in rows if r[1].startswith(minor) and "make test" in r[2]]
        assert tested, f"README 'Supported platforms' has no row for CPython {minor} tested by make test"


def test_dockerfile_python_is_a_build_argument_defaulting_to_the_newest_tested_minor():
    text = (ROOT / "Dockerfile").read_text()
    m = re.search(r"^ARG PYTHON_VERSION=(\S+)$", text, re.M)
    assert m and text.index(m.group(0)) < text.index("\nFROM "), "ARG PYTHON_VERSION=... before the first FROM"
    newest = max(_make_var("PY_VERSIONS"), key=lambda v: tuple(map(int, v.split("."))))
    assert m.group(1) == newest == "3.13"
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms and all(f.startswith("python:${PYTHON_VERSION}-") for f in froms), froms
    readme = (ROOT / "README.md").read_text()
    assert "--build-arg PYTHON_VERSION=3.11" in readme
