"""A real GNU Health 5.0 server (trytond + health_imaging + health_orthanc
from PyPI) for the tests of ghimaging's XML-RPC sync.

Building it costs a minute (a virtual environment, then ``trytond-admin``
initialising three SQLite databases), so it is done once per machine and
kept OUTSIDE the checkout, in a folder named after everything that goes into
it (package versions, Python version, this file's setup script):

    <cache root>/gnuhealth-<key>/venv/              trytond and the modules
    <cache root>/gnuhealth-<key>/templates/full/     health_imaging + health_orthanc
    <cache root>/gnuhealth-<key>/templates/imaging/  health_imaging only
    <cache root>/gnuhealth-<key>/templates/bare/     health only (no imaging)

The cache root is ``$GHIMAGING_TEST_GNUHEALTH_CACHE``, else
``/var/cache/ghimaging-tests`` when it can be written (root, CI), else
``~/.cache/ghimaging-tests``. A template folder is what trytond's
``[database] path`` points at: ``health.sqlite`` and the filestore
(``health/``) beside it. Each test copies one and starts ``trytond`` on a
free loopback port:

    build()                                    # idempotent, locked
    with GnuHealthServer(tmp_path / "gh") as gh:   # template "full"
        gh.url, gh.database, gh.user, gh.password

``python -m tests.support.gnuhealth build`` builds the cache (the test
command runs it once before both pytest runs, so they share it).

Every template holds three users besides ``admin``: ``ghimaging`` (the
least-privilege API user: "Health Imaging Administration", "Health Front
Desk" and "Product Administration", linked to a health professional) and ``noprof`` (the same groups,
no professional).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Pinned: the versions DESIGN.md section 3 was checked against. requests:
# health_orthanc imports it without declaring it.
PACKAGES = {
    "trytond": "7.0.59",
    "gnuhealth": "5.0.6",
    "gnuhealth-imaging": "5.0.4",
    "gnuhealth-orthanc": "5.0.4",
    "requests": ">=2.31",
}
DATABASE = "health"
ADMIN_PASSWORD = "gh-admin-Passw0rd"
API_USER = "ghimaging"
API_PASSWORD = "gh-api-Passw0rd-1"
NOPROF_USER = "noprof"
NOPROF_PASSWORD = "gh-noprof-Passw0rd-1"
# The least privilege that makes every call of the sync (DESIGN.md 3), plus
# "Product Administration": an imaging test needs a product, and only that
# group may create one (checked: "You are not allowed to access "Product
# Template"" without it). A clinic that creates its tests in GNU Health
# by hand can leave it out.
API_GROUPS = ["Health Imaging Administration", "Health Front Desk", "Product Administration"]
TEMPLATES = {
    # name: modules activated (with their dependencies)
    "bare": ["health"],
    "imaging": ["health_imaging"],
    "full": ["health_imaging", "health_orthanc"],
}

# Run by the GNU Health venv's Python on one template database: the users
# above, idempotently (it runs again after each module is added).
SETUP_SCRIPT = r'''
import sys
from trytond.config import config
config.update_etc(sys.argv[1])
from trytond.pool import Pool
from trytond.transaction import Transaction

dbname, groups_wanted, users = sys.argv[2], sys.argv[3].split("|"), sys.argv[4:]
pool = Pool(dbname)
pool.init()
with Transaction().start(dbname, 0, context={"active_test": False}) as tr:
    User = pool.get("res.user")
    Group = pool.get("res.group")
    Party = pool.get("party.party")
    Prof = pool.get("gnuhealth.healthprofessional")
    groups = Group.search([("name", "in", groups_wanted)])
    for spec in users:
        login, password, with_prof = spec.split(":")
        found = User.search([("login", "=", login)])
        if found:
            user = found[0]
        else:
            user, = User.create([{"login": login, "name": login.title(), "password": password}])
        User.write([user], {"groups": [("add", [g.id for g in groups])]})
        if with_prof == "1" and not Prof.search([("party.internal_user", "=", user.id)]):
            party, = Party.create([{"name": "Ghimaging", "lastname": "Radiology", "is_person": True,
                                    "gender": "f", "is_healthprof": True, "internal_user": user.id,
                                    "fed_country": "XXX"}])
            Prof.create([{"party": party.id}])
    names = [g.name for g in groups]
    tr.commit()
print("users ready:", ", ".join(u.split(":")[0] for u in users), "groups:", ", ".join(names))
'''


class GnuHealthError(RuntimeError):
    """The GNU Health test server could not be built or started."""


def _python_tag() -> str:
    return f"py{sys.version_info.major}{sys.version_info.minor}"


def cache_key() -> str:
    """Changes whenever anything that goes into the cache changes."""
    text = json.dumps({"packages": PACKAGES, "python": sys.version.split()[0], "setup": SETUP_SCRIPT,
                       "templates": TEMPLATES, "users": [API_USER, API_PASSWORD, NOPROF_USER, NOPROF_PASSWORD,
                                                        ADMIN_PASSWORD, API_GROUPS]}, sort_keys=True)
    return f"{_python_tag()}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def cache_root() -> Path:
    env = os.environ.get("GHIMAGING_TEST_GNUHEALTH_CACHE")
    if env:
        return Path(env)
    system = Path("/var/cache/ghimaging-tests")
    try:
        system.mkdir(parents=True, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return Path.home() / ".cache" / "ghimaging-tests"


def cache_dir() -> Path:
    return cache_root() / f"gnuhealth-{cache_key()}"


def is_built(folder: Path | None = None) -> bool:
    return ((folder or cache_dir()) / "ready").is_file()


def _run(cmd: list[str], log: Path, env: dict[str, str] | None = None, timeout: float = 900) -> None:
    with open(log, "ab") as out:
        out.write(("\n$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              env=env, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise GnuHealthError(f"{cmd[0]} failed (exit {proc.returncode}); log {log}:\n{tail}")


def _write_conf(path: Path, data_dir: Path, port: int | None = None) -> None:
    lines = ["[database]", "uri = sqlite://", f"path = {data_dir}", ""]
    if port:
        lines += ["[web]", f"listen = 127.0.0.1:{port}", ""]
    path.write_text("\n".join(lines))


def build(progress: Callable[[str], None] = lambda msg: None) -> Path:
    """The cache folder, built first if missing. Safe to call from several
    processes at once (a lock file; the loser waits, then finds it built)."""
    folder = cache_dir()
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    lock_path = folder.parent / f"{folder.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(folder):
            return folder
        _build_into(folder, progress)
    return folder


def _build_into(folder: Path, progress: Callable[[str], None]) -> None:
    """Built in place (a venv's scripts name its path), under the lock; the
    ``ready`` file, written last, says it is whole. A half-built folder from
    an interrupted build is removed first."""
    started = time.monotonic()
    work = folder
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "build.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    try:
        venv = work / "venv"
        progress(f"creating {venv}")
        _run([sys.executable, "-m", "venv", str(venv)], log, env)
        pins = [f"{n}=={v}" if v[0].isdigit() else f"{n}{v}" for n, v in PACKAGES.items()]
        progress("pip install " + " ".join(pins))
        _run([str(venv / "bin/python"), "-m", "pip", "install", "-q", *pins], log, env)
        installed = time.monotonic()
        passfile = work / "admin-password"
        passfile.write_text(ADMIN_PASSWORD + "\n")
        env_admin = dict(env, TRYTONPASSFILE=str(passfile))
        users = [f"{API_USER}:{API_PASSWORD}:1", f"{NOPROF_USER}:{NOPROF_PASSWORD}:0"]
        (work / "setup_users.py").write_text(SETUP_SCRIPT)
        # bare -> imaging -> full: each template is the previous one plus its
        # modules, so the shared part is initialised once.
        previous: Path | None = None
        for name in ("bare", "imaging", "full"):
            data = work / "templates" / name
            if previous is None:
                data.mkdir(parents=True)
                (data / f"{DATABASE}.sqlite").touch()
                extra = ["--all"]
            else:
                shutil.copytree(previous, data)
                extra = []
            conf = work / f"trytond-{name}.conf"
            _write_conf(conf, data)
            modules = TEMPLATES[name]
            progress(f"trytond-admin {name}: -u {' '.join(modules)}")
            _run([str(venv / "bin/trytond-admin"), "-c", str(conf), "-d", DATABASE, *extra, "-u", *modules,
                  "--activate-dependencies", "--email", "admin@example.org"], log, env_admin)
            _run([str(venv / "bin/python"), str(work / "setup_users.py"), str(conf), DATABASE,
                  "|".join(API_GROUPS), *users], log, env)
            conf.unlink()
            previous = data
        passfile.unlink()
        (work / "ready").write_text(json.dumps({
            "key": cache_key(), "packages": PACKAGES, "install_seconds": round(installed - started, 1),
            "total_seconds": round(time.monotonic() - started, 1)}) + "\n")
        progress(f"built {folder} in {time.monotonic() - started:.0f} s")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


# -- a running server -----------------------------------------------------------

def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LIVE: set[GnuHealthServer] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.kill()


class GnuHealthServer:
    """``trytond`` serving a private copy of one template database.

    ``url`` is the server's root (``http://127.0.0.1:PORT/``); XML-RPC for
    the database is at ``url + database + "/"``. The port stays the same
    across ``stop()``/``start()``, so an outage can be staged.
    """

    def __init__(self, workdir: str | os.PathLike, template: str = "full", start_timeout: float = 60.0):
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}")
        self.cache = build()
        self.workdir = Path(workdir)
        self.template = template
        self.data_dir = self.workdir / "data"
        self.workdir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.cache / "templates" / template, self.data_dir)
        self.port = find_free_port()
        self.conf = self.workdir / "trytond.conf"
        self.log_path = self.workdir / "trytond.log"
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen | None = None
        self.database = DATABASE
        self.user, self.password = API_USER, API_PASSWORD
        self.start_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> GnuHealthServer:
        if self.running:
            return self
        t0 = time.monotonic()
        _write_conf(self.conf, self.data_dir, self.port)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.cache / "venv/bin/trytond"), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))})
        _LIVE.add(self)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise GnuHealthError(f"trytond exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                # The pool loads on the first request to the database: a login
                # makes the first test call as fast as the others.
                self.admin()
                self.start_seconds = time.monotonic() - t0
                return self
            except (OSError, xmlrpc.client.ProtocolError):
                time.sleep(0.1)
        self.kill()
        raise GnuHealthError(f"trytond did not answer within {self.start_timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        _LIVE.discard(self)

    def kill(self) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        _LIVE.discard(self)

    def __enter__(self) -> GnuHealthServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    # -- the test's own view of GNU Health (not ghimaging's client) ----------
    def admin(self) -> Rpc:
        """A session as ``admin``, for arranging and checking GNU Health's data."""
        return Rpc(self.url, self.database, "admin", ADMIN_PASSWORD)

    def as_user(self, user: str = API_USER, password: str = API_PASSWORD) -> Rpc:
        return Rpc(self.url, self.database, user, password)


class _Transport(xmlrpc.client.Transport):
    auth = ""

    def send_headers(self, connection, headers):
        if self.auth:
            headers = [*headers, ("Authorization", self.auth)]
        super().send_headers(connection, headers)


def _py(value: Any) -> Any:
    """trytond's XML-RPC extensions (``{"__class__": "date", ...}``) as Python."""
    import datetime
    import decimal

    if isinstance(value, list):
        return [_py(v) for v in value]
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "date":
            return datetime.date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return datetime.datetime(value["year"], value["month"], value["day"], value.get("hour", 0),
                                     value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0))
        if kind == "Decimal":
            return decimal.Decimal(value["decimal"])
        if kind == "bytes":
            return base64.b64decode(value["base64"])
        return {k: _py(v) for k, v in value.items()}
    return value


