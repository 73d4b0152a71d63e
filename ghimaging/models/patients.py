from __future__ import annotations

import enum
from datetime import date, datetime

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

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
        return {"F": "Female", "M": "Male", "O": "Other"}[self.value]


class Patient(Model):
    __tablename__ = "patients"
    __table_args__ = (Index("ix_patients_names", "family_name", "given_name"),)

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
