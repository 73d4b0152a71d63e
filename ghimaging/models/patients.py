from __future__ import annotations

import enum
from datetime import date, datetime

from flask_babel import lazy_gettext as _l  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from ._time import utcnow


def fold(text: str) -> str:
    """Case- and accent-insensitive form used for searching. ASCII text
    (most names a sync folds) is only case-folded: NFKD leaves it as it is
    and it has no combining marks."""
    text = text or ""
    if text.isascii():
        return text.casefold()
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class Sex(str, enum.Enum):
    F = "F"
    M = "M"
    O = "O"  # noqa: E741 - DICOM's own code

    @property
    def label(self) -> str:
        """The sex as shown, in the reader's language (lazy: also used in
        choices built at import time)."""
        return _SEX_LABELS[self.value]


_SEX_LABELS: dict[str, str] = {"F": _l("Female"), "M": _l("Male"), "O": _l("Other")}


class Patient(Model):
    __tablename__ = "patients"
    __table_args__ = (Index("ix_patients_names", "family_name", "given_name"),
                      # the probable-duplicate check looks patients up by birth date
                      Index("ix_patients_birth_date", "birth_date"))

    id: Mapped[int] = mapped_column(primary_key=True)
    # The DICOM PatientID (LO, 64 characters) and GNU Health's PUID.
    puid: Mapped[str] = mapped_column(String(64), unique=True)
    family_name: Mapped[str] = mapped_column(String(100))
    given_name: Mapped[str] = mapped_column(String(100), default="")
    birth_date: Mapped[date | None]
    sex: Mapped[str] = mapped_column(String(1), default="O")
    phone: Mapped[str] = mapped_column(String(50), default="")
    notes: Mapped[str] = mapped_column(Text, default="")
    # Allergies and warnings the reporting desk shows above everything else
    # (contrast allergy, pacemaker, pregnancy); empty when there are none.
    alerts: Mapped[str] = mapped_column(Text, default="")

    @property
    def alert_lines(self) -> list[str]:
        """The alerts as shown (patient page, order form, desk, picker)."""
        return alert_lines(self.alerts)
    # PUID and names case-folded by Python: SQLite's lower() and PostgreSQL's
    # under the C locale fold only ASCII, and "Élodie" must be found as "élodie".
    search_key: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    #: Earlier PUIDs, oldest first; loaded once per session when a study's
    #: PatientID is not the current PUID (see ``orthanc.identity.same_patient``).
    puid_changes: Mapped[list[PuidChange]] = relationship(
        back_populates="patient", order_by="PuidChange.id", cascade="all, delete-orphan", passive_deletes=True)

    def refresh_search_key(self) -> None:
        self.search_key = fold(f"{self.puid} {self.family_name}, {self.given_name}")

    @property
    def full_name(self) -> str:
        return f"{self.family_name}, {self.given_name}" if self.given_name else self.family_name

    @property
    def sex_label(self) -> str:
        return Sex(self.sex).label

    def age_on(self, day: date) -> int | None:
        if not self.birth_date:
            return None
        b = self.birth_date
        return day.year - b.year - ((day.month, day.day) < (b.month, b.day))


def alert_lines(text: str | None) -> list[str]:
    """Alerts one per line, blank lines dropped: how they are stored and shown."""
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


class PuidChange(Model):
    """A PUID changed after studies were linked or images received (only an
    administrator, always with a reason). Kept so the audit says who and
    why, and so the studies made under the old PUID stay this patient's:
    their PatientID is the old one (``orthanc.identity.same_patient``)."""

    __tablename__ = "patient_puid_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    patient_id: Mapped[int] = mapped_column(ForeignKey("patients.id", ondelete="CASCADE"), index=True)
    old_puid: Mapped[str] = mapped_column(String(64), index=True)
    new_puid: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    changed_by_name: Mapped[str] = mapped_column(String(200), default="")  # kept when the account is deleted
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)

    patient: Mapped[Patient] = relationship(back_populates="puid_changes")
