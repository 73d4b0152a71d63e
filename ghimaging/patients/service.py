"""The local patient registry, shared by the pages, the API and the GNU
Health import. Nothing here commits: the caller does, once."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..exceptions import Conflict, Invalid
from ..extensions import db
from ..models import ImagingRequest, Patient, Sex
from ..models.patients import alert_lines, fold
from ..querytools import contains

#: Alerts and allergies, one per line: shown on the order form and the desk,
#: so short enough to be read at a glance.
ALERTS_MAX = 2000

# DICOM LO allows 64 characters, no backslash or control characters.
_BAD_CHARS = set("\\") | {chr(i) for i in range(32)}


class PatientError(Invalid):
    """Fields that cannot be saved; ``errors`` maps each to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()), fields=errors)

    @property
    def errors(self) -> dict[str, str]:
        return self.fields


class DuplicatePuid(PatientError, Conflict):
    """The only thing wrong is a PUID another patient has (HTTP 409)."""

    code = "conflict"


def validate(data: dict[str, Any], patient: Patient | None = None) -> dict[str, Any]:
    """Clean ``data`` (puid, family_name, given_name, birth_date, sex, phone,
    notes, alerts) or raise :class:`PatientError` with a message per field.
    ``alerts`` left out keeps the patient's (a GNU Health import has none to give)."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    duplicate = False
    puid = str(data.get("puid") or "").strip()
    if not puid:
        errors["puid"] = "PUID is required."
    elif len(puid) > 64 or set(puid) & _BAD_CHARS:
        errors["puid"] = "PUID is at most 64 characters, without backslash or control characters."
    else:
        other = db.session.scalar(select(Patient).where(Patient.puid == puid))
        duplicate = other is not None and other is not patient
        if duplicate:
            errors["puid"] = f"Another patient already has PUID {puid}."
    out["puid"] = puid
    for field, label, required in (("family_name", "Family name", True), ("given_name", "Given name(s)", False)):
        value = str(data.get(field) or "").strip()
        if required and not value:
            errors[field] = f"{label} is required."
        elif len(value) > 100 or set(value) & (_BAD_CHARS | {"^", "="}):
            errors[field] = f"{label} is at most 100 characters, without ^ = \\ or control characters."
        out[field] = value
    bd = data.get("birth_date")
    if bd in (None, ""):
        out["birth_date"] = None
    elif isinstance(bd, date):
        out["birth_date"] = bd
    else:
        try:
            out["birth_date"] = date.fromisoformat(str(bd))
        except ValueError:
            errors["birth_date"] = "Birth date must be a date as YYYY-MM-DD."
    if out.get("birth_date") and out["birth_date"] > clock.today():  # the clinic's today, not the server's
        errors["birth_date"] = "Birth date is in the future."
    if out.get("birth_date") and out["birth_date"].year < 1880:
        errors["birth_date"] = "Birth date is before 1880."
    sex = str(data.get("sex") or "").strip().upper()
    if sex not in {s.value for s in Sex}:
        errors["sex"] = "Sex must be F, M or O."
    out["sex"] = sex
    for field, limit in (("phone", 50), ("notes", 5000)):
        value = str(data.get(field) or "").strip()
        if len(value) > limit:
            errors[field] = f"At most {limit} characters."
        out[field] = value
    if "alerts" in data or patient is None:
        alerts = "\n".join(alert_lines(str(data.get("alerts") or "")))
        if len(alerts) > ALERTS_MAX:
            errors["alerts"] = f"At most {ALERTS_MAX} characters."
        out["alerts"] = alerts
    if errors:
        raise DuplicatePuid(errors) if duplicate and set(errors) == {"puid"} else PatientError(errors)
    return out


def _flush(puid: str) -> None:
    """Flush, telling a PUID taken at the same moment by another request
    (another worker or host: the lookup in :func:`validate` saw nothing,
    the unique index did) as the same 409 as one taken before."""
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        if by_puid(puid) is not None:
            raise DuplicatePuid({"puid": f"Another patient already has PUID {puid}."}) from None
        raise


def create_patient(data: dict[str, Any]) -> Patient:
    clean = validate(data)
    patient = Patient(**clean)
    patient.refresh_search_key()
    db.session.add(patient)
    _flush(clean["puid"])
    return patient


def update_patient(patient: Patient, data: dict[str, Any]) -> Patient:
    clean = validate(data, patient)
    for k, v in clean.items():
        setattr(patient, k, v)
    patient.refresh_search_key()
    _flush(clean["puid"])
    from ..imaging.workflow import announce_waiting

    announce_waiting(ImagingRequest.patient_id == patient.id)  # the modality must see the new name
    return patient


def search_query(q: str = "") -> Select[Patient]:
    """PUID exactly, or every word of ``q`` somewhere in the PUID or names,
    ignoring case and accents ("mul jur" finds "Müller, Jürgen"); a word
    that is a date (ISO, or the clinic's date format) also matches the
    birth date ("1975-04-03", "03.04.1975", "müller 1975-04-03"), so the
    desk can find a patient by what they say at the counter."""
    stmt = select(Patient)
    q = q.strip()[:200]
    if q:
        words = [w for w in q.replace(",", " ").split() if w][:10]
        clauses = []
        for word in words:
            match = contains(Patient.search_key, fold(word))
            born = parse_day(word)
            clauses.append(or_(match, Patient.birth_date == born) if born else match)
        stmt = stmt.where(or_(Patient.puid == q, and_(*clauses)))
    return stmt.order_by(Patient.family_name, Patient.given_name, Patient.id)


def parse_day(text: str) -> date | None:
    """``text`` as a calendar date, ISO (2024-03-01) or in the clinic's date
    format (01.03.2024); None when it is neither. Only those two: 01/03/2024
    is the 1st of March or the 3rd of January depending on the clinic."""
    from datetime import datetime

    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    for pattern in ("%Y-%m-%d", clock.clinic_locale().date_pattern):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    return None


def by_puid(puid: str) -> Patient | None:
    return db.session.scalar(select(Patient).where(Patient.puid == puid.strip()))


def to_json(p: Patient) -> dict[str, Any]:
    return {
        "id": p.id, "puid": p.puid, "family_name": p.family_name, "given_name": p.given_name,
        "birth_date": p.birth_date.isoformat() if p.birth_date else None, "sex": p.sex,
        "phone": p.phone, "notes": p.notes, "alerts": p.alerts or "",
    }
