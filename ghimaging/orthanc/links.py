"""Linking Orthanc patients to local patients by hand; a manual link or
unlink survives every later sync."""

from __future__ import annotations

from ..extensions import db
from ..models import OrthancPatient, Patient, User


def link_patient(row: OrthancPatient, local: Patient, user: User | None) -> None:
    row.local_patient = local
    row.link_mode = "manual"
    db.session.commit()


def unlink_patient(row: OrthancPatient, user: User | None) -> None:
    row.local_patient = None
    row.local_patient_id = None
    row.link_mode = "unlinked"
    db.session.commit()


def reset_link(row: OrthancPatient) -> None:
    """Back to automatic linking by PUID."""
    from .sync import auto_link

    row.link_mode = ""
    auto_link(row)
    db.session.commit()
