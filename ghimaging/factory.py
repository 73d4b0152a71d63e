"""The application factory (``ghimaging.create_app`` calls it): settings,
extensions, blueprints, CLI. Kept apart from the package's ``__init__`` so
that importing ``ghimaging`` (the console script does, for ``--help`` and
for the gunicorn master of ``ghimaging serve``) imports neither Flask nor
SQLAlchemy. The blueprints' modules import only what registering their
routes needs; pydicom, Genshi, Pillow, cryptography and requests come with
the first request or command that uses them (tests/test_lazy_imports.py)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from werkzeug.routing import Map

from . import MIGRATIONS_DIR, PACKAGE_DIR, resource_dir
from . import config as cfg
from .extensions import csrf, db, login_manager, migrate


def _instance_path() -> str:
    env = os.environ.get("GHIMAGING_INSTANCE_PATH")
    if env:
        if not os.path.isabs(env):
            raise cfg.ConfigError("GHIMAGING_INSTANCE_PATH must be an absolute path")
        return env
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").exists() and (checkout / "instance").is_dir():
        return str(checkout / "instance")
    return str(Path.cwd() / "instance")


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    instance_path = (test_config or {}).get("INSTANCE_PATH") or _instance_path()
    app = _Flask(
        "ghimaging",  # the package: the app's name and logger stay 'ghimaging'
        instance_path=instance_path,
        instance_relative_config=True,
        template_folder=str(resource_dir("templates")),
        static_folder=str(resource_dir("static")),
    )
    app.config.from_mapping(cfg.default_settings())
    app.config.from_pyfile("config.py", silent=True)
    # Only ghimaging's own settings come from the environment: a Flask setting
    # of another type (a list of fallback keys, say) must not arrive as a string.
    app.config.update(cfg.from_environment(os.environ, cfg.default_settings()))
    if test_config:
        app.config.update({k: v for k, v in test_config.items() if k != "INSTANCE_PATH"})

    cfg.secure_cookies(app.config)

    ipath = Path(app.instance_path)
    cfg.private_dir(ipath)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = cfg.ensure_secret_key(ipath)
    if not app.config.get("DATABASE_URL"):
        app.config["DATABASE_URL"] = f"sqlite:///{ipath / 'ghimaging.sqlite'}"
    cfg.secure_instance(ipath, app.config["DATABASE_URL"])
    app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    engine_options: dict[str, Any] = {"pool_pre_ping": True}
    if app.config["DATABASE_URL"].startswith("sqlite"):
        # sqlite3's timeout is SQLite's busy timeout: a second writer waits.
        engine_options["connect_args"] = {"timeout": app.config["SQLITE_BUSY_TIMEOUT_MS"] / 1000}
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options)
    if not app.config.get("WORKLIST_DIR"):
        app.config["WORKLIST_DIR"] = str(ipath / "worklists")
    app.config["RESULT_IMAGE_DIR"] = str(ipath / "result_images")
    cfg.validate(app.config)

    _bounded_int_urls(app)
    if app.config["PROXY_COUNT"]:
        # Behind a proxy, the client address (login throttling) and the
        # scheme come from X-Forwarded-* of the trusted hops only.
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = app.config["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]  # Flask's documented way
    _upload_limits(app)  # before CSRF, which reads the form
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)

    from . import (
        api,
        auth,
        catalog,
        cli,
        errors,
        gnuhealth,
        health,
        imaging,
        orthanc,
        patients,
        settings,
        ui,
        uploads,
        worklists,
    )

    ui.init_app(app)
    from . import i18n

    i18n.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    catalog.init_app(app)
    patients.init_app(app)
    imaging.init_app(app)
    settings.init_app(app)
    orthanc.init_app(app)
    worklists.init_app(app)
    uploads.init_app(app)
    api.init_app(app)
    gnuhealth.init_app(app)
    app.register_blueprint(health.bp)
    cli.init_app(app)
    return app


class _Request(Request):
    """Uploaded files go straight to temporary files. Werkzeug keeps parts
    under 500 KB in memory, and a folder of 500 such DICOM files would then
    sit whole in the worker's memory."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        import tempfile

        return tempfile.TemporaryFile("wb+")


class _Flask(Flask):
    request_class = _Request


def _upload_limits(app: Flask) -> None:
    """The upload route takes far larger bodies and more parts than a form.
    Set before anything reads the body (CSRF protection reads the form)."""
    from flask import request

    @app.before_request
    def _raise_limits_for_uploads() -> None:
        if request.endpoint == "uploads.upload":
            request.max_content_length = app.config["UPLOAD_MAX_BYTES"]
            request.max_form_parts = app.config["UPLOAD_MAX_FILES"] + 100


def _bounded_int_urls(app: Flask) -> None:
    """``<int:id>`` in URLs stops at 2**31-1: a 30-digit id is a 404, not an
    integer overflow in the database."""
    from werkzeug.routing import IntegerConverter

    class BoundedInt(IntegerConverter):
        def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("max", 2**31 - 1)
            super().__init__(url_map, *args, **kwargs)

    app.url_map.converters["int"] = BoundedInt


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: object, connection_record: object) -> None:  # pragma: no cover - trivial
    """Foreign keys on, and WAL so that readers do not block the writer."""
    import sqlite3

    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
