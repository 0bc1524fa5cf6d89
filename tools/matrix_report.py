"""pytest plugin: the closing report of `make test` over every CPython minor (tools/pymatrix.py).

    (tools/pymatrix.py REPORT_ARGS) python -m pytest -c /dev/null -p matrix_report -rfE -q build/matrix

Collects build/matrix/cpython-<minor>.json. Per minor, the item `run` fails if the version could
not be built or its pytest run did not complete (exit status other than 0/1, no JUnit file, no
test), and is skipped with the reason if the version is not on the machine. Every test case of
that run's JUnit XML is then an item with the recorded outcome (failure text included), so the
closing line counts the tests of all versions; a line per version precedes it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

_RESULTS: list[dict] = []


def pytest_collect_file(file_path, parent):
    if file_path.name.startswith("cpython-") and file_path.suffix == ".json":
        return VersionFile.from_parent(parent, path=file_path)
    return None


def _cases(junit: str) -> list[tuple[str, str, str]]:
    """[(name, outcome, text)] with outcome passed/failed/error/skipped/xfailed."""
    out = []
    for tc in ET.parse(junit).getroot().iter("testcase"):
        name = f"{tc.get('classname', '')}::{tc.get('name', '')}".lstrip(":")
        outcome, text = "passed", ""
        for child in tc:
            detail = (child.get("message") or "") + ("\n" + child.text if child.text else "")
            if child.tag == "failure":
                outcome, text = "failed", detail
            elif child.tag == "error" and outcome != "failed":
                outcome, text = "error", detail
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
                text = child.get("message") or ""
        out.append((name, outcome, text))
    return out


class VersionFile(pytest.File):
    def collect(self):
        rec = json.loads(self.path.read_text())
        rec["cases"] = []
        problem = ""
        if rec["status"] == "ran":
            try:
                rec["cases"] = _cases(rec["junit"])
            except (OSError, ET.ParseError) as exc:
                problem = f"no JUnit result ({exc})"
            if rec["rc"] not in (0, 1):
                problem = f"pytest exited {rec['rc']} (interrupted, internal or usage error, or no tests) " + problem
            elif not rec["cases"] and not problem:
                problem = "the run recorded no test"
        elif rec["status"] == "build-failed":
            problem = rec["reason"]
        rec["problem"] = problem
        _RESULTS.append(rec)
        yield Replay.from_parent(self, name="run", outcome=("failed" if problem else
                                 "skipped" if rec["status"] == "skipped" else "passed"),
                                 text=problem or f"CPython {rec['minor']} not tested: {rec['reason']}")
        for name, outcome, text in rec["cases"]:
            yield Replay.from_parent(self, name=name, outcome=outcome, text=text)


class Replay(pytest.Item):
    def __init__(self, *, outcome: str, text: str, **kw):
        super().__init__(**kw)
        self.outcome, self.text = outcome, text

    def setup(self):
        if self.outcome == "error":
            raise RecordedFailure(self.text)

    def runtest(self):
        if self.outcome == "failed":
            raise RecordedFailure(self.text)
        if self.outcome == "skipped":
            pytest.skip(self.text)
        if self.outcome == "xfailed":
            pytest.xfail(self.text)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, RecordedFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.name


class RecordedFailure(Exception):
    pass


def _line(rec: dict) -> str:
    if rec["status"] == "skipped":
        return f"CPython {rec['minor']}: SKIPPED: {rec['reason']}"
    head = f"CPython {rec['python']} ({rec['exe']}, {rec['where']})"
    if rec["status"] == "build-failed":
        return f"{head}: BUILD FAILED (see the item `run`)"
    counts: dict[str, int] = {}
    for _, outcome, _ in rec["cases"]:
        counts[outcome] = counts.get(outcome, 0) + 1
    shown = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed") if k in counts)
    verdict = "FAILED" if rec["problem"] or counts.get("failed") or counts.get("error") else "ok"
    return (f"{head}: {verdict}: {shown or 'no tests'} in {rec['seconds']:.0f} s; "
            f"pytest {' '.join(rec['args'])}" + "".join(f" {k}={v}" for k, v in rec["env"].items()))


def pytest_terminal_summary(terminalreporter):
    if not _RESULTS:
        return
    terminalreporter.section("CPython versions")
    for rec in sorted(_RESULTS, key=lambda r: tuple(int(x) for x in r["minor"].split("."))):
        terminalreporter.line(_line(rec))
