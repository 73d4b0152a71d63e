"""The code base's own rules, checked on its source: one home for each rule.

Each test names the rule and lists the places that break it, so a change
that brings a second home back fails here with the file and line.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ghimaging"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)
TEMPLATES = sorted((ROOT / "templates").rglob("*.html"))
TESTS = sorted((ROOT / "tests").rglob("*.py"))

#: Where a transaction may end: views, CLI commands, background steps. The
#: one-job modules after them commit on purpose, each explained in place.
BOUNDARIES = re.compile(r"(routes|inbox|images|cli|commands|worker|background|runner)\.py$|/api/")
OWN_TRANSACTION = {
    # The sync lease must be visible to other processes at once.
    "ghimaging/orthanc/lease.py",
    # A failed sign-in is recorded although the request that made it fails.
    "ghimaging/auth/throttle.py",
}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_services_flush_and_only_boundaries_commit():
    """Services flush; the request, CLI command or background step that
    called them commits once (issue 14: one transaction owner)."""
    found = []
    for path in SOURCES:
        rel = _rel(path)
        if BOUNDARIES.search(rel) or rel in OWN_TRANSACTION:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.commit\(\)", line) and not line.lstrip().startswith("#"):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []


def test_no_role_checks_outside_the_permission_map():
    """Who may do what is asked of ``ghimaging/permissions.py`` only."""
    found = []
    for path in [*SOURCES, *TEMPLATES]:
        rel = _rel(path)
        if rel == "ghimaging/permissions.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"has_role|roles_required|admin_required", line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []


def test_no_status_or_branch_chosen_by_message_text():
    """Callers branch on an error's type or ``code``, never on its words."""
    found = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""["'][^"']+["'] in str\(|str\(\w+\)\.(startswith|endswith)|in \w+\.message\b""", line):
                found.append(f"{_rel(path)}:{n}: {line.strip()}")
    assert found == []


def test_no_module_is_longer_than_400_lines():
    """Small modules with one job each."""
    long = {_rel(p): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_no_test_imports_from_conftest():
    """Shared test code lives in tests/support; conftest only holds fixtures."""
    found = [f"{_rel(p)}: {line.strip()}" for p in TESTS for line in p.read_text().splitlines()
             if re.match(r"\s*from (tests\.)?conftest import", line)]
    assert found == []


def test_no_unreachable_csrf_guards():
    """The app-wide CSRF check (Flask-WTF's CSRFProtect) runs before every
    POST view, so ``EmptyForm().validate_on_submit()`` inside one can never
    be false: such a guard is dead code that reads like a check."""
    found = []
    for path in SOURCES:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"EmptyForm\(\)\.validate_on_submit\(\)", line):
                found.append(f"{_rel(path)}:{n}: {line.strip()}")
    assert found == []


def test_tests_do_not_return_early_in_silence():
    """A test that cannot run fails and says why; a bare ``return`` inside a
    test body after a condition would pass without checking anything."""
    found = []
    for path in TESTS:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.If) and any(isinstance(s, ast.Return) and s.value is None
                                                       for s in sub.body):
                        found.append(f"{_rel(path)}:{sub.lineno}: {node.name}")
    assert found == []
