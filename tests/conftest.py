"""Fixtures shared by the whole suite.

The schema is built once per session by the real Alembic migrations, on
SQLite by default or on PostgreSQL when ``GHIMAGING_TEST_DATABASE_URL`` is
set (the test command starts a throwaway cluster and runs the suite twice).
Each test gets its own instance folder and an emptied database.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from flask.testing import FlaskClient
from jinja2 import BytecodeCache
from sqlalchemy import text

from ghimaging import create_app
from ghimaging.extensions import db
from tests.support import factories
from tests.support.factories import PASSWORD
from tests.support.web import CsrfClient

DB_URL = os.environ.get("GHIMAGING_TEST_DATABASE_URL")
#: Fixtures kept beside the code they drive (the GNU Health server).
pytest_plugins = ("tests.support.gnuhealth",)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def pytest_report_header(config):
    return f"ghimaging database: {'PostgreSQL ' + DB_URL.split('@')[-1] if DB_URL else 'SQLite'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory) -> str:
    """Create the schema once with the migrations, as ``ghimaging init`` does."""
    from flask_migrate import upgrade

    from ghimaging import MIGRATIONS_DIR

    url = DB_URL or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
    app = create_app({"INSTANCE_PATH": str(tmp_path_factory.mktemp("schema")), "DATABASE_URL": url,
                      "TESTING": True})
    with app.app_context():
        if DB_URL:
            with db.engine.begin() as conn:  # start from nothing on a reused database
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()
    return url


def _empty_tables() -> None:
    if db.engine.dialect.name == "postgresql":
        names = ", ".join(t.name for t in db.metadata.sorted_tables)
        db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    else:
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(table.delete())
    db.session.commit()


class IsolatedClient(FlaskClient):
    """Runs each request in a fresh context (its own ``g``, current_user and
    database session), as a real server does. The ``app`` fixture keeps an
    app context open for the whole test and Flask would reuse it for the test
    client's requests, so the user loaded by one client's request would stay
    signed in for the next client's."""

    def open(self, *args, **kwargs):
        return contextvars.Context().run(super().open, *args, **kwargs)


class SharedTemplateCache(BytecodeCache):
    """Compiled templates shared by the per-test apps (checked by checksum)."""

    store: ClassVar[dict[str, bytes]] = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


# A full-cost scrypt hash takes ~0.13 s and the suite hashes hundreds of
# times; tests that check the real hash use the ``full_cost_hashes`` fixture.
FAST_HASH = "pbkdf2:sha256:1000"


@pytest.fixture
def full_cost_hashes(app):
    """Use the application's default password hash in this test."""
    app.config.pop("PASSWORD_HASH_METHOD", None)


@pytest.fixture
def app_config() -> dict[str, Any]:
    """Override in a test module to change settings for its app."""
    return {}


@pytest.fixture
def app(database_url, tmp_path, app_config):
    config = {"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": database_url,
              "TESTING": True, "LOGIN_MAX_FAILURES": 5, "PASSWORD_HASH_METHOD": FAST_HASH, **app_config}
    app = create_app(config)
    app.test_client_class = IsolatedClient
    app.jinja_env.bytecode_cache = SharedTemplateCache()
    with app.app_context():
        _empty_tables()
        yield app
        db.session.remove()
        _empty_tables()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def make_user(app) -> Callable:
    """``make_user(username, *roles)``: a user made by the real service."""
    return factories.make_user


@pytest.fixture
def login(app) -> Callable:
    """``login(username)`` gives a :class:`CsrfClient` signed in as that user."""

    def do(username: str, password: str = PASSWORD) -> CsrfClient:
        c = CsrfClient(app.test_client())
        token = c.token("/login")
        r = c.client.post("/login", data={"username": username, "password": password, "csrf_token": token})
        assert r.status_code == 302, r.get_data(as_text=True)[:500]
        return c

    return do


@pytest.fixture
def catalog(app):
    """The seeded modality types and two tests."""
    return factories.seed_catalog()


@pytest.fixture
def create_patient(app) -> Callable:
    """``create_patient(**fields)``: a patient with a new PUID each call."""
    return factories.PatientFactory()


@pytest.fixture
def create_request(app, catalog, create_patient) -> Callable:
    """``create_request(patient=None, test=None, submit=False, user=None, **kw)``."""

    def make(patient=None, test=None, *, submit: bool = False, user=None, **kw):
        return factories.create_request(patient or create_patient(), test or catalog["chest"],
                                        submit=submit, user=user, **kw)

    return make


@pytest.fixture
def api(app, make_user) -> Callable:
    """``api(*roles)`` gives a JSON client with a bearer token for a new user."""
    from ghimaging.auth.service import create_token

    counter = iter(range(1, 1000))

    class Api:
        def __init__(self, token: str, user):
            self.client = app.test_client()
            self.headers = {"Authorization": f"Bearer {token}"}
            self.user = user

        def get(self, path, **kw):
            return self.client.get(path, headers=self.headers, **kw)

        def post(self, path, json=None, **kw):
            return self.client.post(path, json=json, headers=self.headers, **kw)

    def make(*roles: str) -> Api:
        user = make_user(f"api{next(counter)}", *roles)
        token = create_token(user, "test")
        db.session.commit()
        return Api(token, user)

    return make


@pytest.fixture
def fresh_url(database_url, tmp_path):
    """An empty database of the same kind as the suite's own (a file for
    SQLite, a new database in the throwaway cluster for PostgreSQL)."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    name = f"ghimaging_mig_{uuid.uuid4().hex[:12]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- Orthanc ----------------------------------------------------------------

@pytest.fixture
def orthanc(tmp_path):
    """A real Orthanc (Debian's package) on free loopback ports, auth on."""
    from tests.support.orthanc import OrthancServer

    server = OrthancServer(tmp_path / "orthanc")
    server.start()
    yield server
    server.kill()  # a graceful stop takes seconds; the data is thrown away anyway


@pytest.fixture
def orthanc_row(app, orthanc):
    """The Orthanc above, added to ghimaging through the service (checked for real)."""
    from ghimaging.orthanc import servers

    row = servers.add_server(label="Main", url=orthanc.url, username=orthanc.username, password=orthanc.password)
    db.session.commit()
    return row


@pytest.fixture
def upload(orthanc):
    """``upload(datasets)``: store pydicom datasets in the Orthanc above."""
    from tests.support import dicomgen

    def do(datasets):
        return [orthanc.upload(dicomgen.to_bytes(ds)) for ds in datasets]

    return do


# -- browser ------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium; never a browser downloaded by Playwright."""
    import playwright.sync_api as playwright_api

    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: the test command (bash deploy/test.sh) installs it")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def live(app):
    """The test's app served by werkzeug in a thread on a free port; each
    request pushes its own app context there."""
    import threading

    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, name="ghimaging-test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()
    thread.join()
    srv.server_close()


@pytest.fixture
def shots(database_url) -> Path:
    """Where screenshots go (a subfolder on the PostgreSQL run)."""
    folder = ARTIFACTS / "screenshots"
    if database_url.startswith("postgresql"):
        folder = folder / "postgresql"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
