from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model


class ModalityType(Model):
    """A DICOM Modality (0008,0060) such as CR or US."""

    __tablename__ = "modality_types"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    name: Mapped[str] = mapped_column(String(100))

    tests: Mapped[list[ImagingTest]] = relationship(back_populates="modality")


class ImagingTest(Model):
    __tablename__ = "imaging_tests"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    modality_id: Mapped[int] = mapped_column(ForeignKey("modality_types.id"), index=True)
    # ScheduledStationAETitle (AE, 16 characters) of the modality that performs it.
    ae_title: Mapped[str] = mapped_column(String(16), default="")
    # Name of a worklist template; empty means the default template.
    worklist_template: Mapped[str] = mapped_column(String(100), default="")
    active: Mapped[bool] = mapped_column(default=True)

    modality: Mapped[ModalityType] = relationship(back_populates="tests", lazy="joined")
