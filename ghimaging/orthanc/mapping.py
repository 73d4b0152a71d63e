"""Orthanc's JSON to the values of our rows: the one mapping every sync path
uses (the incremental path's ORM rows and the full sync's set-based pages).

A value longer than its column is cut to the column's length, read from the
model (:func:`fit`), so a column limit has one home: the model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import String

from ..extensions import db
from ..models import OrthancPatient, OrthancSeries, OrthancStudy
from ..models.orthanc import name_key

Json = dict[str, Any]


def tags(data: Mapping[str, Any], key: str = "MainDicomTags") -> dict[str, str]:
    """One block of DICOM tags of an Orthanc answer, every value as text."""
    block = data.get(key) or {}
    if not isinstance(block, dict):
        return {}
    return {k: str(v) if v is not None else "" for k, v in block.items()}


def _limits(model: type[db.Model]) -> dict[str, int]:  # type: ignore[name-defined]
    return {c.name: c.type.length for c in model.__table__.columns
            if isinstance(c.type, String) and c.type.length}


_LIMITS = {m: _limits(m) for m in (OrthancPatient, OrthancStudy, OrthancSeries)}


def fit(model: type[Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every text cut to its column's length in ``model``."""
    limits = _LIMITS[model]
    return {k: (v[:limits[k]] if isinstance(v, str) and k in limits else v) for k, v in values.items()}


def patient_id(data: Mapping[str, Any]) -> str:
    """The PatientID of a study's answer, as the patient row keys it."""
    return str(fit(OrthancPatient, {"patient_id": tags(data, "PatientMainDicomTags").get("PatientID", "")})["patient_id"])


def patient_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The Orthanc patient row of a study's answer (its PatientMainDicomTags)."""
    ptags = tags(data, "PatientMainDicomTags")
    values = fit(OrthancPatient, {
        "patient_id": ptags.get("PatientID", ""), "orthanc_id": str(data.get("ParentPatient", "")),
        "name": ptags.get("PatientName", ""), "birth_date": ptags.get("PatientBirthDate", ""),
        "sex": ptags.get("PatientSex", ""),
    })
    values["name_key"] = name_key(values["name"])
    return values


def study_uid(data: Mapping[str, Any]) -> str:
    """The StudyInstanceUID, or Orthanc's id when the study has none."""
    uid = fit(OrthancStudy, {"study_uid": tags(data).get("StudyInstanceUID", "")})["study_uid"]
    return uid or str(data["ID"])


def study_values(data: Mapping[str, Any]) -> dict[str, Any]:
    """The study row of ``GET /studies/{id}`` (or one item of ``/studies?expand``),
    with the patient's identity copied in. AccessionNumber is SH: leading
    and trailing spaces are not part of it."""
    t = tags(data)
    patient = patient_values(data)
    return fit(OrthancStudy, {
        "study_uid": study_uid(data), "orthanc_id": str(data["ID"]),
        "patient_id": patient["patient_id"], "patient_name": patient["name"], "name_key": patient["name_key"],
        "birth_date": patient["birth_date"], "accession_number": t.get("AccessionNumber", "").strip(),
        "study_date": t.get("StudyDate", ""), "study_time": t.get("StudyTime", ""),
        "description": t.get("StudyDescription", ""), "institution": t.get("InstitutionName", ""),
        "referring_physician": t.get("ReferringPhysicianName", ""),
        "stable": bool(data.get("IsStable", False)), "orthanc_last_update": str(data.get("LastUpdate", "")),
    })


def series_values(s: Mapping[str, Any]) -> dict[str, Any]:
    """The series row of one expanded series."""
    t = tags(s)
    try:
        number: int | None = int(t.get("SeriesNumber", "").strip() or "x")
    except ValueError:
        number = None
    instances = s.get("Instances") or []
    return fit(OrthancSeries, {
        "series_uid": t.get("SeriesInstanceUID", "") or str(s["ID"]), "orthanc_id": str(s["ID"]),
        "number": number, "description": t.get("SeriesDescription", ""), "modality": t.get("Modality", ""),
        "instance_count": len(instances), "first_instance": instances[0] if instances else "",
    })


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
    return fit(OrthancStudy, {"series_count": count, "instance_count": instances, "modalities": "\\".join(mods)})
