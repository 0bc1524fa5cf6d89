"""Architecture checks of issue 12: the layers and the size limits hold, the docs cited exist.

    .venv/bin/python tools/archcheck.py            # every check
    .venv/bin/python tools/archcheck.py --only b   # one check (a, b, c or d)

(a) the import-linter contracts of pyproject.toml pass (`lint-imports`, the venv's);
(b) function-local imports, counted per module: one of p11nethsm / nethsm_emulator (or a
    relative one) is a failure - hoist it, a cycle is a design problem - except a subcommand
    deferred by the command-line entry with a reason; a lazy third-party or stdlib one needs a
    `# lazy: <why>` comment on its line or in the comment lines right above;
(c) no .py file of p11nethsm/ or emulator/nethsm_emulator/ over 400 lines, no function over
    60 lines; the same limits for the C files of libshim/;
(d) nothing in the repository cites the reference material kept outside it (its file names,
    the ../shared directory, paths of a build machine), and every docs/*.md path cited in code,
    tests, the Makefile or the docs exists.

Prints what it checked and every offender; exits 1 if any check fails. Stdlib only, plus the
`lint-imports` command of import-linter (the `test` extra) for (a).
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("p11nethsm", "emulator/nethsm_emulator")
OWN_TOP = {"p11nethsm", "nethsm_emulator"}
MAX_FILE_LINES = 400
MAX_FUNC_LINES = 60
LAZY_MARK = "# lazy:"
# The command-line entry may defer one of our own subcommand modules (with a `# lazy:` reason):
# it sits in the top layer, so the deferral hides no layer break from lint-imports, and every
# command's start-up would otherwise pay for the REST client.
ENTRY_POINTS = {"p11nethsm/cli.py"}
# C_Initialize may defer an optional feature module of ours that only a config key turns on
# (same conditions: a `# lazy:` reason; the import stays visible to lint-imports).
OPTIONAL_FEATURES = {("p11nethsm/handlers/general.py", "p11nethsm.metrics")}
# Built from pieces so this file does not cite what it forbids.
FORBIDDEN = [
    ("pkcs11-setup" + ".txt", "the README's configuration reference"),
    ("nethsm-api" + "-notes", "docs/nethsm-behaviour.md"),
    ("embedding" + "-python", "docs/embedding.md"),
    ("../" + "shared", "a document in the repository"),
    ("/" + "work/", "a path relative to the repository"),
]
DOC_CITATION = re.compile(r"(?<![\w./-])((?:[\w-]+/)*docs/[\w./-]+?\.md)\b")
SELF = {"tools/archcheck.py", "tests/docs/test_architecture.py"}


def _py_files() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if line]


# --------------------------------------------------------------------------- (a)
def check_contracts() -> list[str]:
    exe = Path(sys.executable).parent / "lint-imports"
    cmd = [str(exe) if exe.exists() else "lint-imports", "--no-cache", "--no-logo"]
    try:
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "COLUMNS": "200"})  # one offender per line
    except FileNotFoundError:
        return ["lint-imports not found: pip install -e '.[test]' (import-linter)"]
    text = (r.stdout + r.stderr).strip()
    summary = [ln for ln in text.splitlines() if ln.startswith("Contracts:") or " BROKEN" in ln]
    print("\n".join(summary) or text)
    if r.returncode == 0:
        return []
    broken = text.split("Broken contracts", 1)[-1].lstrip("-\n ").rstrip()
    return [broken or text]


# --------------------------------------------------------------------------- (b)
def _function_imports(tree: ast.AST):
    """Yield every Import/ImportFrom node nested in a function body (at any depth)."""
    def walk(node, in_func):
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if in_func and isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child
            yield from walk(child, func)
    yield from walk(tree, False)


def _is_own(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in OWN_TOP
    return any(a.name.split(".")[0] in OWN_TOP for a in node.names)


def _target(node: ast.Import | ast.ImportFrom) -> str:
    """The module an import loads (`from p11nethsm import metrics` -> p11nethsm.metrics)."""
    if isinstance(node, ast.Import):
        return node.names[0].name
    base = node.module or ""
    return f"{base}.{node.names[0].name}" if len(node.names) == 1 else base


def _comment_above(lines: list[str], lineno: int) -> str:
    """The import's own line plus the comment lines right above it (a reason may take two)."""
    text, i = lines[lineno - 1], lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#"):
        text, i = lines[i] + text, i - 1
    return text


