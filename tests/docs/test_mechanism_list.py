"""The README's "Mechanisms" table lists exactly the mechanism records (p11nethsm/mechanisms/*)."""

from __future__ import annotations

import re

from docs_helpers import ROOT


def test_readme_mechanism_table_is_the_records():
    from p11nethsm.mechanisms.registry import RECORDS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### Mechanisms\n", 1)[1].split("\n#", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    listed = re.findall(r"`CKM_(\w+)`", table)
    assert len(listed) == len(set(listed))
    assert set(listed) == {r.ckm.name for r in RECORDS}
