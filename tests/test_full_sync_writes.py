"""The full sync's page writes (``ghimaging/orthanc/bulk.py``): a study's
counts and modality list are right whatever pages its series fall in, the
rows the driver-level executemany stores are the ones SQLAlchemy's own
execute stores, and a full sync's statements do not grow with its studies.
Against a real Orthanc 1.10.1 where Orthanc is involved; on SQLite and,
with ``GHIMAGING_TEST_DATABASE_URL``, on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import event, select, text

from ghimaging.extensions import db
from ghimaging.models import OrthancServer, OrthancStudy
from ghimaging.models._time import utcnow
from ghimaging.orthanc import bulk, full, servers, sync
from ghimaging.querytools import insert_for_upsert
from tests.support import dicomgen


def instance(patient: str, study: str, series: str, number: int, modality: str, n: int = 1) -> Any:
    return dicomgen.make_instance(patient, f"{patient}^TEST", study_uid=study, series_uid=series,
                                  series_number=number, instance_number=n, modality=modality, rows=8, cols=8)


def full_sync(server_id: int, page_size: int) -> None:
    server = db.session.get_one(OrthancServer, server_id)
    with servers.client_for(server) as client:
        summary = full.full(server, client, page_size=page_size)
    db.session.commit()
    assert summary.studies_deleted == 0


def summaries() -> dict[str, tuple[int, int, str]]:
    db.session.expire_all()
    return {s.study_uid: (s.series_count, s.instance_count, s.modalities)
            for s in db.session.scalars(select(OrthancStudy))}


UID = "1.2.826.0.1.3680043.8.498.7"


def test_counts_and_modalities_are_right_whatever_pages_the_series_fall_in(orthanc_row, upload):
    # Uploaded interleaved, so that pages of two series split study X's
    # series: numbers 1 CT (two instances), 2 MR, 3 CT: CT first, then MR.
    upload([instance("P1", f"{UID}.1", f"{UID}.1.1", 1, "CT"), instance("P2", f"{UID}.2", f"{UID}.2.1", 1, "MR"),
            instance("P1", f"{UID}.1", f"{UID}.1.2", 2, "MR"), instance("P1", f"{UID}.1", f"{UID}.1.1", 1, "CT", 2),
            instance("P2", f"{UID}.2", f"{UID}.2.2", 2, "MR"), instance("P3", f"{UID}.3", f"{UID}.3.1", 1, "CR"),
            instance("P1", f"{UID}.1", f"{UID}.1.3", 3, "CT")])
    want = {f"{UID}.1": (3, 4, "CT\\MR"), f"{UID}.2": (2, 2, "MR"), f"{UID}.3": (1, 1, "CR")}
    for page_size in (2, 3, 500):
        full_sync(orthanc_row.id, page_size)
        assert summaries() == want, page_size
    # The incremental path sums the same way.
    db.session.execute(text("UPDATE orthanc_studies SET series_count = 0, instance_count = 0, modalities = ''"))
    db.session.get_one(OrthancServer, orthanc_row.id).last_change = 0
    db.session.commit()
    assert sync.run(orthanc_row.id).error == ""
    assert summaries() == want


def test_a_series_added_since_the_last_sync_is_counted_when_its_study_spans_two_pages(orthanc_row, upload):
    """The series page sums a study from the page alone only when the page
    holds as many of its series as its ``Series`` list had: a count left
    from the previous sync must not pass for it."""
    upload([instance("P1", f"{UID}.1", f"{UID}.1.1", 1, "CT"), instance("P2", f"{UID}.2", f"{UID}.2.1", 1, "CT"),
            instance("P1", f"{UID}.1", f"{UID}.1.2", 2, "CT")])
    full_sync(orthanc_row.id, 2)
    assert summaries()[f"{UID}.1"] == (2, 2, "CT")
    upload([instance("P1", f"{UID}.1", f"{UID}.1.3", 3, "CT")])  # pages: [1.1, 2.1] [1.2, 1.3]
    full_sync(orthanc_row.id, 2)
    assert summaries()[f"{UID}.1"] == (3, 3, "CT")


def raw(where: str) -> list[tuple[Any, ...]]:
    """Rows as the database stores them (no SQLAlchemy type conversion)."""
    return [tuple(r) for r in db.session.execute(text(
        "SELECT study_uid, patient_id, stable, synced_at, uid_shared, series_count, modalities, seen_generation "
        f"FROM orthanc_studies WHERE {where} ORDER BY study_uid"))]


def test_executemany_stores_what_sqlalchemys_execute_stores(app):
    server = OrthancServer(label="Rows", url="http://127.0.0.1:9")
    db.session.add(server)
    db.session.flush()
    when = datetime(2026, 11, 30, 12, 0, 0)  # no microseconds: the DB-API alone would store them otherwise

    def rows(prefix: str) -> list[dict[str, Any]]:
        return [{"server_id": server.id, "orthanc_id": f"{prefix}-{i}", "study_uid": f"{prefix}.{i}",
                 "patient_id": f"P{i}", "stable": i % 2 == 0, "synced_at": when, "seen_generation": 7}
                for i in range(3)]

    stmt = insert_for_upsert(OrthancStudy.__table__)
    stmt = stmt.on_conflict_do_update(index_elements=["server_id", "orthanc_id"],
                                      set_={"stable": stmt.excluded.stable, "synced_at": stmt.excluded.synced_at})
    db.session.connection().execute(stmt, rows("a"))
    bulk.executemany(stmt, rows("b"))
    a, b = raw("study_uid LIKE 'a.%'"), raw("study_uid LIKE 'b.%'")
    assert len(a) == 3 and [r[1:] for r in a] == [r[1:] for r in b]  # defaults filled, values converted alike
    # An UPDATE whose column has an onupdate (synced_at): filled as execute fills it.
    ids = list(db.session.scalars(select(OrthancStudy.id).where(OrthancStudy.study_uid.like("b.%"))))
    before = utcnow().replace(microsecond=0)
    bulk.executemany(bulk._SUMMARY, [{"b_id": i, "b_series": 2, "b_instances": 5, "b_mods": "CT\\MR"} for i in ids])
    db.session.expire_all()
    for study in db.session.scalars(select(OrthancStudy).where(OrthancStudy.id.in_(ids))):
        assert (study.series_count, study.instance_count, study.modalities) == (2, 5, "CT\\MR")
        assert study.synced_at >= before and study.stable == (study.study_uid.endswith((".0", ".2")))


def test_a_full_syncs_statements_do_not_grow_with_its_studies(app, orthanc_row, upload):
    counts = []
    for seed in (0, 1):
        upload(list(dicomgen.generate_studies(2 + 4 * seed, 1, 1, 1, seed=seed, rows=8, cols=8)))
        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any, seen: list[str] = statements) -> None:
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert sync.run(orthanc_row.id, mode="full").error == ""
        finally:
            event.remove(db.engine, "before_cursor_execute", count)
        counts.append(len(statements))
    assert counts[0] == counts[1], counts