def check_local_imports() -> list[str]:
    problems, counts = [], Counter()
    for path in _py_files():
        lines = path.read_text().splitlines()
        for node in _function_imports(ast.parse("\n".join(lines), str(path))):
            counts[_rel(path)] += 1
            where = f"{_rel(path)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
            marked = LAZY_MARK in _comment_above(lines, node.lineno)
            deferred = _rel(path) in ENTRY_POINTS or (_rel(path), _target(node)) in OPTIONAL_FEATURES
            if _is_own(node) and not (marked and deferred):
                problems.append(f"{where}  (function-local import of our own module: hoist it)")
                continue
            if not marked:
                problems.append(f"{where}  (lazy import without a '{LAZY_MARK} <why>' comment)")
    for mod, n in sorted(counts.items()):
        print(f"  {n:3d}  {mod}")
    print(f"function-local imports: {sum(counts.values())} in {len(counts)} modules")
    return problems


# --------------------------------------------------------------------------- (c)
def _py_sizes(path: Path) -> list[str]:
    text = path.read_text()
    out = []
    n = len(text.splitlines())
    if n > MAX_FILE_LINES:
        out.append(f"{_rel(path)}: {n} lines (> {MAX_FILE_LINES})")
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNC_LINES:
                out.append(f"{_rel(path)}:{node.lineno}: {node.name}() {length} lines (> {MAX_FUNC_LINES})")
    return out


_C_NAME = re.compile(r"(\w+)\s*\(")


def _c_sizes(path: Path) -> list[str]:
    """Functions of the house style: the body opens with `{` and closes with `}` at column 0."""
    lines = path.read_text().splitlines()
    out = []
    if len(lines) > MAX_FILE_LINES:
        out.append(f"{_rel(path)}: {len(lines)} lines (> {MAX_FILE_LINES})")
    start = name = None
    for i, line in enumerate(lines):
        if line == "{" and i and ")" in lines[i - 1]:
            head = next((lines[j] for j in range(i - 1, max(i - 6, -1), -1)
                         if lines[j][:1].isalpha() or lines[j][:1] == "_"), lines[i - 1])
            m = _C_NAME.findall(head.split("(", 1)[0] + "(")
            start, name = i, (m[-1] if m else "?")
        elif line == "}" and start is not None:
            length = i - start + 2  # the signature line, the braces and the body
            if length > MAX_FUNC_LINES:
                out.append(f"{_rel(path)}:{start}: {name}() {length} lines (> {MAX_FUNC_LINES})")
            start = None
    return out


def check_sizes() -> list[str]:
    problems = [p for path in _py_files() for p in _py_sizes(path)]
    for path in sorted((ROOT / "libshim").glob("*.c")) + sorted((ROOT / "libshim").glob("*.h")):
        problems += _c_sizes(path)
    print(f"checked {len(_py_files())} .py files and libshim/*.[ch] against "
          f"{MAX_FILE_LINES} lines per file, {MAX_FUNC_LINES} per function")
    return problems


# --------------------------------------------------------------------------- (d)
def check_citations() -> list[str]:
    problems = []
    files = [f for f in _tracked() if f not in SELF and (ROOT / f).is_file()]
    for rel in files:
        try:
            text = (ROOT / rel).read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for no, line in enumerate(text.splitlines(), 1):
            for needle, instead in FORBIDDEN:
                if needle in line:
                    problems.append(f"{rel}:{no}: cites '{needle}' (outside the repository; "
                                    f"cite {instead})  {line.strip()[:100]}")
            for cited in DOC_CITATION.findall(line):
                if any(needle in cited for needle, _ in FORBIDDEN):
                    continue  # reported above
                if "://" in line.split(cited)[0][-80:]:
                    continue  # a URL, not a path of this repository
                target = cited[cited.index("docs/"):] if not (ROOT / cited).exists() else cited
                if not (ROOT / target).exists() and not (ROOT / rel).parent.joinpath(cited).exists():
                    problems.append(f"{rel}:{no}: cites {cited}, which does not exist")
    print(f"scanned {len(files)} tracked files for citations")
    return problems


CHECKS = {
    "a": ("import-linter contracts (pyproject.toml)", check_contracts),
    "b": ("function-local imports", check_local_imports),
    "c": ("file and function sizes", check_sizes),
    "d": ("citations of documents", check_citations),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=sorted(CHECKS), action="append",
                    help="run only this check (repeatable)")
    args = ap.parse_args(argv)
    failed = []
    for key in args.only or sorted(CHECKS):
        title, fn = CHECKS[key]
        print(f"== ({key}) {title}")
        problems = fn()
        for p in problems:
            print(f"  FAIL {p}")
        print(f"== ({key}) {'FAIL' if problems else 'ok'}: {len(problems)} offender(s)\n")
        if problems:
            failed.append(key)
    print(f"archcheck: {'FAILED ' + ','.join(failed) if failed else 'all checks pass'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