class Rpc:
    """A plain XML-RPC session for the tests to arrange GNU Health's data
    (create requests "in GNU Health", read what ghimaging pushed)."""

    def __init__(self, url: str, database: str, user: str, password: str):
        self._transport = _Transport(use_builtin_types=True)
        self._proxy = xmlrpc.client.ServerProxy(f"{url}{database}/", allow_none=True, transport=self._transport,
                                                use_builtin_types=True)
        self.uid, session = self._proxy.common.db.login(user, {"password": password}, "en")
        self._transport.auth = "Session " + base64.b64encode(f"{user}:{self.uid}:{session}".encode()).decode()

    def __call__(self, method: str, *args: Any) -> Any:
        """``rpc("model.gnuhealth.patient.search", domain, 0, None, None)``: the
        empty context is added."""
        return _py(getattr(self._proxy, method)(*args, {}))

    def search_read(self, model: str, domain: list, fields: list[str], order=None) -> list[dict]:
        return self(f"model.{model}.search_read", domain, 0, None, order, fields)

    def create(self, model: str, values: dict) -> int:
        return self(f"model.{model}.create", [values])[0]

    def wizard(self, name: str, state: str, active_model: str, ids: list[int], data: dict | None = None) -> Any:
        sid, _, _ = self._proxy.__getattr__(f"wizard.{name}.create")({})
        ctx = {"active_model": active_model, "active_ids": ids, "active_id": ids[0] if ids else None}
        try:
            return _py(self._proxy.__getattr__(f"wizard.{name}.execute")(sid, data or {}, state, ctx))
        finally:
            self._proxy.__getattr__(f"wizard.{name}.delete")(sid, ctx)

    @staticmethod
    def date(day) -> dict:
        return {"__class__": "date", "year": day.year, "month": day.month, "day": day.day}


