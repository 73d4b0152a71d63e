"""Page helpers shared by the blueprints: pagination, filters, headers."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from flask import Flask, Response, current_app, request
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user
from flask_sqlalchemy.pagination import Pagination
from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute

from .extensions import db
from .models import RequestState
from .querytools import page_number


def paginate(stmt: Select[Any]) -> Pagination:
    per_page = current_app.config["ITEMS_PER_PAGE"]
    page = page_number(request.args.get("page", 1))
    return db.paginate(stmt, page=page, per_page=per_page, error_out=False)


class IdPage:
    """The attributes of Flask-SQLAlchemy's Pagination that the pager uses."""

    def __init__(self, items: list[Any], page: int, per_page: int, total: int) -> None:
        self.items, self.page, self.per_page, self.total = items, page, per_page, total
        self.pages = max(1, -(-total // per_page)) if total else 0
        self.has_prev = page > 1
        self.has_next = page < self.pages
        self.prev_num = page - 1 if self.has_prev else None
        self.next_num = page + 1 if self.has_next else None


def paginate_by_id(stmt: Select[Any], id_column: InstrumentedAttribute[int], page: int | None = None,
                   per_page: int | None = None) -> IdPage:
    """Page through the ids first, then load only that page's rows.

    OFFSET on the full, joined SELECT makes the database build and discard
    every earlier row; on the ids alone it stays inside an index, so page
    2,000 of 100,000 costs about what page 1 does.
    """
    from sqlalchemy import func, select

    per_page = per_page or current_app.config["ITEMS_PER_PAGE"]
    page = page or page_number(request.args.get("page", 1))
    ids_stmt = stmt.with_only_columns(id_column).options()
    total = db.session.scalar(select(func.count()).select_from(ids_stmt.order_by(None).subquery())) or 0
    ids = list(db.session.scalars(ids_stmt.limit(per_page).offset((page - 1) * per_page)))
    if not ids:
        return IdPage([], page, per_page, total)
    rows = {getattr(r, id_column.key): r for r in db.session.scalars(
        stmt.order_by(None).where(id_column.in_(ids)))}
    return IdPage([rows[i] for i in ids if i in rows], page, per_page, total)


def local_time(value: datetime | date | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored instant (naive UTC) in the clinic's time zone and date
    format; a date (no time of day) in the date format alone.

    ``fmt`` is a strftime pattern in which ``%Y-%m-%d`` stands for "the
    clinic's date format": ``localtime('%Y-%m-%d')`` is the date alone,
    ``localtime('%H:%M:%S')`` the time with seconds. The clinic's settings
    are read once per request (``clock.clinic_locale``).
    """
    from . import clock

    if value is None:
        return ""
    loc = clock.clinic_locale()
    if isinstance(value, datetime):
        shown = value.replace(tzinfo=UTC).astimezone(loc.zone)
        return shown.strftime(fmt.replace("%Y-%m-%d", loc.date_pattern))
    return value.strftime(loc.date_pattern)


#: The former name, kept for templates: since issue 13 every stored time is
#: UTC (``scheduled_at`` too), so "wall time" is the clinic's local time.
wall_time = local_time


def day(value: date | datetime | None) -> str:
    """A calendar date (a birth date, a result's date) in the clinic's date
    format; a datetime is taken as a stored instant and converted first."""
    if value is None:
        return ""
    return local_time(value, "%Y-%m-%d")


def dicom_date(value: str | None) -> str:
    """DICOM DA (YYYYMMDD) in the clinic's date format; anything else (a
    range, a partial date) as it is."""
    if value and len(value) == 8 and value.isdigit():
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:])).strftime(_date_pattern())
        except ValueError:  # 20261331: not a date, shown as stored
            return value
    return value or ""


def dicom_time(value: str | None) -> str:
    """DICOM TM (HHMMSS.FFFFFF, parts may be missing) as HH:MM (:SS when
    not zero); anything else as it is. A DICOM time is the modality's wall
    clock and is not converted."""
    text = (value or "").strip()
    digits = text.split(".")[0]
    if not digits.isdigit() or len(digits) not in (2, 4, 6):
        return text
    hh, mm, ss = digits[:2], digits[2:4] or "00", digits[4:6] or "00"
    return f"{hh}:{mm}" + (f":{ss}" if ss != "00" else "")


def _date_pattern() -> str:
    from . import clock

    return clock.clinic_locale().date_pattern


def _pn_group(group: str, *, alphabetic: bool) -> str:
    """One PN component group (``Family^Given^Middle^Prefix^Suffix``) as
    staff read it. The alphabetic group puts the family name first and
    marks it with a comma ("Hong, Gildong"), so a family name is never taken
    for a given one; ideographic and phonetic groups keep their own order,
    family then given, with a space between ("洪 吉洞")."""
    parts = [" ".join(p.split()) for p in group.split("^")][:5]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts
    names = " ".join(p for p in (prefix, given, middle) if p)
    if not alphabetic:
        text = " ".join(p for p in (prefix, family, given, middle) if p)
    elif family and names:
        text = f"{family}, {names}"
    else:
        text = family or names
    if suffix:  # "Smith, Jane, Jr." but "Smith Jr.": a lone suffix never reads as a given name
        text = f"{text}{', ' if names and alphabetic else ' '}{suffix}" if text else suffix
    return text


def dicom_name(value: str | None) -> str:
    """A DICOM person name (PN) shown whole, for pages, prints and the API.

    All three component groups are kept: alphabetic, ideographic and
    phonetic (``Hong^Gildong=洪^吉洞=홍^길동`` gives
    ``Hong, Gildong (洪 吉洞 · 홍 길동)``); dropping the last two hides the
    name the patient and the modality actually use. The first group that
    is not empty leads; the others follow in brackets. No ``^`` or ``=`` is
    shown, empty components and trailing separators vanish, and a name
    with no component at all (``^^^``) gives "" so pages can say "no name".
    Letters are shown as stored: changing case would change the name.
    """
    if not value:
        return ""
    # Several names (VM > 1, rare for a patient) are each shown whole.
    return "; ".join(n for n in (_one_name(v) for v in str(value).split("\\")) if n)


def _one_name(value: str) -> str:
    groups = [_pn_group(g, alphabetic=(i == 0)) for i, g in enumerate(value.split("="))]
    shown: list[str] = []
    for g in groups:
        if g and g not in shown:
            shown.append(g)
    if not shown:
        return ""
    return shown[0] + (f" ({' · '.join(shown[1:])})" if len(shown) > 1 else "")


def local_path(target: str | None, default: str) -> str:
    """``target`` when it is a path on this site, else ``default``: a
    ``next``/``back`` taken from a form or link must not send anyone to
    another site (absolute, scheme-relative ``//host`` or ``/\\host``, which
    browsers read as ``//host``, or with control characters)."""
    from urllib.parse import urlsplit

    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return default
    parts = urlsplit(target)
    return default if parts.scheme or parts.netloc else target


def _clinic_today() -> date:
    from . import clock

    return clock.today()


def init_app(app: Flask) -> None:
    from .imaging.images import human_size

    app.jinja_env.filters["filesize"] = human_size
    app.jinja_env.filters["dicomdate"] = dicom_date
    app.jinja_env.filters["dicomname"] = dicom_name
    app.jinja_env.filters["dicomtime"] = dicom_time
    app.jinja_env.filters["localtime"] = local_time
    app.jinja_env.filters["walltime"] = wall_time
    app.jinja_env.filters["day"] = day
    app.jinja_env.globals["RequestState"] = RequestState
    app.jinja_env.globals["today"] = _clinic_today

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"current_user": current_user,
                "can": lambda action: current_user.is_authenticated and current_user.can(action)}

    @app.before_request
    def _refuse_nul() -> None:
        """PostgreSQL cannot store NUL in text and nobody types one: refuse
        it up front with a clear 400 rather than failing deep in a query."""
        from itertools import chain

        from flask import abort

        values = list(chain.from_iterable(request.args.listvalues()))
        # The upload route sets its own size limit before the body is read.
        if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data") \
                and request.endpoint != "uploads.upload":
            values += list(chain.from_iterable(request.form.listvalues()))
            values += [f.filename or "" for f in request.files.values()]
        if any("\x00" in v for v in values):
            abort(400, _("Text must not contain NUL characters."))

    @app.after_request
    def _security_headers(resp: Response) -> Response:
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
