"""The full sync's writes: a page of studies or series in a few set-based
statements (not one per row), with the values of :mod:`.mapping`, so that
time and memory do not grow per study. Nothing here commits.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update

from ..extensions import db
from ..models import OrthancPatient, OrthancSeries, OrthancStudy, Patient
from ..models._time import utcnow
from ..querytools import insert_for_upsert
from . import mapping


def upsert(model: type[Any], rows: list[dict[str, Any]], keys: list[str], columns: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE for a batch, on SQLite and
    PostgreSQL alike."""
    if not rows:
        return
    stmt = insert_for_upsert(model.__table__)  # Core, not the ORM's bulk path: a page is one executemany
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in columns})
    db.session.connection().execute(stmt, rows)


def _patients(server_id: int, page: list[dict[str, Any]], generation: int) -> dict[str, int]:
    """Upsert the page's patients (their :func:`.mapping.patient_values`),
    link them by PUID unless staff linked or unlinked them by hand; returns
    their row ids by PatientID."""
    now = utcnow()
    patients: dict[str, dict[str, Any]] = {}
    for values in page:
        patients[values["patient_id"]] = {**values, "server_id": server_id, "seen_generation": generation,
                                          "local_patient_id": None, "link_mode": "", "updated_at": now}
    upsert(OrthancPatient, list(patients.values()), ["server_id", "patient_id"],
           ["orthanc_id", "name", "name_key", "birth_date", "sex", "seen_generation", "updated_at"])
    rows = db.session.execute(select(OrthancPatient.id, OrthancPatient.patient_id, OrthancPatient.local_patient_id,
                                     OrthancPatient.link_mode)
                              .where(OrthancPatient.server_id == server_id,
                                     OrthancPatient.patient_id.in_(list(patients)))).all()
    locals_ = dict(db.session.execute(select(Patient.puid, Patient.id).where(Patient.puid.in_(list(patients)))).all())
    row_ids = {}
    relink = []
    for row_id, pid, local_id, mode in rows:
        row_ids[pid] = row_id
        if mode in ("manual", "unlinked") or not pid:
            continue
        want = locals_.get(pid)
        if want != local_id:
            relink.append({"b_id": row_id, "b_local": want, "b_mode": "auto" if want else ""})
    if relink:
        t = cast(Table, OrthancPatient.__table__)
        db.session.execute(update(t).where(t.c.id == bindparam("b_id"))
                           .values(local_patient_id=bindparam("b_local"), link_mode=bindparam("b_mode")), relink)
    return row_ids


STUDY_COLUMNS = ["study_uid", "patient_row_id", "patient_id", "patient_name", "name_key", "birth_date",
                 "accession_number", "study_date", "study_time", "description", "institution", "referring_physician",
                 "stable", "orthanc_last_update", "seen_generation", "synced_at", "synced_change"]


def write_study_page(server_id: int, items: list[dict[str, Any]], generation: int, change: int) -> int:
    """One page of ``/studies?expand``; ``change`` is the /changes index
    Orthanc had reached before the pages were read."""
    patients = [mapping.patient_values(data) for data in items]
    row_ids = _patients(server_id, patients, generation)
    now = utcnow()
    studies = []
    for data, patient in zip(items, patients, strict=True):
        values = mapping.study_values(data, patient)
        studies.append({**values, "server_id": server_id, "patient_row_id": row_ids.get(values["patient_id"]),
                        "series_count": len(data.get("Series") or []), "instance_count": 0, "modalities": "",
                        "seen_generation": generation, "synced_at": now, "synced_change": change})
    upsert(OrthancStudy, studies, ["server_id", "orthanc_id"], STUDY_COLUMNS)
    return len(studies)


def write_series_page(server_id: int, items: list[dict[str, Any]], generation: int) -> None:
    """One page of ``/series?expand``, under the studies already written;
    then the counts and modality list of the studies the page reached, from
    all their series rows so far (a study whose series span two pages is
    summed again on the second). Done per page, this work overlaps with the
    read of the next page."""
    parents = list({str(s.get("ParentStudy")) for s in items})
    study_ids = dict(db.session.execute(select(OrthancStudy.orthanc_id, OrthancStudy.id).where(
        OrthancStudy.server_id == server_id, OrthancStudy.orthanc_id.in_(parents))).all())
    rows = []
    for s in items:
        study_id = study_ids.get(str(s.get("ParentStudy")))
        if study_id is None:
            continue  # arrived after the study pages: the next incremental sync has it
        rows.append({"study_id": study_id, "seen_generation": generation, **mapping.series_values(s)})
    upsert(OrthancSeries, rows, ["study_id", "series_uid"],
           ["orthanc_id", "number", "description", "modality", "instance_count", "first_instance", "seen_generation"])
    _summarise(sorted(study_ids.values()), generation)


def _summarise(ids: list[int], generation: int) -> None:
    if not ids:
        return
    series: dict[int, list[tuple[str, int]]] = {}
    for study_id, modality, count in db.session.execute(
            select(OrthancSeries.study_id, OrthancSeries.modality, OrthancSeries.instance_count)
            .where(OrthancSeries.study_id.in_(ids), OrthancSeries.seen_generation == generation)
            .order_by(OrthancSeries.study_id, OrthancSeries.number, OrthancSeries.id)):
        series.setdefault(study_id, []).append((modality, count))
    t = cast(Table, OrthancStudy.__table__)
    params = []
    for study_id, rows in series.items():
        v = mapping.summary_values(rows)
        params.append({"b_id": study_id, "b_series": v["series_count"], "b_instances": v["instance_count"],
                       "b_mods": v["modalities"]})
    db.session.execute(update(t).where(t.c.id == bindparam("b_id")).values(
        series_count=bindparam("b_series"), instance_count=bindparam("b_instances"),
        modalities=bindparam("b_mods")), params)


def summarise_bare(server_id: int, generation: int) -> None:
    """Studies of the sync that no series page reached have no series."""
    has_series = select(OrthancSeries.id).where(OrthancSeries.study_id == OrthancStudy.id,
                                                OrthancSeries.seen_generation == generation).exists()
    db.session.execute(update(OrthancStudy).where(
        OrthancStudy.server_id == server_id, OrthancStudy.seen_generation == generation, ~has_series)
        .values(series_count=0, instance_count=0, modalities="").execution_options(synchronize_session=False))
