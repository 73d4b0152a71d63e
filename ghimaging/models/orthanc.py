from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from ._time import utcnow
from .patients import Patient, fold


def name_key(person_name: str) -> str:
    """A DICOM PN with every group (alphabetic, ideographic, phonetic),
    folded for case- and accent-insensitive search: ``Hong^Gildong=洪^吉洞``
    -> ``hong gildong 洪 吉洞``."""
    text = (person_name or "").replace("^", " ").replace("=", " ")
    return " ".join(fold(text).split())[:400]


class OrthancServer(Model):
    """An Orthanc that ghimaging mirrors. The sync's progress (``last_change``)
    and its lease live here so that every worker and host sees them."""

    __tablename__ = "orthanc_servers"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(500))
    browser_url: Mapped[str] = mapped_column(String(500), default="")
    username: Mapped[str] = mapped_column(String(200), default="")
    password_enc: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    # What the last check found.
    validated: Mapped[bool] = mapped_column(default=False)
    checked_at: Mapped[datetime | None]
    version: Mapped[str] = mapped_column(String(32), default="")
    dicom_aet: Mapped[str] = mapped_column(String(64), default="")
    dicom_port: Mapped[int] = mapped_column(default=0, server_default="0")
    orthanc_name: Mapped[str] = mapped_column(String(200), default="")
    plugins: Mapped[str] = mapped_column(Text, default="")  # comma-separated ids from GET /plugins
    # Orthanc's DefaultEncoding ("Latin1", "Utf8", ...) from GET /tools/default-encoding:
    # Orthanc transcodes every worklist answer to it, whatever the .wl file holds.
    default_encoding: Mapped[str] = mapped_column(String(32), default="")

    # Sync progress.
    last_change: Mapped[int] = mapped_column(default=0)  # last /changes index processed and committed
    orthanc_last: Mapped[int] = mapped_column(default=0)  # Orthanc's own last index when we last looked
    needs_full_sync: Mapped[bool] = mapped_column(default=True)
    last_sync_at: Mapped[datetime | None]
    # When someone (Orthanc's push, a person) last asked for a sync sooner
    # than the periodic one. Kept in the database, not in a process, so that
    # whichever process or host runs the background loop sees it.
    sync_wanted_at: Mapped[datetime | None]
    last_full_sync_at: Mapped[datetime | None]
    last_reconcile_at: Mapped[datetime | None]
    sync_generation: Mapped[int] = mapped_column(default=0)
    # The last /changes index that may have added to a study without our
    # fetching that study after it (a NewInstance no fetch of this run saw):
    # a Stable* change needs no request only for a study fetched after it
    # (see orthanc/incremental.py).
    content_change: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_error_at: Mapped[datetime | None]
    failures: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]

    # Lease: only its holder syncs this server, across threads, processes and hosts.
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]

    @property
    def plugin_set(self) -> set[str]:
        return {p for p in self.plugins.split(",") if p}

    @property
    def lag(self) -> int:
        return max(0, self.orthanc_last - self.last_change)


