"""Report templates per imaging test: the text of a normal finding that a
radiologist inserts on the reporting desk and then edits. Kept with the
catalogue because they belong to a test, as its AE title does. Nothing
here commits: the caller does, once."""

from __future__ import annotations

from flask_babel import format_number  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import ImagingTest, ReportTemplate
from .service import CatalogError, DuplicateCode

NAME_MAX = 100
TEXT_MAX = 20_000


def of_test(test: ImagingTest | int) -> list[ReportTemplate]:
    """The templates of a test, by name (the order the picker offers them)."""
    test_id = test if isinstance(test, int) else test.id
    return list(db.session.scalars(
        select(ReportTemplate).where(ReportTemplate.test_id == test_id).order_by(ReportTemplate.name)))


def counts() -> dict[int, int]:
    """How many templates each test has (the catalogue's table)."""
    from sqlalchemy import func

    rows = db.session.execute(select(ReportTemplate.test_id, func.count()).group_by(ReportTemplate.test_id))
    return {test_id: n for test_id, n in rows}


def save(template: ReportTemplate | None, test: ImagingTest, *, name: str, text: str) -> ReportTemplate:
    """Add (``template`` None) or change a template; the name is unique per test."""
    name = (name or "").strip()
    text = (text or "").replace("\r\n", "\n").strip()
    if not name or len(name) > NAME_MAX:
        raise CatalogError(_("The name is required (at most %(max)d characters).", max=NAME_MAX), "name")
    if any(ord(c) < 32 for c in name):
        raise CatalogError(_("The name must not contain line breaks or control characters."), "name")
    if not text:
        raise CatalogError(_("The text is empty: write the normal findings the template inserts."), "text")
    if len(text) > TEXT_MAX:
        raise CatalogError(_("At most %(max)s characters.", max=format_number(TEXT_MAX)), "text")
    other = db.session.scalar(select(ReportTemplate).where(ReportTemplate.test_id == test.id,
                                                            ReportTemplate.name == name))
    if other is not None and other is not template:
        raise DuplicateCode(_("%(test)s already has a template named '%(name)s'.", test=test.name, name=name), "name")
    if template is None:
        template = ReportTemplate(test=test, test_id=test.id)
        db.session.add(template)
    template.name, template.text = name, text
    try:
        db.session.flush()
    except IntegrityError:  # the same name saved at the same moment
        db.session.rollback()
        raise DuplicateCode(_("%(test)s already has a template named '%(name)s'.", test=test.name, name=name), "name") from None
    return template


def delete(template: ReportTemplate) -> None:
    db.session.delete(template)
    db.session.flush()
