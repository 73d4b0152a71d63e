"""Placing an order as a person sends it, from the order page or the API:
the patient and tests they name are found (or the field they came in is
said to be wrong), then :func:`workflow.create_order` makes the requests.
One service for both, so the two cannot differ in what they accept."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ..catalog import service as catalog
from ..extensions import db
from ..models import ImagingRequest, ImagingTest, Patient, User
from ..patients import service as patients
from ..querytools import bounded_int
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


def patient_by_puid(puid: str, field: str = "patient") -> Patient:
    patient = patients.by_puid(puid or "")
    if patient is None:
        raise ValidationError({field: "No patient with this PUID. Pick one from the list, or register the "
                                      "patient first."})
    return patient


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
    verb = "submitted" if created[0].state == "requested" else "saved as draft"
    return f"Order {created[0].order_number}: {len(created)} request(s) {verb}."
