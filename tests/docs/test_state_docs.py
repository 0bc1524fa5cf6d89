"""docs/state-machines.md is generated from p11nethsm/state/*.py and must not drift."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from docs_helpers import ROOT

SCRIPT = ROOT / "tools" / "render_state_docs.py"
DOC = ROOT / "docs" / "state-machines.md"


def _renderer():
    spec = importlib.util.spec_from_file_location("render_state_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_state_doc_is_up_to_date():
    expected = _renderer().render()
    current = DOC.read_text(encoding="utf-8")
    assert current == expected, (
        "docs/state-machines.md differs from the state machines in p11nethsm/state/; "
        "regenerate it with: .venv/bin/python tools/render_state_docs.py")


def test_every_machine_is_documented():
    from p11nethsm.state.instance_health import InstanceHealth
    from p11nethsm.state.lifecycle_chart import LifecycleChart
    from p11nethsm.state.login import LoginChart
    from p11nethsm.state.operation import OperationChart
    from p11nethsm.state.token import TokenChart

    r = _renderer()
    charts = r.discover()
    for chart in (TokenChart, LoginChart, OperationChart, InstanceHealth, LifecycleChart):
        assert chart.cls in charts
    text = DOC.read_text(encoding="utf-8")
    for chart in charts:
        assert f"## {chart.__name__} " in text
        for state in chart.states:
            assert f"`{state.id}`" in text
        assert f"{chart:mermaid}".strip() in text


def test_check_mode_detects_drift(tmp_path):
    stale = tmp_path / "state-machines.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("`reachable`", "`gone`", 1))
    r = subprocess.run([sys.executable, str(SCRIPT), "--check", "--output", str(stale)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "out of date" in r.stdout
    ok = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
