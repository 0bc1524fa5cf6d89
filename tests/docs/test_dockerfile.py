"""The Dockerfile lints clean (hadolint, .hadolint.yaml) and still matches the build and the README.
No Docker engine here: nothing is built or run."""

from __future__ import annotations

import re
import subprocess

from docs_helpers import ROOT, venv_tool

DOCKERFILE = ROOT / "Dockerfile"


def test_hadolint_clean():
    r = subprocess.run([venv_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_copied_sources_exist_and_cover_the_build():
    text = DOCKERFILE.read_text()
    copied = []
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        copied += line.split()[:-1]
    for src in copied:
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    # what `pip install .` needs: the build hook, metadata (readme), the shim sources, the package
    for needed in ("pyproject.toml", "setup.py", "README.md", "libshim", "p11nethsm"):
        assert needed in copied, f"Dockerfile does not copy {needed}"
    assert (ROOT / "libshim" / "build.py").exists()
    assert "p11nethsm module-path" in text  # the module is located the same way as in make build


def test_documented_docker_commands_are_in_the_readme():
    text = DOCKERFILE.read_text()
    readme = " ".join((ROOT / "README.md").read_text().replace("\\\n", " ").split())
    header = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")]
    joined = " ".join(ln[:-1].strip() + " \x00" if ln.endswith("\\") else ln + "\n" for ln in header)
    joined = re.sub(r"\x00\s*", "", joined)
    commands = [ln.strip() for ln in joined.splitlines() if ln.strip().startswith("docker ")]
    assert commands, "the Dockerfile header documents docker build/run"
    for cmd in commands:
        cmd = " ".join(cmd.split())
        assert cmd in readme, f"README lacks: {cmd}"
