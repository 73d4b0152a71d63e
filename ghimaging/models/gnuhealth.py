"""The optional sync with GNU Health: its settings, which local record is
which record there, and the outbox of changes still to send."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from ._time import utcnow
from .imaging import ImagingRequest

REQUIRED_MODULE = "health_imaging"
OPTIONAL_MODULES = ("health_orthanc", "health_imaging_worklist")


class GnuHealthConfig(Model):
    """The one GNU Health server (row id 1). The password is encrypted with
    the instance's credentials key, like Orthanc's."""

    __tablename__ = "gnuhealth_config"

    id: Mapped[int] = mapped_column(primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=False)
    url: Mapped[str] = mapped_column(String(500), default="")
    database: Mapped[str] = mapped_column(String(100), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    password_enc: Mapped[str] = mapped_column(Text, default="")
    # gnuhealth.healthprofessional id used as the doctor of requests whose
    # ordering user has no professional there.
    default_professional_id: Mapped[int | None]

    # What the last check found.
    checked_at: Mapped[datetime | None]
    check_ok: Mapped[bool] = mapped_column(default=False)
    check_error: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[str] = mapped_column(String(32), default="")
    modules: Mapped[str] = mapped_column(String(300), default="")  # comma-separated active modules
    professional_id: Mapped[int | None]  # the API user's own professional
    professional_name: Mapped[str] = mapped_column(String(200), default="")

    # Pulls.
    last_pull_at: Mapped[datetime | None]
    last_pull_error: Mapped[str] = mapped_column(Text, default="")
    next_pull_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @property
    def module_list(self) -> list[str]:
        return [m for m in self.modules.split(",") if m]

    def has_module(self, name: str) -> bool:
        return name in self.module_list

    @property
    def configured(self) -> bool:
        return bool(self.url and self.database and self.username)


class LinkKind(str, enum.Enum):
    PATIENT = "patient"
    TEST = "test"
    REQUEST = "request"
    RESULT = "result"


class GnuHealthLink(Model):
    """Local record <-> GNU Health record. ``local_id`` is empty for a GNU
    Health request that could not be imported (``problem`` says why), so
    that it is reported instead of dropped."""

    __tablename__ = "gnuhealth_links"
    __table_args__ = (
        UniqueConstraint("kind", "local_id", name="uq_gnuhealth_links_kind_local"),
        UniqueConstraint("kind", "remote_id", name="uq_gnuhealth_links_kind_remote"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    local_id: Mapped[int | None]
    remote_id: Mapped[int]
    # pulled (came from GNU Health), pushed (sent there), found (already
    # there, matched by PUID or code), manual (mapped by hand).
    origin: Mapped[str] = mapped_column(String(8), default="pushed")
    remote_state: Mapped[str] = mapped_column(String(16), default="")
    remote_label: Mapped[str] = mapped_column(String(200), default="")  # GNU Health's number or code
    problem: Mapped[str] = mapped_column(Text, default="")
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class OutboxState(str, enum.Enum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class OutboxKind(str, enum.Enum):
    REQUEST = "request"  # create / update the request there, move it to requested
    RESULT = "result"    # the result, its comment, attachments and study link


class OutboxItem(Model):
    """One change to send to GNU Health. Items of one request go in order;
    ``idempotency_key`` names what is looked up there before anything is
    created, so that a retry after a lost answer creates nothing twice."""

    __tablename__ = "gnuhealth_outbox"
    __table_args__ = (Index("ix_gnuhealth_outbox_due", "state", "next_try_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[int] = mapped_column(ForeignKey("imaging_requests.id", ondelete="CASCADE"), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), index=True)
    reason: Mapped[str] = mapped_column(String(32), default="")  # the change: create, submit, finalise, ...
    state: Mapped[str] = mapped_column(String(8), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    error_code: Mapped[str] = mapped_column(String(32), default="")
    next_try_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    request: Mapped[ImagingRequest] = relationship(lazy="joined")
