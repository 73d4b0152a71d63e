"""The local patient registry, shared by the pages, the API and the GNU
Health import. Nothing here commits: the caller does, once."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import Select, and_, exists, or_, select
from sqlalchemy.exc import IntegrityError

from .. import clock
from ..exceptions import Conflict, Invalid
from ..extensions import db
from ..models import ImagingRequest, OrthancPatient, OrthancStudy, Patient, Role, Sex, StudyLink
from ..models.patients import PuidChange, alert_lines, fold
from ..querytools import contains

if TYPE_CHECKING:
    from ..models import User

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


class ProbableDuplicate(Conflict):
    """A new patient looks like one already registered (same birth date, a
    similar name): saved only once the person confirms it is someone else.
    ``candidates`` are the patients it looks like."""

    code = "probable_duplicate"

    def __init__(self, candidates: list[Patient], fingerprint: str = "") -> None:
        super().__init__(_("A patient with the same birth date and a similar name is already registered. "
                           "Use that patient, or confirm that this is a different person."))
        self.candidates = candidates
        #: What the warning was about (:func:`identity_fingerprint`): a
        #: confirmation counts for this name and birth date only.
        self.fingerprint = fingerprint


def identity_fingerprint(family_name: str, given_name: str, birth_date: date | str | None) -> str:
    """What a "this is a different person" confirmation was given for: the
    folded name and the birth date, keyed with the app's secret so a form
    carries it opaquely. Not a secret (the person could tick the box
    anyway): it only stops a confirmation given for one name and birth
    date from counting for another typed since, which may look like a
    different registered patient."""
    import hashlib
    import hmac

    from flask import current_app

    born = birth_date.isoformat() if isinstance(birth_date, date) else str(birth_date or "").strip()
    text = "|".join((" ".join(_words(family_name or "")), " ".join(_words(given_name or "")), born))
    key = str(current_app.config["SECRET_KEY"]).encode()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()[:32]


def former_owner(puid: str, patient: Patient | None = None) -> PuidChange | None:
    """The latest record of ``puid`` as another patient's PUID before an
    administrator changed it (or None). Images made then carry it, and
    ``orthanc.identity.same_patient`` gives them to that patient: a second
    patient with it would take them over (the desk, the mirror's automatic
    link, the sync's rules)."""
    stmt = select(PuidChange).where(or_(PuidChange.old_puid == puid, PuidChange.new_puid == puid))
    if patient is not None and patient.id is not None:
        stmt = stmt.where(PuidChange.patient_id != patient.id)
    return db.session.scalars(stmt.order_by(PuidChange.changed_at.desc(), PuidChange.id.desc()).limit(1)).first()


def images_carry(puid: str) -> bool:
    """Whether studies or patients mirrored from Orthanc carry ``puid`` as
    their PatientID (typed at a modality for a walk-in, or a former PUID)."""
    study = exists().where(OrthancStudy.patient_id == puid)
    mirrored = exists().where(OrthancPatient.patient_id == puid)
    return bool(db.session.scalar(select(or_(study, mirrored))))


def validate(data: dict[str, Any], patient: Patient | None = None, *, allocate: bool = False) -> dict[str, Any]:
    """Clean ``data`` (puid, family_name, given_name, birth_date, sex, phone,
    notes, alerts) or raise :class:`PatientError` with a message per field.
    ``alerts`` left out keeps the patient's (a GNU Health import has none to give).
    With ``allocate`` (a new patient of a clinic that allocates PUIDs) an
    empty PUID is allowed, to be given on save."""
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    duplicate = False
    puid = str(data.get("puid") or "").strip()
    if not puid and allocate:
        pass
    elif not puid:
        errors["puid"] = _("PUID is required.")
    elif len(puid) > 64 or set(puid) & _BAD_CHARS:
        errors["puid"] = _("PUID is at most 64 characters, without backslash or control characters.")
    else:
        other = db.session.scalar(select(Patient).where(Patient.puid == puid))
        duplicate = other is not None and other is not patient
        if duplicate:
            errors["puid"] = _("Another patient already has PUID %(puid)s.", puid=puid)
        elif patient is None or puid != patient.puid:
            former = former_owner(puid, patient)
            if former is not None:
                from ..ui import day

                duplicate = True
                errors["puid"] = _("PUID %(puid)s belonged to %(name)s (now %(now)s) until %(day)s; images may "
                                   "carry it: choose another.", puid=puid, name=former.patient.full_name,
                                   now=former.patient.puid, day=day(former.changed_at))
    out["puid"] = puid
    for field, required in (("family_name", True), ("given_name", False)):
        value = str(data.get(field) or "").strip()
        if required and not value:
            errors[field] = _("Family name is required.")
        elif len(value) > 100 or set(value) & (_BAD_CHARS | {"^", "="}):
            errors[field] = (_("Family name is at most 100 characters, without ^ = \\ or control characters.")
                             if field == "family_name" else
                             _("Given name(s) is at most 100 characters, without ^ = \\ or control characters."))
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
            errors["birth_date"] = _("Birth date must be a date as YYYY-MM-DD.")
    if out.get("birth_date") and out["birth_date"] > clock.today():  # the clinic's today, not the server's
        errors["birth_date"] = _("Birth date is in the future.")
    if out.get("birth_date") and out["birth_date"].year < 1880:
        errors["birth_date"] = _("Birth date is before 1880.")
    sex = str(data.get("sex") or "").strip().upper()
    if sex not in {s.value for s in Sex}:
        errors["sex"] = _("Sex must be F, M or O.")
    out["sex"] = sex
    for field, limit in (("phone", 50), ("notes", 5000)):
        value = str(data.get(field) or "").strip()
        if len(value) > limit:
            errors[field] = _("At most %(n)d characters.", n=limit)
        out[field] = value
    if "alerts" in data or patient is None:
        alerts = "\n".join(alert_lines(str(data.get("alerts") or "")))
        if len(alerts) > ALERTS_MAX:
            errors["alerts"] = _("At most %(n)d characters.", n=ALERTS_MAX)
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
            raise DuplicatePuid({"puid": _("Another patient already has PUID %(puid)s.", puid=puid)}) from None
        raise


def create_patient(data: dict[str, Any], *, confirm_new: bool = True) -> Patient:
    """Register a patient. When the clinic allocates PUIDs (a setting) and
    ``data`` has none, the next one of its pattern is given here, for the
    form and the API alike; a PUID given (an import, a client with its own
    register) is kept, checked as always. The desk (form, API) passes ``confirm_new=False``
    until the person has said a look-alike is someone else
    (:class:`ProbableDuplicate`); an import from a register (GNU Health)
    carries that register's identity and is not asked."""
    from ..settings.service import puid_pattern

    pattern = puid_pattern()
    clean = validate(data, allocate=pattern is not None)
    if not confirm_new:
        candidates = probable_duplicates(clean["family_name"], clean["given_name"], clean["birth_date"])
        if candidates:
            raise ProbableDuplicate(candidates, identity_fingerprint(clean["family_name"], clean["given_name"],
                                                                     clean["birth_date"]))
    if not clean["puid"] and pattern is not None:
        from ..imaging.numbers import new_puid

        clean["puid"] = new_puid(pattern)
    patient = Patient(**clean)
    patient.refresh_search_key()
    db.session.add(patient)
    _flush(clean["puid"])
    return patient


def has_studies(patient: Patient) -> bool:
    """Whether images exist under the patient's PUID: a study linked to one
    of their requests, a request with images, or a study in Orthanc whose
    PatientID is the PUID. Such a PUID is written in DICOM files already."""
    of_patient = ImagingRequest.patient_id == patient.id
    linked = exists().where(StudyLink.request_id == ImagingRequest.id, of_patient)
    imaged = exists().where(of_patient, ImagingRequest.images_available.is_(True))
    received = exists().where(OrthancStudy.patient_id == patient.puid)
    return bool(db.session.scalar(select(or_(linked, imaged, received))))


def may_change_linked_puid(user: User | None) -> bool:
    """Only an administrator changes a PUID that images already carry."""
    return user is not None and user.active and Role.ADMIN in user.roles


def update_patient(patient: Patient, data: dict[str, Any], *, user: User | None = None,
                   reason: str = "") -> Patient:
    """Save the patient's fields. A new PUID for a patient with studies
    (:func:`has_studies`), or one that studies in Orthanc already carry
    (:func:`images_carry`: the patient takes them over), needs an
    administrator (``user``) and a reason; it is recorded
    (:class:`PuidChange`), the waiting worklist items are rewritten with
    it, and the studies under the old PUID stay this patient's
    (``orthanc.identity.same_patient``)."""
    old_puid = patient.puid
    clean = validate(data, patient)
    change: PuidChange | None = None
    new_puid = clean["puid"]
    locked = new_puid != old_puid and has_studies(patient)
    takes_over = new_puid != old_puid and not locked and images_carry(new_puid)
    if locked or takes_over:
        reason = " ".join((reason or "").split())
        if not may_change_linked_puid(user):
            raise PatientError({"puid": _("Images already carry this PUID: only an administrator can change it.")
                                if locked else
                                _("Images already carry PUID %(puid)s: only an administrator can give it to this "
                                  "patient.", puid=new_puid)})
        if not reason:
            raise PatientError({"puid_reason": _("Say why the PUID changes: images already carry the old one.")
                                if locked else
                                _("Say why the PUID changes: images already carry the new one.")})
        if len(reason) > 1000:
            raise PatientError({"puid_reason": _("At most %(n)d characters.", n=1000)})
        assert user is not None
        change = PuidChange(old_puid=old_puid, new_puid=clean["puid"], reason=reason, changed_by_id=user.id,
                            changed_by_name=user.display_name)
    for k, v in clean.items():
        setattr(patient, k, v)
    patient.refresh_search_key()
    if change is not None:
        patient.puid_changes.append(change)
    _flush(clean["puid"])
    from ..imaging.workflow import announce_waiting

    announce_waiting(ImagingRequest.patient_id == patient.id)  # the modality must see the new name and PUID
    return patient


# -- probable duplicates -----------------------------------------------------

def _words(text: str) -> list[str]:
    """A name as folded words: case, accents, hyphens and the German
    ae/oe/ue spellings forgiven (Müller, MULLER, Mueller are one word)."""
    folded = fold(text)
    for a, b in (("ae", "a"), ("oe", "o"), ("ue", "u")):
        folded = folded.replace(a, b)
    for sep in "-'.,":
        folded = folded.replace(sep, " ")
    return folded.split()


def _same_word(a: str, b: str) -> bool:
    """Equal, or one typo apart in a long word (Mamani/Mamany)."""
    if a == b:
        return True
    if min(len(a), len(b)) < 5 or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long_ = sorted((a, b), key=len)
    return any(long_[:i] + long_[i + 1:] == short for i in range(len(long_)))


def _overlap(xs: list[str], ys: list[str]) -> bool:
    return any(_same_word(x, y) for x in xs for y in ys)


def similar_names(family_a: str, given_a: str, family_b: str, given_b: str) -> bool:
    """Whether two people's names are probably one person's: a family name
    in common and the same first given name (or one of them without given
    names), or family and given names swapped."""
    fa, ga, fb, gb = _words(family_a), _words(given_a), _words(family_b), _words(given_b)
    if _overlap(fa, fb) and (not ga or not gb or _same_word(ga[0], gb[0])):
        return True
    return bool(ga and gb) and _overlap(fa, gb) and _overlap(ga, fb)


def probable_duplicates(family_name: str, given_name: str, birth_date: date | None,
                        exclude_id: int | None = None) -> list[Patient]:
    """Registered patients born the same day with a similar name. Without
    a birth date there is nothing to compare: a different birth date never
    warns."""
    if birth_date is None:
        return []
    stmt = select(Patient).where(Patient.birth_date == birth_date)
    if exclude_id is not None:
        stmt = stmt.where(Patient.id != exclude_id)
    return [p for p in db.session.scalars(stmt.order_by(Patient.family_name, Patient.given_name, Patient.id))
            if similar_names(family_name, given_name, p.family_name, p.given_name)]


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


def puid_history(patient: Patient) -> list[PuidChange]:
    return list(patient.puid_changes)


def to_json(p: Patient) -> dict[str, Any]:
    return {
        "id": p.id, "puid": p.puid, "family_name": p.family_name, "given_name": p.given_name,
        "birth_date": p.birth_date.isoformat() if p.birth_date else None, "sex": p.sex,
        "phone": p.phone, "notes": p.notes, "alerts": p.alerts or "",
    }
