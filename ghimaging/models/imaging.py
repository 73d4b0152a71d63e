from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from ._time import utcnow
from .catalog import ImagingTest
from .patients import Patient
from .users import User


class RequestState(str, enum.Enum):
    DRAFT = "draft"
    REQUESTED = "requested"
    DONE = "done"
    CANCELLED = "cancelled"

    @property
    def label(self) -> str:
        """The state as shown, in the reader's language."""
        return str({
            "draft": _l("Draft"),
            "requested": _l("Requested"),
            "done": _l("Done"),
            "cancelled": _l("Cancelled"),
        }[self.value])

    @property
    def word(self) -> str:
        """The state inside a sentence ("request GH1 is cancelled"), in the
        reader's language: never the stored English value."""
        return str({
            "draft": _l("draft"),
            "requested": _l("requested"),
            "done": _l("done"),
            "cancelled": _l("cancelled"),
        }[self.value])


class ReportStyle(str, enum.Enum):
    WITH_IMAGES = "with_images"
    WITHOUT_IMAGES = "without_images"
    WITHOUT_CAPTIONS = "without_captions"

    @property
    def lazy_label(self) -> Any:
        """The style as shown, translated when rendered: for choices made
        once at import (a form class), which ``label`` would fix in the
        language of that moment."""
        return {
            "with_images": _l("With images and captions"),
            "without_images": _l("Without images"),
            "without_captions": _l("Images without captions"),
        }[self.value]

    @property
    def label(self) -> str:
        """The style as shown, in the reader's language."""
        return str(self.lazy_label)


class Counter(Model):
    """Named sequences (accession and order numbers) that behave the same on
    SQLite and PostgreSQL: an UPDATE takes the row lock, then we read."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(default=0)


class ImagingRequest(Model):
    """One imaging test ordered for one patient (GNU Health's
    ``gnuhealth.imaging.test.request``). Tests ordered together share an
    order number."""

    __tablename__ = "imaging_requests"
    __table_args__ = (
        # The list page: a state tab, urgent first, newest first.
        Index("ix_imaging_requests_list", "state", "urgent", "id"),
        Index("ix_imaging_requests_all", "urgent", "id"),
        # The start page's queues (imaging/queues.py): a day's exams by
        # scheduled time; those waiting for the modality (today, yesterday,
        # no time) and those with images in (to report); a physician's own.
        Index("ix_imaging_requests_scheduled", "scheduled_at", "id"),
        Index("ix_imaging_requests_queue", "state", "images_available", "scheduled_at"),
        Index("ix_imaging_requests_physician", "requesting_physician_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_number: Mapped[str] = mapped_column(String(32), index=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("imaging_tests.id"), index=True)
    requesting_physician_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    urgent: Mapped[bool] = mapped_column(default=False)
    clinical_context: Mapped[str] = mapped_column(Text, default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    # Clinic wall-clock time; the worklist computes its UTC offset.
    scheduled_at: Mapped[datetime | None]
    state: Mapped[str] = mapped_column(String(16), default=RequestState.DRAFT.value)
    accession_number: Mapped[str] = mapped_column(String(16), unique=True)
    study_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    cancel_reason: Mapped[str] = mapped_column(Text, default="")
    # Set when a study is linked (kept in the row so lists need no join).
    images_available: Mapped[bool] = mapped_column(default=False)
    # The worklist file: the character set it was last written in, and why
    # it is missing when it could not be written (empty once it is).
    worklist_charset: Mapped[str] = mapped_column(String(64), default="")
    worklist_problem: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    patient: Mapped[Patient] = relationship(lazy="joined", innerjoin=True)
    test: Mapped[ImagingTest] = relationship(lazy="joined", innerjoin=True)
    requesting_physician: Mapped[User | None] = relationship(
        foreign_keys=[requesting_physician_id], lazy="joined"
    )
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    events: Mapped[list[RequestEvent]] = relationship(
        back_populates="request", order_by="RequestEvent.id", cascade="all, delete-orphan"
    )
    result: Mapped[Result | None] = relationship(back_populates="request", uselist=False)

    @property
    def state_enum(self) -> RequestState:
        return RequestState(self.state)

    @property
    def has_images(self) -> bool:
        return self.images_available


class RequestEvent(Model):
    """Audit trail of a request: every state change and edit, who and when."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(
        ForeignKey("imaging_requests.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    # An edit's changes, [{"field", "old", "new"}] in the order the page
    # lists them (workflow.CHANGED_FIELDS): kept as data, not sentences, so
    # the history is shown in the reader's language (imaging/_history.html).
    changes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)

    request: Mapped[ImagingRequest] = relationship(back_populates="events")
    user: Mapped[User | None] = relationship(lazy="joined")

    def changed(self) -> list[dict[str, Any]]:
        """``changes`` ready for the page: a scheduled time as the stored
        instant (a datetime, for the ``localtime`` filter), the rest as kept."""
        out = []
        for change in self.changes or []:
            change = dict(change)
            if change.get("field") == "scheduled_at":
                for key in ("old", "new"):
                    change[key] = datetime.fromisoformat(change[key]) if change.get(key) else None
            out.append(change)
        return out


class Result(Model):
    """The radiologist's report for one request (GNU Health's
    ``gnuhealth.imaging.test.result``)."""

    __tablename__ = "results"
    # Preliminary results (NULL) and those finalised since a moment (queues).
    __table_args__ = (Index("ix_results_finalised", "finalised_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("imaging_requests.id"), unique=True)
    radiologist_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    result_date: Mapped[date]
    report: Mapped[str] = mapped_column(Text, default="")
    report_style: Mapped[str] = mapped_column(String(20), default=ReportStyle.WITH_IMAGES.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    finalised_at: Mapped[datetime | None]
    finalised_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    request: Mapped[ImagingRequest] = relationship(back_populates="result", lazy="joined")
    radiologist: Mapped[User | None] = relationship(foreign_keys=[radiologist_id], lazy="joined")
    finalised_by: Mapped[User | None] = relationship(foreign_keys=[finalised_by_id])
    images: Mapped[list[ResultImage]] = relationship(
        back_populates="result", order_by="ResultImage.position, ResultImage.id",
        cascade="all, delete-orphan",
    )
    addenda: Mapped[list[ResultAddendum]] = relationship(
        back_populates="result", order_by="ResultAddendum.id", cascade="all, delete-orphan"
    )

    @property
    def is_final(self) -> bool:
        return self.finalised_at is not None

    @property
    def style(self) -> ReportStyle:
        return ReportStyle(self.report_style)


class ResultImage(Model):
    """A key image of a result; the file lives under the instance folder."""

    __tablename__ = "result_images"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    original_name: Mapped[str] = mapped_column(String(255), default="")
    content_type: Mapped[str] = mapped_column(String(32))
    caption: Mapped[str] = mapped_column(String(500), default="")
    width: Mapped[int] = mapped_column(default=0)
    height: Mapped[int] = mapped_column(default=0)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    result: Mapped[Result] = relationship(back_populates="images")


class ResultAddendum(Model):
    __tablename__ = "result_addenda"

    id: Mapped[int] = mapped_column(primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    result: Mapped[Result] = relationship(back_populates="addenda")
    author: Mapped[User | None] = relationship(lazy="joined")
