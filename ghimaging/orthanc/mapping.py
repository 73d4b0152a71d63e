"""Orthanc's JSON to the values of our rows: the one mapping every sync path
uses (the incremental path's ORM rows and the full sync's set-based pages).

A value longer than its column is cut to the column's length, read from the
model, so a column limit has one home: the model. (The full sync maps
thousands of studies a second: these functions read the few tags they need
and build nothing else.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import String

from ..models import OrthancPatient, OrthancSeries, OrthancStudy
from ..models.orthanc import name_key


def _limits(model: type[Any]) -> dict[str, int]:
    return {c.name: int(c.type.length) for c in model.__table__.columns
            if isinstance(c.type, String) and c.type.length}


PATIENT = _limits(OrthancPatient)
STUDY = _limits(OrthancStudy)
SERIES = _limits(OrthancSeries)


def _block(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    block = data.get(key)
    return block if isinstance(block, dict) else {}


def _text(block: Mapping[str, Any], tag: str) -> str:
    value = block.get(tag)
    return "" if value is None else str(value)


def patient_id(data: Mapping[str, Any]) -> str:
    """The PatientID of a study's answer, as the patient row keys it."""
    return _text(_block(data, "PatientMainDicomTags"), "PatientID")[:PATIENT["patient_id"]]


def patient_values(data: Mapping[str, Any], keys: dict[str, str] | None = None) -> dict[str, Any]:
    """The Orthanc patient row of a study's answer (its PatientMainDicomTags).
    ``keys``: search keys of names already folded (a page of studies passes
    one dict: folding a name is the dearest step here)."""
    p = _block(data, "PatientMainDicomTags")
    name = _text(p, "PatientName")[:PATIENT["name"]]
    key = keys.get(name) if keys is not None else None
    if key is None:
        key = name_key(name)[:PATIENT["name_key"]]
        if keys is not None:
            keys[name] = key
    return {
        "patient_id": _text(p, "PatientID")[:PATIENT["patient_id"]],
        "orthanc_id": str(data.get("ParentPatient", ""))[:PATIENT["orthanc_id"]],
        "name": name, "name_key": key,
        "birth_date": _text(p, "PatientBirthDate")[:PATIENT["birth_date"]],
        "sex": _text(p, "PatientSex")[:PATIENT["sex"]],
    }


def study_uid(data: Mapping[str, Any]) -> str:
    """The StudyInstanceUID, or Orthanc's id when the study has none."""
    return _text(_block(data, "MainDicomTags"), "StudyInstanceUID")[:STUDY["study_uid"]] or str(data["ID"])


def study_values(data: Mapping[str, Any], patient: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The study row of ``GET /studies/{id}`` (or one item of ``/studies?expand``),
    with the patient's identity (``patient``: its :func:`patient_values`, if
    already made) copied in. AccessionNumber is SH: leading and trailing
    spaces are not part of it."""
    t = _block(data, "MainDicomTags")
    p = patient or patient_values(data)
    return {
        "study_uid": study_uid(data), "orthanc_id": str(data["ID"])[:STUDY["orthanc_id"]],
        "patient_id": p["patient_id"][:STUDY["patient_id"]], "patient_name": p["name"][:STUDY["patient_name"]],
        "name_key": p["name_key"][:STUDY["name_key"]], "birth_date": p["birth_date"][:STUDY["birth_date"]],
        "accession_number": _text(t, "AccessionNumber").strip()[:STUDY["accession_number"]],
        "study_date": _text(t, "StudyDate")[:STUDY["study_date"]],
        "study_time": _text(t, "StudyTime")[:STUDY["study_time"]],
        "description": _text(t, "StudyDescription")[:STUDY["description"]],
        "institution": _text(t, "InstitutionName")[:STUDY["institution"]],
        "referring_physician": _text(t, "ReferringPhysicianName")[:STUDY["referring_physician"]],
        "stable": bool(data.get("IsStable", False)),
        "orthanc_last_update": str(data.get("LastUpdate", ""))[:STUDY["orthanc_last_update"]],
    }


def series_values(s: Mapping[str, Any]) -> dict[str, Any]:
    """The series row of one expanded series."""
    t = _block(s, "MainDicomTags")
    try:
        number: int | None = int(_text(t, "SeriesNumber").strip() or "x")
    except ValueError:
        number = None
    instances = s.get("Instances") or []
    return {
        "series_uid": (_text(t, "SeriesInstanceUID") or str(s["ID"]))[:SERIES["series_uid"]],
        "orthanc_id": str(s["ID"])[:SERIES["orthanc_id"]], "number": number,
        "description": _text(t, "SeriesDescription")[:SERIES["description"]],
        "modality": _text(t, "Modality")[:SERIES["modality"]], "instance_count": len(instances),
        "first_instance": str(instances[0])[:SERIES["first_instance"]] if instances else "",
    }


def summary_values(series: Iterable[tuple[str, int]]) -> dict[str, Any]:
    """A study's counts and modality list from its series' (modality,
    instance count), in series order."""
    count = instances = 0
    mods: list[str] = []
    for modality, n in series:
        count += 1
        instances += n
        if modality and modality not in mods:
            mods.append(modality)
    return {"series_count": count, "instance_count": instances, "modalities": "\\".join(mods)[:STUDY["modalities"]]}
