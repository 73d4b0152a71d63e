"""App hosts served by real processes, set up as an IT person would: each
host has its own instance folder and settings, runs the ``ghimaging``
command for its set-up (``init``, ``create-user``, ``create-token``) and
serves with ``ghimaging serve`` (gunicorn, the background loop inside each
worker) or, as a setup with several app hosts may, serves with
``GHIMAGING_RUN_BACKGROUND=false`` and runs ``ghimaging worker`` beside it
(``separate_worker``). Shared by the two-host and load tests.

Logs (gunicorn's access log and the app's own) go to ``serve.log`` in the
host's folder, so a test can look for 5xx answers, tracebacks and lock
errors in what the server wrote, not only in what the client saw; a
separate worker's output goes to ``worker.log`` beside it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import requests

from .loadtools import CLI, ROOT, free_port, tree, wait_serving

PASSWORD = "s3cret-Passw0rd"
#: What a user made by ``create-user`` chooses at the first sign-in.
OWN_PASSWORD = "Chosen-by-me-2026"
#: Passwords users chose, by (database, username): shared by the hosts of one database.
_passwords: dict[tuple[str, str], str] = {}
#: What a served process must never write or answer under load.
LOCK_ERRORS = re.compile(r"database is locked|deadlock detected|could not serialize|"
                         r"OperationalError|IntegrityError", re.IGNORECASE)
#: A 5xx line of gunicorn's access log: ``"GET /x HTTP/1.1" 500 123``.
SERVER_ERROR_LINE = re.compile(r'"[A-Z]+ [^"]*" 5\d\d ')
#: Files in the instance folder that must be the same on every host: the key
#: that decrypts stored Orthanc and GNU Health passwords, and the one that
#: signs sessions (a sign-in on one host is then good on the others).
SHARED_SECRETS = ("credentials.key", "secret_key")


def new_session() -> requests.Session:
    """A client that opens a connection per request. One load run in four
    here ended on a connection reset with nothing in the server's log; the
    likeliest cause is the kept-alive connection that gunicorn closes after
    ``keepalive`` idle seconds just as the client reuses it, a transport
    race that browsers absorb by retrying and that nginx avoids with an
    upstream ``keepalive_timeout`` below gunicorn's (README, *Production*).
    These tests are about the application's answers."""
    s = requests.Session()
    s.headers["Connection"] = "close"
    return s


