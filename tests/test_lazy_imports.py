"""The heavy libraries stay out of a process until a page or command needs
them (issue 11, small footprint: a Raspberry Pi with 1 GB also runs
Orthanc). Each check runs in a fresh interpreter, since this test process
has imported everything already. A behaviour test, not a timing one: the
times are in bench/bench_footprint.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ghimaging import cli
from ghimaging.cligroup import LazyCommand

ROOT = Path(__file__).resolve().parent.parent

#: Loaded only by the code that uses them: DICOM (uploads, worklist files),
#: Genshi (worklist templates), Pillow (report images), cryptography (stored
#: passwords), requests (the Orthanc client's transport, ghimaging/orthanc/
#: transport.py), Alembic (migrations). GNU Health's xmlrpc.client is left
#: out: the standard library's, under 1 MB.
HEAVY = ("pydicom", "pynetdicom", "genshi", "PIL", "cryptography", "requests", "urllib3", "flask_migrate",
         "alembic", "weasyprint")

# Prints, as JSON, each heavy module present and who imported it first.
_PROBE = """
import builtins, json, sys, traceback
HEAVY = %r
first = {}
real_import = builtins.__import__
def spy(name, globals=None, locals=None, fromlist=(), level=0):
    known = set(sys.modules)
    try:
        return real_import(name, globals, locals, fromlist, level)
    finally:
        for mod in set(sys.modules) - known:
            if mod.split(".")[0] in HEAVY or mod in HEAVY:
                where = [f"{f.filename.rsplit('/ghimaging/', 1)[-1]}:{f.lineno}" for f in traceback.extract_stack()
                         if "/ghimaging/" in f.filename]
                first.setdefault(mod.split(".")[0] if mod.split(".")[0] in HEAVY else mod, where[-3:])
builtins.__import__ = spy
def report(extra=()):
    builtins.__import__ = real_import
    present = {m: first.get(m, []) for m in HEAVY if m in sys.modules}
    print("\\n@@" + json.dumps({"heavy": present, "extra": {m: m in sys.modules for m in extra}}), file=sys.stderr)
"""


def probe(code: str, tmp_path: Path, extra: tuple[str, ...] = ()) -> tuple[dict, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GHIMAGING_", "FLASK_"))}
    env.update(GHIMAGING_INSTANCE_PATH=str(tmp_path / "instance"), PYTHONPATH=str(ROOT))
    script = _PROBE % (HEAVY,) + code + f"\nreport({extra!r})\n"
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    line = r.stderr.rsplit("@@", 1)
    assert len(line) == 2, r.stderr[-3000:]
    return json.loads(line[1]), r


def test_importing_the_package_and_building_the_app_loads_no_heavy_library(tmp_path):
    seen, _ = probe("import ghimaging\nfrom ghimaging import create_app\napp = create_app()\n"
                    "assert 'uploads.upload' in app.view_functions and 'worklists.index' in app.view_functions\n",
                    tmp_path)
    assert seen["heavy"] == {}, f"imported at create_app (module: where): {seen['heavy']}"


def test_ghimaging_help_builds_no_app_and_loads_neither_flask_nor_sqlalchemy(tmp_path):
    code = ("import sys\nfrom ghimaging.cli import main\nsys.argv = ['ghimaging', '--help']\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code\n")
    seen, r = probe(code, tmp_path, extra=("flask", "sqlalchemy", "ghimaging.models"))
    assert seen["heavy"] == {}
    assert seen["extra"] == {"flask": False, "sqlalchemy": False, "ghimaging.models": False}
    for name in ("init", "create-user", "create-token", "serve", "sync", "worker", "backup", "restore",
                 "worklists", "gnuhealth", "orthanc", "db", "run", "shell", "routes"):
        assert f"\n  {name} " in r.stdout, name
    assert not (tmp_path / "instance").exists()  # no app was built, so no instance folder either


def test_serving_builds_the_app_in_the_worker_not_in_the_cli(tmp_path):
    """``ghimaging serve`` resolves its command without building the app (the
    gunicorn master would otherwise carry a whole app it never serves)."""
    code = ("from ghimaging.cli import main_group\nimport click\n"
            "ctx = click.Context(main_group)\ncmd = main_group.get_command(ctx, 'serve')\nassert cmd is not None\n")
    seen, _ = probe(code, tmp_path, extra=("sqlalchemy", "ghimaging.models"))
    assert seen["heavy"] == {}
    assert seen["extra"] == {"sqlalchemy": False, "ghimaging.models": False}


def test_a_password_the_worklist_templates_and_an_orthanc_client_load_their_libraries_when_used(tmp_path):
    """The lazy paths: each library arrives with the first call that needs it
    (uploads, previews and report images: their own test files)."""
    code = """
from ghimaging import create_app
app = create_app()
import sys
from ghimaging.crypto import decrypt, encrypt
with app.app_context():
    assert decrypt(encrypt("s3cret")) == "s3cret"
assert "cryptography" in sys.modules and "genshi" not in sys.modules and "pydicom" not in sys.modules
from ghimaging.orthanc.client import OrthancClient
assert "requests" not in sys.modules
OrthancClient("http://127.0.0.1:9").close()
assert "requests" in sys.modules
with app.test_request_context():
    from ghimaging.worklists import templates
    templates.check_shipped()  # compiles the shipped templates
assert "genshi" in sys.modules
from ghimaging.worklists.charsets import choices
assert ("ISO_IR 192", "ISO_IR 192 — Unicode (UTF-8)") in choices() and "pydicom" in sys.modules
"""
    seen, r = probe(code, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert set(seen["heavy"]) >= {"cryptography", "genshi", "pydicom", "requests"}


LAZY = {**cli.LAZY, **cli.FLASK_COMMANDS}


@pytest.mark.parametrize("name", sorted(LAZY))
def test_the_help_line_of_a_lazily_loaded_command_is_its_own(name):
    """``ghimaging --help`` shows lazily loaded commands from a line kept in
    cli.py: it must say what the command itself says."""
    target, line = LAZY[name]
    real = LazyCommand(name, target, line).real()
    assert isinstance(real, click.Command)
    assert click.Command(name, help=line).get_short_help_str(1000) == real.get_short_help_str(1000)
