"""Extension objects, created here and bound in ``create_app`` so that models
and blueprints can import them without importing the application."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Flask
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import MetaData
from sqlalchemy.orm import DeclarativeBase

# Named constraints so Alembic can alter them on SQLite (batch mode) and
# PostgreSQL alike.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)

# The models' base class. At run time Flask-SQLAlchemy's ``db.Model`` (a
# subclass of ``Base`` bound to ``db``); mypy cannot follow that dynamic
# class, so it checks the models against ``Base``, the typed declarative
# base ``db.Model`` is made from.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model
login_manager = LoginManager()
csrf = CSRFProtect()


class Migrate:
    """Flask-Migrate, bound when first used. Alembic (with Mako and Pygments)
    takes several MB and a tenth of a second to import, and only ``ghimaging
    init``, ``restore`` and ``flask db`` migrate: ``init_app`` puts a
    stand-in at ``app.extensions["migrate"]`` that binds the real
    ``flask_migrate.Migrate`` to the app the first time anything reads it
    (the migrations' env.py, ``flask_migrate.upgrade``), which replaces it."""

    def init_app(self, app: Flask, db: SQLAlchemy, **options: Any) -> None:
        app.extensions["migrate"] = _UnboundMigrate(app, db, options)


class _UnboundMigrate:
    def __init__(self, app: Flask, db: SQLAlchemy, options: dict[str, Any]) -> None:
        self._app, self._db, self._options = app, db, options

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        from flask_migrate import Migrate as Bound

        Bound(self._app, self._db, **self._options)  # sets app.extensions["migrate"] to the real one
        return getattr(self._app.extensions["migrate"], name)


migrate = Migrate()
