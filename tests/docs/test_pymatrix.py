"""`make test` over CPython minors (tools/pymatrix.py, tools/matrix_report.py): a missing minor is
a reported skip, never silent; the closing pytest line counts the recorded tests of every minor
and fails on any failure, build failure or incomplete run."""

from __future__ import annotations

import json
import subprocess
import sys

from docs_helpers import ROOT
from tools import pymatrix

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.core.test_a" name="test_ok" time="0.1"/>
<testcase classname="tests.core.test_a" name="test_bad[x]" time="0.1"><failure message="assert 1 == 2">E   assert 1 == 2</failure></testcase>
<testcase classname="tests.core.test_a" name="test_skip" time="0.0"><skipped type="pytest.skip" message="no tool"/></testcase>
<testcase classname="tests.core.test_a" name="test_setup" time="0.0"><error message="failed on setup">fixture broke</error></testcase>
</testsuite></testsuites>"""


def _record(path, **rec):
    base = {"status": "ran", "reason": "", "python": rec["minor"] + ".1", "exe": "/x/python", "where": "build/py",
            "args": ["tests/core"], "env": {}, "rc": 1, "seconds": 3.0}
    base.update(rec)
    path.write_text(json.dumps(base))


def _report(d):
    # exactly the closing run of make test
    return subprocess.run([sys.executable, *pymatrix.REPORT_ARGS, f"--rootdir={d}", str(d)], capture_output=True,
                          text=True, env=pymatrix.report_env(), timeout=120, cwd=d)


def test_a_minor_that_is_not_on_the_machine_is_named_with_the_reason():
    info, why = pymatrix.find_python("2.5")
    assert info is None and "no python2.5 on PATH" in why and "pyenv install 2.5" in why


def test_closing_line_counts_every_minor_and_fails_on_a_recorded_failure(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT)
    _record(tmp_path / "cpython-3.12.json", minor="3.12", junit=str(tmp_path / "j.xml"))
    _record(tmp_path / "cpython-3.14.json", minor="3.14", status="skipped", reason="no python3.14 on PATH")
    r = _report(tmp_path)
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 1, r.stdout + r.stderr
    # the run item passes (the run completed), its 4 cases replay as recorded, 3.14 is a skip
    assert lines[-1].startswith("1 failed, 2 passed, 2 skipped, 1 error in "), lines[-1]
    assert "CPython 3.14: SKIPPED: no python3.14 on PATH" in r.stdout
    assert "CPython 3.12.1 (/x/python, build/py): FAILED: 1 passed, 1 failed, 1 error, 1 skipped" in r.stdout
    assert "E   assert 1 == 2" in r.stdout and "fixture broke" in r.stdout
    assert r.stdout.index("CPython versions") < r.stdout.index(lines[-1])


def test_an_incomplete_run_or_a_failed_build_fails(tmp_path):
    _record(tmp_path / "cpython-3.12.json", minor="3.12", rc=3, junit=str(tmp_path / "missing.xml"))
    _record(tmp_path / "cpython-3.13.json", minor="3.13", status="build-failed", reason="make build failed: cc")
    r = _report(tmp_path)
    assert r.returncode == 1
    assert r.stdout.strip().splitlines()[-1].startswith("2 failed in "), r.stdout
    assert "pytest exited 3" in r.stdout and "make build failed: cc" in r.stdout


def test_all_green_passes(tmp_path):
    (tmp_path / "j.xml").write_text(JUNIT.split('<testcase classname="tests.core.test_a" name="test_bad')[0]
                                    + "</testsuite></testsuites>")
    _record(tmp_path / "cpython-3.13.json", minor="3.13", rc=0, junit=str(tmp_path / "j.xml"))
    r = _report(tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("2 passed in "), r.stdout


def test_the_tree_copy_follows_edits_and_keeps_its_own_venv(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / ".gitignore").write_text(".venv/\nbuild/\n*.so\n")
    (src / "pkg" / "a.py").write_text("a")
    (src / "pkg" / "gone.py").write_text("g")
    (src / "pkg" / "x.so").write_text("so")
    monkeypatch.setattr(pymatrix, "ROOT", str(src))
    dest = tmp_path / "dest"
    pymatrix.sync_tree(str(dest))
    assert (dest / "pkg" / "a.py").read_text() == "a" and not (dest / "pkg" / "x.so").exists()
    (dest / ".venv").mkdir()
    (dest / ".venv" / "pyvenv.cfg").write_text("home = /x")
    (dest / "pkg" / "built.so").write_text("b")
    (src / "pkg" / "gone.py").unlink()
    (src / "pkg" / "a.py").write_text("edited")
    pymatrix.sync_tree(str(dest))
    assert (dest / "pkg" / "a.py").read_text() == "edited"
    assert not (dest / "pkg" / "gone.py").exists()
    assert (dest / ".venv" / "pyvenv.cfg").exists() and (dest / "pkg" / "built.so").exists()


def test_matrix_test_list_becomes_ignores_so_conftests_load_as_in_the_whole_run(tmp_path):
    for f in ("tests/a/test_x.py", "tests/a/test_y.py", "tests/a/conftest.py", "tests/b/test_z.py",
              "tests/c/test_w.py"):
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    args = pymatrix.as_ignores(str(tmp_path), ["tests/a/test_x.py", "tests/c"])
    assert args[0] == "tests" and sorted(args[1:]) == ["--ignore=tests/a/test_y.py", "--ignore=tests/b"]
