from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from ._time import utcnow
from .imaging import ImagingRequest
from .orthanc import OrthancStudy
from .users import User


class StudyLink(Model):
    """A study in Orthanc that belongs to an imaging request. A study may
    answer several requests (two tests in one acquisition)."""

    __tablename__ = "study_links"
    __table_args__ = (UniqueConstraint("study_id", "request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("orthanc_studies.id", ondelete="CASCADE"), index=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("imaging_requests.id", ondelete="CASCADE"), index=True)
    # 'study_uid', 'accession', 'merge_id' (automatic rules) or 'manual'
    method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # Identity found different when the link was made ("The name in the
    # study differs ..."), shown on the request, the study and the Inbox
    # until someone confirms it.
    warning: Mapped[str] = mapped_column(Text, default="")
    # Linked by hand to a request of another patient, with the reason given:
    # shown in red on the request page for as long as the link exists.
    other_patient: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    confirmed_at: Mapped[datetime | None]
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    study: Mapped[OrthancStudy] = relationship(lazy="joined")
    request: Mapped[ImagingRequest] = relationship(lazy="joined")
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    confirmed_by: Mapped[User | None] = relationship(foreign_keys=[confirmed_by_id])

    @property
    def needs_review(self) -> bool:
        return bool(self.warning) and self.confirmed_at is None


class LinkEvent(Model):
    """Audit trail of links and unlinks, kept by DICOM UID so it outlives the
    mirror rows (a study deleted and sent again keeps its history). A manual
    unlink here stops the automatic rules from linking the pair again."""

    __tablename__ = "link_events"
    __table_args__ = (Index("ix_link_events_pair", "study_uid", "request_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    server_id: Mapped[int | None] = mapped_column(ForeignKey("orthanc_servers.id", ondelete="SET NULL"))
    study_uid: Mapped[str] = mapped_column(String(64))
    # With the UID, which study: one UID may come under two PatientIDs.
    patient_id: Mapped[str] = mapped_column(String(64), default="")
    request_id: Mapped[int | None] = mapped_column(ForeignKey("imaging_requests.id", ondelete="CASCADE"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # link | unlink | delete | confirm
    method: Mapped[str] = mapped_column(String(16), default="")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(Text, default="")

    user: Mapped[User | None] = relationship(lazy="joined")
