"""The full sync's writes: a page of studies or series in a few set-based
statements (not one per row), with the values of :mod:`.mapping`, so that
time and memory do not grow per study. Nothing here commits.

What a page costs (checked with the bench's statement count): a page of
studies is one upsert of its patients, one read of their row ids joined to
the local patients they may link to (plus an UPDATE only when a link
changes) and one upsert of the studies; a page of series is one read of its
studies' ids, one upsert of the series, one read of series rows only for
studies the page cannot sum alone, and one UPDATE (executemany) of the
studies' counts and modality lists. Each statement is compiled once per
kind of database and its rows go to the DB-API as tuples
(:func:`executemany`): SQLAlchemy's per-row work, and building and
compiling the statements again for every page, were about a sixth of a
full sync's own CPU time (bench/bench_orthanc_sync.py, 2,000 studies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Dialect, Table, and_, bindparam, func, or_, select, update

from ..extensions import db
from ..models import OrthancPatient, OrthancSeries, OrthancStudy, Patient
from ..models._time import utcnow
from ..querytools import insert_for_upsert
from . import mapping
from .mirror import chunks

_STATEMENTS: dict[tuple[str, tuple[str, ...], tuple[str, ...], str], Any] = {}
# By statement (held here, so its identity is never reused), dialect and
# parameter style, and the rows' keys. The statements are the module's own,
# a few.
_PREPARED: dict[tuple[Any, type[Dialect], str, tuple[str, ...]], _Prepared] = {}


def upsert(model: type[Any], rows: list[dict[str, Any]], keys: Sequence[str], columns: Sequence[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET columns, one executemany
    for the batch, on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    key = (model.__tablename__, tuple(keys), tuple(columns), dialect)
    stmt = _STATEMENTS.get(key)
    if stmt is None:  # Core, not the ORM's bulk path: a page is one executemany
        stmt = insert_for_upsert(model.__table__)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns})
        _STATEMENTS[key] = stmt
    executemany(stmt, rows)


class _Prepared:
    """A statement compiled once for executemany on one kind of database:
    its SQL, the order of its parameters, SQLAlchemy's own converters of
    their values for that database, and the column defaults and onupdates
    the rows do not give."""

    def __init__(self, stmt: Any, dialect: Dialect, names: Sequence[str]):
        compiled = stmt.compile(dialect=dialect, column_keys=list(names), for_executemany=True)
        self.sql: str = compiled.string
        self.positional = bool(dialect.positional)
        self.order: list[str] = list(compiled.positiontup or []) if self.positional else list(compiled.binds)
        self.convert: list[tuple[int, Callable[[Any], Any]]] = []
        for i, name in enumerate(self.order):
            proc = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if proc is not None:
                self.convert.append((i, proc))
        self.fill: dict[str, Any] = {}  # a default's value, or its function (called once per batch)
        for column in [*compiled.insert_prefetch, *compiled.update_prefetch]:
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            if default is None or not (default.is_scalar or default.is_callable):
                raise TypeError(f"{column}: only constant or callable defaults can be filled in a batch")
            self.fill[column.key] = default

    def params(self, rows: list[dict[str, Any]]) -> list[Any]:
        fill = {k: d.arg if d.is_scalar else d.arg(None) for k, d in self.fill.items()}
        order = self.order
        # Converted once per distinct value: a page's rows share most of them
        # (the same time, the same flags).
        converted: list[dict[Any, Any]] = [{} for _ in self.convert]
        out: list[Any] = []
        for row in rows:
            values = [row[n] if n in row else fill[n] for n in order]
            for (i, proc), seen in zip(self.convert, converted, strict=True):
                value = values[i]
                try:
                    values[i] = seen[value]
                except KeyError:
                    values[i] = seen[value] = proc(value)
                except TypeError:  # not hashable: converted as it is
                    values[i] = proc(value)
            out.append(tuple(values) if self.positional else dict(zip(order, values, strict=True)))
        return out


def executemany(stmt: Any, rows: list[dict[str, Any]]) -> None:
    """Run a Core INSERT or UPDATE once per row (the DB-API's executemany),
    the rows' values converted by the same SQLAlchemy type converters and
    completed by the same column defaults as ``connection.execute(stmt,
    rows)`` would, so the rows stored are the same; the statement is
    compiled once per kind of database and set of keys (and kept: pass
    statements made once, as this module's are). Callable defaults are
    called once per batch, without an execution context.

    Why not ``connection.execute``: SQLAlchemy builds and converts every
    row's parameters through its general path (about 10 microseconds per row
    of 20 columns, per row of every page); here a row is one tuple. All rows
    must have the keys of the first."""
    if not rows:
        return
    conn = db.session.connection()
    names = tuple(rows[0])
    key = (stmt, type(conn.dialect), conn.dialect.paramstyle, names)
    prepared = _PREPARED.get(key)
    if prepared is None:
        prepared = _PREPARED[key] = _Prepared(stmt, conn.dialect, names)
    conn.exec_driver_sql(prepared.sql, prepared.params(rows))


_patients_t = cast(Table, OrthancPatient.__table__)
_RELINK = (update(_patients_t).where(_patients_t.c.id == bindparam("b_id"))
           .values(local_patient_id=bindparam("b_local"), link_mode=bindparam("b_mode")))
_studies_t = cast(Table, OrthancStudy.__table__)
_SUMMARY = (update(_studies_t).where(_studies_t.c.id == bindparam("b_id"))
            .values(series_count=bindparam("b_series"), instance_count=bindparam("b_instances"),
                    modalities=bindparam("b_mods")))

# The reads of every page, built once (their id lists are bound when run).
_PATIENT_ROWS = (select(OrthancPatient.id, OrthancPatient.patient_id, OrthancPatient.local_patient_id,
                        OrthancPatient.link_mode, Patient.id)
                 .outerjoin(Patient, Patient.puid == OrthancPatient.patient_id)
                 .where(OrthancPatient.server_id == bindparam("server"),
                        OrthancPatient.patient_id.in_(bindparam("ids", expanding=True))))
_PARENTS = (select(OrthancStudy.orthanc_id, OrthancStudy.id, OrthancStudy.series_count)
            .where(OrthancStudy.server_id == bindparam("server"),
                   OrthancStudy.orthanc_id.in_(bindparam("ids", expanding=True))))
_SERIES_ROWS = (select(OrthancSeries.study_id, OrthancSeries.modality, OrthancSeries.instance_count)
                .where(OrthancSeries.study_id.in_(bindparam("ids", expanding=True)),
                       OrthancSeries.seen_generation == bindparam("g"))
                .order_by(OrthancSeries.study_id, OrthancSeries.number, OrthancSeries.id))

PATIENT_COLUMNS = ("orthanc_id", "name", "name_key", "birth_date", "sex", "seen_generation", "updated_at")


def _patients(server_id: int, page: list[dict[str, Any]], generation: int) -> dict[str, int]:
    """Upsert the page's patients (their :func:`.mapping.patient_values`),
    link them by PUID unless staff linked or unlinked them by hand; returns
    their row ids by PatientID."""
    now = utcnow()
    patients: dict[str, dict[str, Any]] = {}
    for values in page:
        patients[values["patient_id"]] = {**values, "server_id": server_id, "seen_generation": generation,
                                          "local_patient_id": None, "link_mode": "", "updated_at": now}
    upsert(OrthancPatient, list(patients.values()), ("server_id", "patient_id"), PATIENT_COLUMNS)
    rows = db.session.execute(_PATIENT_ROWS, {"server": server_id, "ids": list(patients)}).all()
    row_ids = {}
    relink = []
    for row_id, pid, local_id, mode, want in rows:
        row_ids[pid] = row_id
        if mode in ("manual", "unlinked") or not pid:
            continue
        if want != local_id:
            relink.append({"b_id": row_id, "b_local": want, "b_mode": "auto" if want else ""})
    if relink:
        db.session.execute(_RELINK, relink)
    return row_ids


# ``series_count`` is the length of the study's ``Series`` list until its
# series pages sum it: the series page compares it to the series it holds.
STUDY_COLUMNS = ("study_uid", "patient_row_id", "patient_id", "patient_name", "name_key", "birth_date",
                 "accession_number", "study_date", "study_time", "description", "institution", "referring_physician",
                 "series_count", "stable", "orthanc_last_update", "seen_generation", "synced_at", "synced_change")


def write_study_page(server_id: int, items: list[dict[str, Any]], generation: int, change: int) -> int:
    """One page of ``/studies?expand``; ``change`` is the /changes index
    Orthanc had reached before the pages were read."""
    names: dict[str, str] = {}  # a patient's studies share the name's search key
    patients = [mapping.patient_values(data, names) for data in items]
    row_ids = _patients(server_id, patients, generation)
    now = utcnow()
    studies = []
    for data, patient in zip(items, patients, strict=True):
        values = mapping.study_values(data, patient)
        studies.append({**values, "server_id": server_id, "patient_row_id": row_ids.get(values["patient_id"]),
                        "series_count": len(data.get("Series") or []), "instance_count": 0, "modalities": "",
                        "seen_generation": generation, "synced_at": now, "synced_change": change})
    upsert(OrthancStudy, studies, ("server_id", "orthanc_id"), STUDY_COLUMNS)
    return len(studies)


SERIES_COLUMNS = ("orthanc_id", "number", "description", "modality", "instance_count", "first_instance",
                  "seen_generation")


def write_series_page(server_id: int, items: list[dict[str, Any]], generation: int) -> None:
    """One page of ``/series?expand``, under the studies already written;
    then the counts and modality list of the studies whose series are all
    written now. Done per page, this work overlaps with the read of the next
    page.

    A study's ``series_count`` holds, until it is summed, the length of the
    ``Series`` list its page of studies gave. A study with that many series
    in this page, of at most one modality (where series order cannot change
    the list), is summed from the page itself; any other study the page
    reaches is summed from its series rows of this sync, in series order,
    once they are that many (a study whose series span pages is summed when
    its last page comes). What is left (the archive changed while the sync
    ran, or a study has no series) is summed by :func:`summarise_rest`."""
    parents = list({str(s.get("ParentStudy")) for s in items})
    studies = {orthanc_id: (study_id, count) for orthanc_id, study_id, count in db.session.execute(
        _PARENTS, {"server": server_id, "ids": parents})}
    rows = []
    found: dict[int, list[tuple[str, int]]] = {}
    for s in items:
        study = studies.get(str(s.get("ParentStudy")))
        if study is None:
            continue  # arrived after the study pages: the next incremental sync has it
        values = mapping.series_values(s)
        rows.append({"study_id": study[0], "seen_generation": generation, **values})
        found.setdefault(study[0], []).append((values["modality"], values["instance_count"]))
    upsert(OrthancSeries, rows, ("study_id", "series_uid"), SERIES_COLUMNS)
    expected = dict(studies.values())
    done = {sid: pairs for sid, pairs in found.items()
            if len(pairs) == expected[sid] and len({m for m, _ in pairs if m}) <= 1}
    rest = [sid for sid in found if sid not in done]
    for sid, pairs in _series_of(rest, generation).items():
        if len(pairs) == expected[sid]:
            done[sid] = pairs
    _write_summaries(done)


def summarise_rest(server_id: int, generation: int) -> None:
    """After the last page: sum the studies of the sync whose series rows
    are not as many as their ``series_count`` says (the archive changed
    while the sync ran, or the study has no series; a study without series
    rows but with counts left from before is one too)."""
    rows = (select(func.count(OrthancSeries.id)).where(OrthancSeries.study_id == OrthancStudy.id,
                                                       OrthancSeries.seen_generation == generation)
            .scalar_subquery())
    ids = list(db.session.scalars(select(OrthancStudy.id).where(
        OrthancStudy.server_id == server_id, OrthancStudy.seen_generation == generation,
        or_(OrthancStudy.series_count != rows,  # else series_count is the rows' count:
            and_(OrthancStudy.series_count == 0, or_(OrthancStudy.instance_count != 0,
                                                     OrthancStudy.modalities != ""))))))
    for chunk in chunks(ids, 500):
        found = _series_of(chunk, generation)
        _write_summaries({sid: found.get(sid, []) for sid in chunk})


def _series_of(ids: Sequence[int], generation: int) -> dict[int, list[tuple[str, int]]]:
    """(modality, instance count) of each study's series rows of this sync,
    in series order."""
    series: dict[int, list[tuple[str, int]]] = {}
    if ids:
        for study_id, modality, count in db.session.execute(_SERIES_ROWS, {"ids": list(ids), "g": generation}):
            series.setdefault(study_id, []).append((modality, count))
    return series


def _write_summaries(series: dict[int, list[tuple[str, int]]]) -> None:
    params = []
    for study_id, pairs in series.items():
        v = mapping.summary_values(pairs)
        params.append({"b_id": study_id, "b_series": v["series_count"], "b_instances": v["instance_count"],
                       "b_mods": v["modalities"]})
    executemany(_SUMMARY, params)
