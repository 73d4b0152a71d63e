from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from ._time import utcnow


class WorklistTemplate(Model):
    """A Genshi text template producing dump2dcm text (GNU Health's format),
    with the character set it declares and the Python codec that matches."""

    __tablename__ = "worklist_templates"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    body: Mapped[str] = mapped_column(Text)
    charset: Mapped[str] = mapped_column(String(64), default="ISO_IR 192")  # SpecificCharacterSet
    encoding: Mapped[str] = mapped_column(String(32), default="utf-8")  # Python codec
    comment: Mapped[str] = mapped_column(Text, default="")
    is_default: Mapped[bool] = mapped_column(default=False)
    # The administrator's choice when a value does not fit ``charset``:
    # refuse the submit (False), or write that item as ISO_IR 192 (UTF-8).
    utf8_fallback: Mapped[bool] = mapped_column(default=False)
    # 'shipped' templates are refreshed from worklist_templates/ by `init`
    # until someone edits them; then they become 'custom'.
    origin: Mapped[str] = mapped_column(String(16), default="custom")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WorklistFile(Model):
    """A .wl file ghimaging wrote; files not listed here are never touched."""

    __tablename__ = "worklist_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    filename: Mapped[str] = mapped_column(String(100), unique=True)
    request_id: Mapped[int | None] = mapped_column(
        ForeignKey("imaging_requests.id", ondelete="SET NULL"), index=True)
    digest: Mapped[str] = mapped_column(String(64))
    written_at: Mapped[datetime] = mapped_column(default=utcnow)

