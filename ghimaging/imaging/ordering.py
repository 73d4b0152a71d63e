"""Placing an order as a person sends it, from the order page or the API:
the patient and tests they name are found (or the field they came in is
said to be wrong), then :func:`workflow.create_order` makes the requests.
One service for both, so the two cannot differ in what they accept."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import ngettext
from sqlalchemy import func, select

from ..catalog import service as catalog
from ..extensions import db
from ..models import ImagingRequest, ImagingTest, Patient, User
from ..models.patients import fold
from ..patients import service as patients
from ..querytools import bounded_int
from ..ui import day
from . import workflow
from .errors import ValidationError


@dataclass
class Order:
    """What was asked for, found and parsed by the page or the API."""

    patient: Patient
    tests: list[ImagingTest]
    physician: User | None = None
    urgent: bool = False
    clinical_context: str = ""
    comment: str = ""
    scheduled_at: datetime | None = None  # naive UTC: the boundary converts what was typed (clock.to_utc)
    submit: bool = False
    warnings: list[str] = field(default_factory=list)


#: How many of several matching patients the form's error names.
LISTED_MAX = 5


def find_patient(text: str, field: str = "patient") -> Patient:
    """The one patient ``text`` names, as typed in the order form's patient
    box: an exact PUID (what the picker puts there) is that patient; else a
    patient whom every typed word *names* — a whole word of their name
    ("garcia ana" for "García López, Ana") or their birth date — when
    exactly one patient is so named. A word that is only part of a name or
    of a PUID does not name anyone: "Ana" is not "Anabel", and "P-1" is not
    "P-10" (an order placed for the wrong person is the worst outcome here,
    a second look at the list the cheapest). Several named, or only partly
    matched, patients are listed, never one picked; none says what was
    typed. The order form asks once more before ordering for a patient
    found this way (``forms.OrderForm.validate_patient``)."""
    typed = (text or "").strip()
    patient = patients.by_puid(typed) if typed else None
    if patient is not None:
        return patient
    if not typed:
        raise ValidationError({field: _("Choose a patient.")})
    query = patients.search_query(typed)
    found = list(db.session.scalars(query.limit(LISTED_MAX + 1)))
    named = [p for p in found if _names(typed, p)]
    if len(named) == 1 and len(found) <= LISTED_MAX:
        return named[0]
    if len(named) == 1:  # more matched than were read: count the named ones among all
        named = [p for p in db.session.scalars(query) if _names(typed, p)]
        if len(named) == 1:
            return named[0]
    if not found:
        raise ValidationError({field: _("No patient matches \u201c%(typed)s\u201d. Check the spelling, or "
                                        "register the patient first.", typed=typed)})
    count = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or len(found)
    names = "; ".join(f"{p.full_name} ({p.puid}{', ' + day(p.birth_date) if p.birth_date else ''})"
                      for p in found[:LISTED_MAX])
    if count > LISTED_MAX:
        names += "; \u2026"
    raise ValidationError({field: ngettext(
        "%(num)d patient matches \u201c%(typed)s\u201d \u2014 pick one from the list: %(names)s.",
        "%(num)d patients match \u201c%(typed)s\u201d \u2014 pick one from the list: %(names)s.",
        count, typed=typed, names=names)})


def _names(typed: str, patient: Patient) -> bool:
    """Whether every word of ``typed`` is a whole word of the patient's name
    (accents and case aside, "López-Ruiz" being two words) or their birth
    date."""
    words = set(fold(f"{patient.family_name} {patient.given_name}").replace("-", " ").replace(",", " ").split())
    for word in typed.replace(",", " ").split():
        day = patients.parse_day(word)
        if day is not None and day == patient.birth_date:
            continue
        parts = set(fold(word).replace("-", " ").split())
        if not parts or not parts <= words:  # "-" alone names nobody, not everybody
            return False
    return True


def patient_by_id(value: object, field: str = "patient_id") -> Patient:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError({field: "Must be the id of a patient (a whole number)."})
    patient = db.session.get(Patient, value) if bounded_int(value) else None
    if patient is None:
        raise ValidationError({field: f"No patient with id {value}."})
    return patient


def tests_by_code(codes: Sequence[str], field: str = "test_code") -> list[ImagingTest]:
    found = []
    for code in codes:
        test = catalog.test_by_code(code)
        if test is None:
            raise ValidationError({field: f"Unknown test {code!r}."})
        found.append(test)
    return found


def tests_by_id(ids: Iterable[int], offered: Iterable[ImagingTest]) -> list[ImagingTest]:
    wanted = set(ids)
    return [t for t in offered if t.id in wanted]


def place(order: Order, user: User | None) -> list[ImagingRequest]:
    """The requests of ``order`` (drafts, or submitted with their worklist
    files); ``order.warnings`` gets what the worklist files had to change
    (values cut to their length, a UTF-8 fallback), to be said at once."""
    created = workflow.create_order(
        order.patient, order.tests, user=user, physician=order.physician, urgent=order.urgent,
        clinical_context=order.clinical_context, comment=order.comment, scheduled_at=order.scheduled_at,
        submit=order.submit)
    order.warnings = worklist_warnings(created)
    return created


def worklist_warnings(reqs: Iterable[ImagingRequest]) -> list[str]:
    """Values cut to their VR length, a UTF-8 fallback: said at once, and
    kept on the request page."""
    from ..worklists import preview, writer

    return [f"{req.accession_number}: {warning}" for req in reqs if writer.is_live(req)
            for warning in preview(req).warnings]


def summary(created: Sequence[ImagingRequest]) -> str:
    if created[0].state == "requested":
        return str(_("Order %(order)s: %(num)d request(s) submitted.", order=created[0].order_number,
                     num=len(created)))
    return str(_("Order %(order)s: %(num)d request(s) saved as draft.", order=created[0].order_number,
                 num=len(created)))
