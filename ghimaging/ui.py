"""Page helpers shared by the blueprints: pagination, filters, headers."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import Flask, current_app, request
from flask_login import current_user
from sqlalchemy import Select

from .extensions import db
from .querytools import page_number
from .models import RequestState, Role


def paginate(stmt: Select):
    per_page = current_app.config["ITEMS_PER_PAGE"]
    page = page_number(request.args.get("page", 1))
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Stored instants are naive UTC; show them in the server's local zone."""
    if value is None:
        return ""
    return value.replace(tzinfo=UTC).astimezone().strftime(fmt)


def wall_time(value: datetime | date | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime(fmt)
    return value.strftime("%Y-%m-%d")


def dicom_date(value: str | None) -> str:
    """DICOM DA (YYYYMMDD) as YYYY-MM-DD; anything else as it is."""
    if value and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or ""


def dicom_name(value: str | None) -> str:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` as ``Family, Given Middle``."""
    if not value:
        return ""
    parts = value.split("=")[0].split("^")
    family = parts[0].strip()
    rest = " ".join(p.strip() for p in parts[1:3] if p.strip())
    return f"{family}, {rest}" if rest else family


def init_app(app: Flask) -> None:
    from .imaging.images import human_size

    app.jinja_env.filters["filesize"] = human_size
    app.jinja_env.filters["dicomdate"] = dicom_date
    app.jinja_env.filters["dicomname"] = dicom_name
    app.jinja_env.filters["localtime"] = local_time
    app.jinja_env.filters["walltime"] = wall_time
    app.jinja_env.globals["Role"] = Role
    app.jinja_env.globals["RequestState"] = RequestState
    app.jinja_env.globals["today"] = date.today

    @app.context_processor
    def _globals():
        return {"current_user": current_user}

    @app.after_request
    def _security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'self'; form-action 'self'",
        )
        if request.endpoint and request.endpoint != "static" and "Cache-Control" not in resp.headers:
            resp.headers["Cache-Control"] = "no-store"
        return resp
