"""What each layer of the served app costs in memory, imported one after the
other in one fresh process (RSS from /proc/self/smaps_rollup).

Why this exists: issue 11's idle target (60 MB PSS for the served app,
gunicorn master plus worker) is below what the stack the design card fixes
costs before any ghimaging code runs. This prints the steps so the claim can
be re-checked on any machine:

    python bench/bench_import_memory.py

Each step's figure is the growth of resident memory when that layer is
imported after the ones above it (shared libraries included: ``ssl`` loads
libssl and libcrypto once, so whichever layer imports it first pays).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no Rss line")


def _gunicorn() -> None:
    import gunicorn.app.base
    import gunicorn.workers.gthread  # noqa: F401


def _flask() -> None:
    import flask  # noqa: F401


def _sqlalchemy() -> None:
    import flask_sqlalchemy  # noqa: F401
    import sqlalchemy.orm  # noqa: F401


def _forms_login() -> None:
    import flask_login  # noqa: F401
    import flask_wtf.csrf  # noqa: F401
    import wtforms  # noqa: F401


def _requests() -> None:
    import requests  # noqa: F401


def _cryptography() -> None:
    from cryptography.fernet import Fernet

    Fernet(Fernet.generate_key()).encrypt(b"x")


def _models() -> None:
    import ghimaging.models  # noqa: F401


APP: list[object] = []


def _create_app() -> None:
    from ghimaging import create_app

    APP.append(create_app())


def _first_queries() -> None:
    import sqlalchemy as sa

    from ghimaging.extensions import db
    from ghimaging.models import ImagingRequest, User

    with APP[0].app_context():  # type: ignore[attr-defined]
        db.create_all()
        db.session.execute(sa.select(User)).all()
        db.session.execute(sa.select(ImagingRequest).limit(10)).all()


STEPS: list[tuple[str, Callable[[], None], bool]] = [
    # name, step, part of the stack the design card fixes
    ("gunicorn (gthread worker)", _gunicorn, True),
    ("flask", _flask, True),
    ("sqlalchemy.orm + flask_sqlalchemy", _sqlalchemy, True),
    ("flask_login, wtforms, flask_wtf", _forms_login, True),
    ("requests", _requests, True),
    ("cryptography (Fernet)", _cryptography, False),
    ("ghimaging.models", _models, False),
    ("create_app() (blueprints, templates env)", _create_app, False),
    ("first queries (mapper set-up, SQL compiled)", _first_queries, False),
]


def main() -> int:
    os.environ.setdefault("GHIMAGING_INSTANCE_PATH", tempfile.mkdtemp(prefix="bench-import-memory-"))
    start = rss_mb()
    print(f"Import memory, {time.strftime('%Y-%m-%d %H:%M')}, Python {sys.version.split()[0]}, one process")
    print(f"{'step':46s} {'+RSS MB':>8s} {'total':>7s} {'s':>6s}")
    print(f"{'python itself':46s} {start:8.1f} {start:7.1f}")
    prev, fixed = start, start
    for name, step, is_fixed in STEPS:
        t = time.perf_counter()
        step()
        took = time.perf_counter() - t
        now = rss_mb()
        print(f"{name:46s} {now - prev:8.1f} {now:7.1f} {took:6.3f}")
        if is_fixed:
            fixed = now
        prev = now
    print(f"\nthe fixed stack (python + the first five rows): {fixed:.1f} MB RSS in the worker alone;"
          f" ghimaging's own layers: {prev - fixed:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
