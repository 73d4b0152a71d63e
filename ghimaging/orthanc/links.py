"""Linking Orthanc patients to local patients by hand; a manual link or
unlink survives every later sync. The caller commits."""

from __future__ import annotations

from ..extensions import db
from ..models import OrthancPatient, Patient, User


def link_patient(row: OrthancPatient, local: Patient, user: User | None) -> None:
    row.local_patient = local
    row.link_mode = "manual"
    db.session.flush()


def unlink_patient(row: OrthancPatient, user: User | None) -> None:
    row.local_patient = None
    row.local_patient_id = None
    row.link_mode = "unlinked"
    db.session.flush()

