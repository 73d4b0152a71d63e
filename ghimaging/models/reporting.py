"""The reporting desk's own rows: report templates per imaging test (the
text of a normal finding a radiologist starts from) and autosaved drafts
(one per request and radiologist, never a result by itself)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from ._time import utcnow
from .catalog import ImagingTest
from .users import User


class ReportTemplate(Model):
    """A named text for one test ("Normal chest, PA"), inserted at the cursor
    of the report on the desk. Several per test; administrators keep them."""

    __tablename__ = "report_templates"
    __table_args__ = (UniqueConstraint("test_id", "name", name="uq_report_templates_test_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("imaging_tests.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    test: Mapped[ImagingTest] = relationship()


class ReportDraft(Model):
    """What a radiologist has typed on the desk and not saved: kept per
    request and user so a closed tab or a lost connection loses nothing,
    and never shown to anyone else as theirs."""

    __tablename__ = "report_drafts"
    __table_args__ = (
        UniqueConstraint("request_id", "user_id", name="uq_report_drafts_request_user"),
        Index("ix_report_drafts_user", "user_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("imaging_requests.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text, default="")
    saved_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: The saved result's ``updated_at`` the text was typed over (None: no
    #: result yet). A draft older than the saved report is never put back
    #: into the editor over it (:mod:`ghimaging.imaging.drafts`).
    based_on: Mapped[datetime | None] = mapped_column(default=None)

    user: Mapped[User] = relationship(lazy="joined")