# -- a proxy that loses answers --------------------------------------------------

class DropProxy:
    """A loopback HTTP proxy in front of trytond that can lose the answer to
    a call GNU Health has already carried out: the request is forwarded and
    answered in full upstream, then the client's connection is closed without
    a byte. The one fault the real server cannot show on demand.

    ``drop_next(match)``: the next request whose body contains ``match``
    (e.g. ``b"wizard.generate.result.execute"``) loses its answer.
    """

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._drops: list[bytes] = []
        self.dropped: list[bytes] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="gnuhealth-drop-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def drop_next(self, match: bytes) -> None:
        with self._lock:
            self._drops.append(match)

    def close(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._sock.close()

    def _serve(self) -> None:
        while not self._stopping:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _read_request(rfile) -> tuple[bytes, dict[str, str], bytes] | None:
        line = rfile.readline()
        if not line:
            return None
        headers: dict[str, str] = {}
        raw = [line]
        while True:
            h = rfile.readline()
            raw.append(h)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = rfile.read(int(headers.get("content-length", "0") or 0))
        return line, headers, body

    def _handle(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while True:
                req = self._read_request(rfile)
                if req is None:
                    return
                line, headers, body = req
                method, path, _ = line.decode("latin-1").split(" ", 2)
                up = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=120)
                fwd = {k: v for k, v in headers.items() if k not in {"host", "connection", "content-length"}}
                up.request(method, path, body=body, headers=fwd)
                resp = up.getresponse()
                data = resp.read()
                up.close()
                self.forwarded += 1
                with self._lock:
                    hit = next((m for m in self._drops if m in body), None)
                    if hit is not None:
                        self._drops.remove(hit)
                        self.dropped.append(hit)
                if hit is not None:
                    return  # GNU Health did it; the caller never hears
                head = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
                for k, v in resp.getheaders():
                    if k.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        head.append(f"{k}: {v}\r\n")
                head.append(f"Content-Length: {len(data)}\r\n\r\n")
                conn.sendall("".join(head).encode("latin-1") + data)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                rfile.close()
                conn.close()


# -- a stranger on another port ----------------------------------------------------

class Listener:
    """A tiny HTTP server on a free loopback port, in a thread, that records
    every request it gets (``bodies``: headers and body, raw bytes) and
    answers each XML-RPC call with the string "7.0.59". With
    ``trickle=True`` it sends the headers of a long answer, then one byte
    every ``every`` seconds (for up to ``for_seconds``): a server a read
    timeout never catches. Stands for "whatever is at the address someone
    typed"; the faults it shows are the ones a real GNU Health does not
    show on demand."""

    def __init__(self, *, trickle: bool = False, every: float = 0.3, for_seconds: float = 60.0):
        self.trickle, self.every, self.for_seconds = trickle, every, for_seconds
        self.bodies: list[bytes] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self._stopping = threading.Event()
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, name="gnuhealth-listener", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.close()
        for conn in list(self._conns):
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while not self._stopping.is_set():
                req = DropProxy._read_request(rfile)
                if req is None:
                    return
                line, headers, body = req
                self.bodies.append(line + json.dumps(headers).encode() + b"\n" + body)
                if self.trickle:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n")
                    ends = time.monotonic() + self.for_seconds
                    while time.monotonic() < ends and not self._stopping.is_set():
                        conn.sendall(b" ")
                        time.sleep(self.every)
                    return
                answer = xmlrpc.client.dumps(("7.0.59",), methodresponse=True).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: "
                             + str(len(answer)).encode() + b"\r\n\r\n" + answer)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                rfile.close()
                conn.close()