class OrthancPatient(Model):
    __tablename__ = "orthanc_patients"
    __table_args__ = (UniqueConstraint("server_id", "patient_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("orthanc_servers.id", ondelete="CASCADE"), index=True)
    patient_id: Mapped[str] = mapped_column(String(64))  # DICOM PatientID
    orthanc_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    name_key: Mapped[str] = mapped_column(String(400), default="")
    birth_date: Mapped[str] = mapped_column(String(16), default="")
    sex: Mapped[str] = mapped_column(String(16), default="")
    local_patient_id: Mapped[int | None] = mapped_column(ForeignKey("patients.id", ondelete="SET NULL"), index=True)
    # 'auto' (PatientID equals a PUID), 'manual' (staff linked) or
    # 'unlinked' (staff unlinked: never auto-link again).
    link_mode: Mapped[str] = mapped_column(String(16), default="")
    seen_generation: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    server: Mapped[OrthancServer] = relationship()
    local_patient: Mapped[Patient | None] = relationship(lazy="joined")


class OrthancStudy(Model):
    """One study as Orthanc keys it: Orthanc's study id hashes PatientID and
    StudyInstanceUID, so one UID sent under two PatientIDs is two studies
    (two rows), never one row overwritten by the other's patient."""

    __tablename__ = "orthanc_studies"
    __table_args__ = (
        UniqueConstraint("server_id", "orthanc_id", name="uq_orthanc_studies_server_orthanc_id"),
        Index("ix_orthanc_studies_uid", "study_uid", "patient_id"),
        Index("ix_orthanc_studies_date", "study_date", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    server_id: Mapped[int] = mapped_column(ForeignKey("orthanc_servers.id", ondelete="CASCADE"), index=True)
    study_uid: Mapped[str] = mapped_column(String(64))
    orthanc_id: Mapped[str] = mapped_column(String(64))
    patient_row_id: Mapped[int | None] = mapped_column(ForeignKey("orthanc_patients.id", ondelete="SET NULL"), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    patient_name: Mapped[str] = mapped_column(String(200), default="")
    # Every PN group folded (see models.patients.fold): the search finds
    # "Äneas" as "äneas" or "aneas", which SQL's lower() cannot do.
    name_key: Mapped[str] = mapped_column(String(400), default="")
    accession_number: Mapped[str] = mapped_column(String(64), default="", index=True)
    study_date: Mapped[str] = mapped_column(String(8), default="")  # DICOM DA, YYYYMMDD
    study_time: Mapped[str] = mapped_column(String(16), default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    modalities: Mapped[str] = mapped_column(String(100), default="")  # backslash-separated, as DICOM
    institution: Mapped[str] = mapped_column(String(200), default="")
    referring_physician: Mapped[str] = mapped_column(String(200), default="")
    series_count: Mapped[int] = mapped_column(default=0)
    instance_count: Mapped[int] = mapped_column(default=0)
    stable: Mapped[bool] = mapped_column(default=False)
    orthanc_last_update: Mapped[str] = mapped_column(String(32), default="")
    seen_generation: Mapped[int] = mapped_column(default=0)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # The /changes index Orthanc had at least reached when this row was last
    # read from it: the row is current up to there.
    synced_change: Mapped[int] = mapped_column(default=0, server_default="0")

    server: Mapped[OrthancServer] = relationship(lazy="joined")
    patient_row: Mapped[OrthancPatient | None] = relationship(lazy="joined")
    series: Mapped[list[OrthancSeries]] = relationship(
        back_populates="study", cascade="all, delete-orphan", passive_deletes=True,
        order_by="OrthancSeries.number, OrthancSeries.id",
    )

    birth_date: Mapped[str] = mapped_column(String(16), default="")  # DICOM DA, the patient's
    # Another study (any server) has this StudyInstanceUID under another
    # PatientID: never linked automatically, flagged wherever it is shown.
    uid_shared: Mapped[bool] = mapped_column(default=False)

    @property
    def modality_list(self) -> list[str]:
        return [m for m in self.modalities.split("\\") if m]


class OrthancSeries(Model):
    __tablename__ = "orthanc_series"
    __table_args__ = (UniqueConstraint("study_id", "series_uid"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("orthanc_studies.id", ondelete="CASCADE"), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    orthanc_id: Mapped[str] = mapped_column(String(64), index=True)
    number: Mapped[int | None]
    description: Mapped[str] = mapped_column(String(200), default="")
    modality: Mapped[str] = mapped_column(String(16), default="")
    instance_count: Mapped[int] = mapped_column(default=0)
    # First instance's Orthanc id, for a preview without another request.
    first_instance: Mapped[str] = mapped_column(String(64), default="")
    seen_generation: Mapped[int] = mapped_column(default=0)

    study: Mapped[OrthancStudy] = relationship(back_populates="series")
