"""Shared fixtures: temporary config files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


@pytest.fixture
def write_config(tmp_path: Path):
    """write_config(yaml_text, name="p11nethsm.conf") -> path of a new config file."""

    def write(text: str, name: str = "p11nethsm.conf") -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return str(path)

    return write
