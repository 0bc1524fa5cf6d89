"""make deps enables <codename>-backports for pkcs11-provider from the machine's own Debian apt
source (tools/enable-backports.sh): never a mirror host name in the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "enable-backports.sh"

DEB822 = """Types: deb
# http://snapshot.example/archive/debian/20250520T000000Z
URIs: http://mirror.example.test/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example.test/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def run(apt: Path):
    return subprocess.run(["bash", str(SCRIPT)], env={"PATH": "/usr/bin:/bin", "APT_SOURCES_DIR": str(apt),
                                                      "CODENAME": "bookworm"}, capture_output=True, text=True)


def test_deb822_source_gives_a_backports_source_with_the_same_mirror(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    r = run(tmp_path)
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "sources.list.d" / "p11nethsm-backports.sources").read_text()
    assert "URIs: http://mirror.example.test/debian\n" in out and "Suites: bookworm-backports\n" in out
    assert "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" in out
    # run again: a backports source exists, nothing is rewritten
    (tmp_path / "sources.list.d" / "p11nethsm-backports.sources").write_text("Suites: bookworm-backports\n")
    assert run(tmp_path).returncode == 0
    assert (tmp_path / "sources.list.d" / "p11nethsm-backports.sources").read_text() == "Suites: bookworm-backports\n"


def test_one_line_sources_list(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://old.example.test/debian bookworm main\n")
    assert run(tmp_path).returncode == 0
    out = (tmp_path / "sources.list.d" / "p11nethsm-backports.sources").read_text()
    assert "URIs: http://old.example.test/debian\n" in out


def test_no_source_is_an_error_not_a_guess(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    r = run(tmp_path)
    assert r.returncode != 0 and "no 'bookworm' source" in r.stderr


def test_makefile_installs_the_provider_from_backports_without_a_mirror_name():
    mk = (ROOT / "Makefile").read_text()
    assert "BACKPORTS_PACKAGES := pkcs11-provider" in mk and "tools/enable-backports.sh" in mk
    assert "openssh-server" in mk
    for text in (mk, SCRIPT.read_text()):
        assert "debian.org" not in text