class Host:
    """One app host: ``base/instance`` is its instance folder, ``env`` more
    ``GHIMAGING_*`` settings (the database URL is one of them). With
    ``separate_worker`` the served processes leave the background work to a
    ``ghimaging worker`` process that ``spawn`` starts beside them."""

    def __init__(self, base: Path, database_url: str, *, env: dict[str, str] | None = None,
                 workers: int = 1, threads: int = 6, separate_worker: bool = False):
        self.base = base
        self.instance = base / "instance"
        base.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items()
                     if not k.startswith("GHIMAGING_") or k.startswith("GHIMAGING_TEST_")}
        self.env = {**inherited, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "GHIMAGING_INSTANCE_PATH": str(self.instance), "GHIMAGING_DATABASE_URL": database_url,
                    **(env or {})}
        if separate_worker:
            self.env["GHIMAGING_RUN_BACKGROUND"] = "false"
        self.separate_worker = separate_worker
        self.workers, self.threads = workers, threads
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = base / "serve.log"
        self.worker_log_path = base / "worker.log"

    # -- set-up with the ghimaging command --------------------------------
    def run(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        """Run ``ghimaging ARGS`` with this host's settings."""
        return subprocess.run([*CLI, *args], env=self.env, cwd=ROOT, input=stdin, capture_output=True,
                              text=True, timeout=180, check=False)

    def cli(self, *args: str, stdin: str = "") -> str:
        """Run ``ghimaging ARGS``, which must succeed; its output."""
        done = self.run(*args, stdin=stdin)
        if done.returncode != 0:
            raise AssertionError(f"ghimaging {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def create_user(self, username: str, *roles: str) -> None:
        self.cli("create-user", username, *[a for r in roles for a in ("--role", r)], "--password-stdin",
                 stdin=PASSWORD + "\n")

    def token(self, username: str) -> str:
        return self.cli("create-token", username).strip().splitlines()[-1]

    def copy_secrets_from(self, other: Host) -> None:
        """Configure this host as a second one: the shared keys copied from
        the first, before this host ever starts (it would otherwise make
        keys of its own)."""
        self.instance.mkdir(parents=True, exist_ok=True, mode=0o700)
        for name in SHARED_SECRETS:
            shutil.copy2(other.instance / name, self.instance / name)
            os.chmod(self.instance / name, 0o600)

    # -- serving ----------------------------------------------------------
    def start(self, wait: float = 120) -> Host:
        return self.spawn().ready(wait)

    def spawn(self) -> Host:
        """Start serving without waiting (``ready`` waits): hosts started
        together race for their first sync, as after a power cut."""
        port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*CLI, "serve", "--port", str(port), "--workers", str(self.workers), "--threads", str(self.threads)],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.url = f"http://127.0.0.1:{port}"
        if self.separate_worker:
            with open(self.worker_log_path, "ab") as log:
                self.worker = subprocess.Popen([*CLI, "worker"], env=self.env, cwd=ROOT, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def ready(self, wait: float = 120) -> Host:
        """Wait until the host answers ``/login``."""
        assert self.proc is not None
        if not wait_serving(self.url, self.proc, wait):
            self.stop()
            raise AssertionError("ghimaging serve did not start:\n" + self.log()[-3000:])
        return self

    def stop(self) -> None:
        for proc in (self.proc, self.worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()

    def pids(self) -> set[int]:
        """The gunicorn master and its workers (empty once stopped)."""
        return set(tree(self.proc.pid)) if self.proc is not None and self.proc.poll() is None else set()

    def worker_pids(self) -> set[int]:
        """The ``ghimaging worker`` process (empty without one, or once stopped)."""
        return set(tree(self.worker.pid)) if self.worker is not None and self.worker.poll() is None else set()

    def log(self) -> str:
        return _read(self.log_path)

    def worker_log(self) -> str:
        return _read(self.worker_log_path)

    def log_problems(self) -> list[str]:
        """Lines of the served log (and the worker's) that show a 5xx
        answer, a traceback or a database lock error."""
        return [line for line in (self.log() + "\n" + self.worker_log()).splitlines()
                if SERVER_ERROR_LINE.search(line) or LOCK_ERRORS.search(line) or line.startswith("Traceback")]

    # -- clients ----------------------------------------------------------
    def api(self, token: str) -> Api:
        return Api(self.url, token)

    def signed_in(self, username: str) -> requests.Session:
        """A browser-like session signed in through the login form. A user
        made by ``create-user`` (a password someone else chose) is led to
        choose their own at the first sign-in, as a person would; until
        then their API tokens are refused, so tests sign each user in once
        before using tokens."""
        key = (self.env["GHIMAGING_DATABASE_URL"].split("?")[0], username)
        s = new_session()
        page = s.get(self.url + "/login", timeout=30).text
        r = s.post(self.url + "/login", data={"username": username, "password": _passwords.get(key, PASSWORD),
                                              "csrf_token": csrf_token(page)},
                   allow_redirects=False, timeout=30)
        assert r.status_code == 302, r.text[:300]
        # Follow the redirect as a browser does: the page it renders gives
        # the new session its CSRF token. (Pages rendered at once before
        # that each make a token of their own, and all but the last one's
        # forms are refused: seen here, reported, not what this tests.)
        landed = s.get(self.url + r.headers["Location"] if r.headers["Location"].startswith("/")
                       else r.headers["Location"], timeout=30)
        if "/account/password" in landed.url:
            r = s.post(landed.url, data={"csrf_token": csrf_token(landed.text), "current_password": PASSWORD,
                                         "new_password": OWN_PASSWORD, "confirm": OWN_PASSWORD},
                       allow_redirects=False, timeout=30)
            assert r.status_code == 302, r.text[-1000:]
            _passwords[key] = OWN_PASSWORD
            s.get(self.url + "/", timeout=30)
        return s

    def upload(self, session: requests.Session, files: list[tuple[str, bytes]], request_id: str = "") -> requests.Response:
        """POST DICOM files as the upload page's script does (JSON answer)."""
        page = session.get(self.url + "/upload/", timeout=30).text
        server_id = re.search(r'<select id="server_id" name="server_id"><option value="(\d+)"', page)
        assert server_id, page[:500]
        return session.post(self.url + "/upload/?format=json", timeout=300,
                            data={"csrf_token": csrf_token(page), "server_id": server_id.group(1),
                                  "request_id": request_id},
                            files=[("files", (name, data, "application/dicom")) for name, data in files],
                            headers={"Accept": "application/json"})


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def csrf_token(page: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found, "no CSRF token in the page:\n" + page[:500]
    return found.group(1)


class Api:
    """JSON calls with a bearer token."""

    def __init__(self, base: str, token: str):
        self.base = base
        self.s = new_session()
        self.s.headers["Authorization"] = f"Bearer {token}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.s.get(self.base + path, timeout=120, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.s.post(self.base + path, json=json, timeout=300, **kw)