def _main(argv: list[str]) -> int:
    if argv[:1] != ["build"]:
        print("usage: python -m tests.support.gnuhealth build", file=sys.stderr)
        return 2
    folder = cache_dir()
    if is_built(folder):
        print(f"    GNU Health test server: cached in {folder}")
        return 0
    t0 = time.monotonic()
    try:
        build(progress=lambda msg: print(f"    {msg}", flush=True))
    except GnuHealthError as exc:
        print(f"GNU Health test server could not be built: {exc}", file=sys.stderr)
        return 1
    print(f"    GNU Health test server built in {time.monotonic() - t0:.0f} s: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


# -- pytest fixtures (test modules import them: ``from tests.support.gnuhealth import ...``) --

try:
    import pytest
except ImportError:  # the module also runs as ``python -m tests.support.gnuhealth build``
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def gnuhealth_cache() -> Path:
        """The GNU Health venv and templates, built once per machine (the test
        command builds them before pytest; a bare pytest run builds them here)."""
        return build(progress=lambda msg: print(f"[gnuhealth cache] {msg}", file=sys.stderr))

    @pytest.fixture
    def gnuhealth_template() -> str:
        """Override in a module (or parametrize) for "imaging" or "bare"."""
        return "full"

    @pytest.fixture
    def gnuhealth(gnuhealth_cache, gnuhealth_template, tmp_path) -> Iterator[GnuHealthServer]:
        """A real trytond with GNU Health on a free loopback port, from a copy
        of the template (database file and filestore); killed after the test."""
        server = GnuHealthServer(tmp_path / "gnuhealth", template=gnuhealth_template)
        server.start()
        try:
            yield server
        finally:
            server.kill()

    @pytest.fixture
    def gnuhealth_settings(app, gnuhealth):
        """ghimaging configured (for real: the check runs) with the server above."""
        from ghimaging.extensions import db
        from ghimaging.gnuhealth.settings import configure

        configure(url=gnuhealth.url, database=gnuhealth.database, username=gnuhealth.user,
                  password=gnuhealth.password, enabled=True)
        db.session.commit()
        return gnuhealth
