"""Who a study is of: the identity rules the matching applies.

A study is of a patient only when its PatientID is the patient's PUID
(after DICOM trimming of leading and trailing spaces; nothing else is
forgiven). Names and birth dates are compared to warn, never to decide.
"""

from __future__ import annotations

from datetime import date

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..models import OrthancStudy, Patient
from ..models.patients import fold


def dicom_id(value: str | None) -> str:
    """PatientID (LO) and AccessionNumber (SH) without the leading and
    trailing spaces DICOM does not count."""
    return (value or "").strip(" ")


def near_id_reason(patient_id: str, puid: str) -> str:
    """Why two different ids look like one patient's (case, leading zeros,
    spaces), or "" when they do not. They stay different for linking.
    Translated: it is shown inside a sentence ("… only by %(difference)s")."""
    a, b = dicom_id(patient_id), dicom_id(puid)
    if not a or not b or a == b:
        return ""
    if a.casefold() == b.casefold():
        return str(_("letter case"))
    if a.replace(" ", "").casefold() == b.replace(" ", "").casefold():
        return str(_("spaces"))

    def strip0(x: str) -> str:
        return x.replace(" ", "").casefold().lstrip("0")
    if strip0(a) and strip0(a) == strip0(b):
        return str(_("leading zeros"))
    return ""


def _translit(text: str) -> str:
    """German-style spellings (ä -> ae) as modalities often type them."""
    for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"), ("Ä", "AE"), ("Ö", "OE"), ("Ü", "UE")):
        text = text.replace(a, b)
    return text


def _folds(text: str) -> set[str]:
    return {" ".join(fold(t).replace("-", " ").split()) for t in (text, _translit(text))}


def name_matches(person_name: str, family: str, given: str) -> bool:
    """Does any PN group (alphabetic, ideographic, phonetic) of a DICOM name
    spell the register's family and given names? Case, accents and the
    German ä/ae spellings are forgiven; a missing or different given name
    is not."""
    want = {(f, g) for f in _folds(family) for g in _folds(given)}
    for group in (person_name or "").split("="):
        parts = (group.split("^") + [""] * 5)[:5]
        fam, giv, mid = parts[0], parts[1], parts[2]
        given_all = " ".join(p for p in (giv, mid) if p.strip())
        if not fam.strip() and not given_all.strip():
            continue
        if {(f, g) for f in _folds(fam) for g in _folds(given_all)} & want:
            return True
    return False


def dicom_date(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def _show_date(da: str) -> str:
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}" if len(da) == 8 and da.isdigit() else (da or str(_("birth date not given")))


def _show_name(pn: str) -> str:
    from ..ui import dicom_name

    return dicom_name(pn) or str(_("no name"))


def identity_differences(study: OrthancStudy, patient: Patient) -> list[str]:
    """What the study says about the patient that the register does not."""
    out = []
    if not name_matches(study.patient_name, patient.family_name, patient.given_name):
        out.append(_("The name in the study (%(study)s) differs from the register (%(register)s).",
                     study=_show_name(study.patient_name), register=patient.full_name))
    reg = dicom_date(patient.birth_date)
    if study.birth_date and reg and dicom_id(study.birth_date) != reg:
        out.append(_("The birth date in the study (%(study)s) differs from the register (%(register)s).",
                     study=_show_date(study.birth_date), register=_show_date(reg)))
    return out


def study_identity(study: OrthancStudy) -> str:
    if not study.birth_date:  # "born birth date not given" read badly in every language
        return str(_("PatientID \u201c%(id)s\u201d, %(name)s, birth date not given", id=dicom_id(study.patient_id),
                     name=_show_name(study.patient_name)))
    return str(_("PatientID \u201c%(id)s\u201d, %(name)s, born %(born)s", id=dicom_id(study.patient_id),
                 name=_show_name(study.patient_name), born=_show_date(study.birth_date)))


def patient_identity(patient: Patient) -> str:
    if not patient.birth_date:
        return str(_("PUID \u201c%(puid)s\u201d, %(name)s, birth date not given", puid=patient.puid,
                     name=patient.full_name))
    return str(_("PUID \u201c%(puid)s\u201d, %(name)s, born %(born)s", puid=patient.puid, name=patient.full_name,
                 born=patient.birth_date.isoformat()))


def same_patient(study: OrthancStudy, patient: Patient) -> bool:
    """The study's PatientID is the patient's PUID, or a PUID this patient
    had before an administrator changed it (:class:`PuidChange`: studies
    made then carry the old one). An old PUID counts only while it is
    nobody else's: not another patient's PUID now, nor recorded as another
    patient's earlier PUID. Nothing else makes two identities one: an
    Orthanc patient linked to a register patient by hand (one PUID typed on
    a form) only makes its studies likely matches, and linking them still
    needs a confirmation and a reason."""
    pid = dicom_id(study.patient_id)
    if pid == patient.puid:
        return True
    if not pid or not any(ch.old_puid == pid for ch in patient.puid_changes):
        return False
    return former_puid_is_only(pid, patient)


def former_puid_is_only(puid: str, patient: Patient) -> bool:
    """Whether ``puid``, once ``patient``'s, has been no one else's since."""
    from sqlalchemy import exists, or_, select

    from ..extensions import db
    from ..models.patients import PuidChange

    taken = exists().where(Patient.puid == puid, Patient.id != patient.id)
    had = exists().where(PuidChange.patient_id != patient.id,
                         or_(PuidChange.old_puid == puid, PuidChange.new_puid == puid))
    return not db.session.scalar(select(or_(taken, had)))
