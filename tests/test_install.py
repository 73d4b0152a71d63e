"""The wheel installs into a fresh virtual environment outside the checkout
and the installed ``ghimaging`` initialises an instance and serves it."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.support.factories import PASSWORD

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GHIMAGING_", "FLASK_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(extra)
    return env


def run(cmd, *, cwd, env=None, stdin=None, timeout=600) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), input=stdin,
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", out], cwd=ROOT)
    wheels = list(out.glob("ghimaging-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("venv") / "env"
    assert ROOT not in path.parents, "the virtual environment must be outside the checkout"
    run([sys.executable, "-m", "venv", path], cwd=path.parent)
    # With the extra "pdf" (WeasyPrint), as deploy/install.sh installs it.
    run([path / "bin" / "python", "-m", "pip", "install", "--quiet", f"{wheel}[pdf]"], cwd=path.parent)
    return path


def test_wheel_ships_templates_static_files_and_migrations(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "ghimaging/templates/base.html" in names
    assert "ghimaging/templates/auth/login.html" in names
    assert "ghimaging/static/css/app.css" in names
    assert "ghimaging/static/js/app.js" in names
    assert "ghimaging/migrations/alembic.ini" in names
    assert "ghimaging/migrations/env.py" in names
    assert any(re.fullmatch(r"ghimaging/migrations/versions/\w+\.py", n) for n in names)
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "ghimaging = ghimaging.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_pdf_extra_renders_a_pdf(venv, tmp_path):
    """The extra "pdf" brings WeasyPrint, and it renders with this machine's
    Pango and fonts from the installed venv (deploy/install.sh checks the
    same as the service user; tests/test_installer_chroot.py downloads a
    report's PDF from the installed service on each architecture)."""
    code = ("import weasyprint, ghimaging.imaging.printing as p; "
            "pdf = weasyprint.HTML(string='<p>Report</p>').write_pdf(); "
            "assert pdf.startswith(b'%PDF-'), pdf[:20]; print(len(pdf), weasyprint.__file__)")
    out = run([venv / "bin" / "python", "-c", code], cwd=tmp_path).stdout.split()
    assert int(out[0]) > 500 and Path(out[1]).is_relative_to(venv), out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, deadline_s: float = 120) -> None:
    """Poll until the server answers; a readiness wait, not a timing check."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"ghimaging serve exited with {proc.returncode}:\n{out[-3000:]}\n{err[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer")


def test_installed_app_initialises_and_serves_login_and_static_files(venv, tmp_path):
    instance, cwd = tmp_path / "instance", tmp_path / "cwd"
    cwd.mkdir()
    env = clean_env(GHIMAGING_INSTANCE_PATH=str(instance))
    bin_ = venv / "bin"

    where = run([bin_ / "python", "-c", "import ghimaging; print(ghimaging.__file__)"], cwd=cwd, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv)

    init = run([bin_ / "ghimaging", "init"], cwd=cwd, env=env)
    assert "10 modality type(s) added" in init.stdout
    assert (instance / "ghimaging.sqlite").exists()
    assert (instance / "secret_key").exists()
    assert not (cwd / "instance").exists()

    run([bin_ / "ghimaging", "create-user", "admin", "--role", "admin", "--password-stdin"],
        cwd=cwd, env=env, stdin=PASSWORD + "\n")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(bin_ / "ghimaging"), "serve", "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(base + "/login", proc)

        with urllib.request.urlopen(base + "/login") as r:
            assert r.status == 200
            login_html = r.read().decode()
        assert "Sign in" in login_html

        with urllib.request.urlopen(base + "/static/css/app.css") as r:
            assert r.status == 200
            assert r.headers.get_content_type() == "text/css"
            assert r.read()

        # The user made by create-user signs in through the served form.
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        page = opener.open(base + "/login").read().decode()
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"csrf_token": token, "username": "admin", "password": PASSWORD}).encode()
        with opener.open(base + "/login", data=form) as r:
            assert r.status == 200
            assert urllib.parse.urlsplit(r.url).path != "/login"
            assert "Sign out" in r.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
