"""The sync engine against a real Orthanc 1.10.1: full, incremental,
reconciliation, resets, crashes, concurrency and patient links."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import OrthancPatient, OrthancSeries, OrthancServer, OrthancStudy
from ghimaging.orthanc import servers, sync
from ghimaging.orthanc.client import OrthancClient
from tests.support import dicomgen


def gen(n_patients, studies=1, series=1, instances=1, seed=0):
    return list(dicomgen.generate_studies(n_patients, studies, series, instances, seed=seed, rows=16, cols=16))


def count(model, **where):
    stmt = select(func.count()).select_from(model)
    for k, v in where.items():
        stmt = stmt.where(getattr(model, k) == v)
    return db.session.scalar(stmt)


def fresh(server_id) -> OrthancServer:
    db.session.expire_all()
    return db.session.get(OrthancServer, server_id)


def test_first_sync_is_a_full_sync_of_studies_series_and_patients(orthanc_row, upload, orthanc):
    upload(gen(3, studies=2, series=2, instances=2))
    summary = sync.run(orthanc_row.id)
    assert summary.error == "" and summary.mode == "full"
    assert summary.studies_updated == 6
    assert count(OrthancStudy) == 6 and count(OrthancSeries) == 12 and count(OrthancPatient) == 3
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.accession_number == "A0-00001-01"))
    assert study.series_count == 2 and study.instance_count == 4
    assert study.modality_list and study.patient_id == "G0-00001"
    assert study.institution == "GHIMAGING TEST CLINIC" and study.referring_physician == "HOUSE^GREGORY"
    server = fresh(orthanc_row.id)
    assert server.last_change == orthanc.changes_last() and server.needs_full_sync is False
    assert server.last_sync_at is not None and server.failures == 0


def test_full_sync_pages_instead_of_one_request_per_study(orthanc_row, upload):
    upload(gen(12))
    with servers.client_for(orthanc_row) as client:
        summary = sync.full(orthanc_row, client, page_size=5)
    # changes?last + 3 pages of studies + 3 pages of series (the last pages are short)
    assert summary.requests == 7
    assert count(OrthancStudy) == 12


def test_incremental_sync_picks_up_new_studies_and_new_series(orthanc_row, upload):
    first = gen(2, series=1)
    upload(first)
    sync.run(orthanc_row.id)
    # a new study, and a second series for an existing study
    extra_series = dicomgen.make_instance("G0-00000", "PETROV^LIN", study_uid=first[0].StudyInstanceUID,
                                          modality="CR", series_number=2, rows=16, cols=16)
    upload([*gen(1, seed=7), extra_series])
    summary = sync.run(orthanc_row.id)
    assert summary.mode == "incremental" and summary.error == ""
    assert count(OrthancStudy) == 3
    study = db.session.scalar(select(OrthancStudy).where(OrthancStudy.study_uid == first[0].StudyInstanceUID))
    assert study.series_count == 2 and study.instance_count == 2


def test_incremental_sync_with_nothing_new_costs_one_request(orthanc_row, upload):
    upload(gen(2))
    sync.run(orthanc_row.id)
    summary = sync.run(orthanc_row.id)
    assert summary.mode == "incremental" and summary.requests == 1 and summary.studies_updated == 0


def test_deleted_study_disappears_after_reconciliation(orthanc_row, upload, orthanc):
    upload(gen(3))
    sync.run(orthanc_row.id)
    gone = db.session.scalar(select(OrthancStudy).where(OrthancStudy.patient_id == "G0-00001"))
    orthanc.delete_study(gone.orthanc_id)
    # Orthanc 1.10.1 logs no deletion: the incremental sync cannot see it ...
    assert sync.run(orthanc_row.id).studies_deleted == 0
    assert count(OrthancStudy) == 3
    # ... reconciliation does.
    summary = sync.run(orthanc_row.id, mode="reconcile")
    assert summary.studies_deleted == 1 and count(OrthancStudy) == 2
    assert count(OrthancPatient, patient_id="G0-00001") == 0
    assert fresh(orthanc_row.id).last_reconcile_at is not None


def test_a_study_deleted_before_it_is_fetched_counts_as_deleted(orthanc_row, upload, orthanc):
    sync.run(orthanc_row.id)  # full sync of an empty Orthanc
    upload(gen(2))
    victim = orthanc.get("/studies")[0]
    orthanc.delete_study(victim)
    summary = sync.run(orthanc_row.id)
    assert summary.error == ""
    assert count(OrthancStudy) == 1
    assert count(OrthancStudy, orthanc_id=victim) == 0


class KillingClient(OrthancClient):
    """Kills the real Orthanc after a number of /changes pages."""

    def __init__(self, *a, orthanc, after_pages, **kw):
        super().__init__(*a, **kw)
        self.orthanc, self.after_pages, self.pages = orthanc, after_pages, 0

    def changes(self, since, limit=100):
        if self.pages == self.after_pages:
            self.orthanc.kill()
        self.pages += 1
        return super().changes(since, limit)


def test_orthanc_killed_mid_sync_resumes_exactly_where_it_stopped(orthanc_row, upload, orthanc):
    sync.run(orthanc_row.id)  # full sync of an empty Orthanc; from now on we follow /changes
    datasets = gen(8, series=2)
    upload(datasets)
    total_changes = orthanc.changes_last()

    def factory(server):
        return KillingClient(server.url, server.username, orthanc.password, orthanc=orthanc,
                             after_pages=3, timeout=(1, 5), retries=0)

    summary = sync.run(orthanc_row.id, client_factory=factory, page_size=5)
    assert summary.error, "the sync must notice that Orthanc died"
    server = fresh(orthanc_row.id)
    assert server.last_change == 15  # three pages of five changes, committed with their rows
    assert server.failures == 1 and server.next_attempt_at is not None and server.last_error
    partial = count(OrthancStudy)
    assert 0 < partial < 8

    orthanc.start()
    summary = sync.run(orthanc_row.id, page_size=5)
    assert summary.error == "" and summary.mode == "incremental"
    server = fresh(orthanc_row.id)
    assert server.last_change == total_changes and server.failures == 0 and server.last_error == ""
    assert count(OrthancStudy) == 8 and count(OrthancSeries) == 16 and count(OrthancPatient) == 8
    for study in db.session.scalars(select(OrthancStudy)):
        assert study.series_count == 2 and study.instance_count == 2


def test_wiped_orthanc_database_triggers_full_resync(orthanc_row, upload, orthanc):
    upload(gen(3))
    sync.run(orthanc_row.id)
    orthanc.wipe()
    upload(gen(1, seed=5))
    summary = sync.run(orthanc_row.id)
    assert summary.reset_detected and summary.error == ""
    assert count(OrthancStudy) == 1
    assert db.session.scalar(select(OrthancStudy.patient_id)) == "G5-00000"
    assert fresh(orthanc_row.id).last_change == orthanc.changes_last()


def test_refilled_orthanc_past_our_index_is_caught_by_reconciliation(orthanc_row, upload, orthanc):
    upload(gen(1))
    sync.run(orthanc_row.id)
    orthanc.wipe()
    upload(gen(4, seed=9))  # more changes than before: /changes alone cannot tell
    sync.run(orthanc_row.id)
    summary = sync.run(orthanc_row.id, mode="reconcile")
    assert summary.studies_deleted == 1
    assert fresh(orthanc_row.id).needs_full_sync
    sync.run(orthanc_row.id)
    assert count(OrthancStudy) == 4


def test_wrong_password_is_recorded_and_retried_not_disabled(app, orthanc_row, upload):
    from ghimaging import crypto

    orthanc_row.password_enc = crypto.encrypt("wrong")
    db.session.commit()
    summary = sync.run(orthanc_row.id)
    assert "username or password" in summary.error
    server = fresh(orthanc_row.id)
    assert server.failures == 1 and "password" in server.last_error
    first_backoff = server.next_attempt_at
    sync.run(orthanc_row.id)
    server = fresh(orthanc_row.id)
    assert server.failures == 2 and server.next_attempt_at > first_backoff
    server.password_enc = crypto.encrypt("orthanc-pw")
    db.session.commit()
    upload(gen(1))
    assert sync.run(orthanc_row.id).error == ""
    server = fresh(orthanc_row.id)
    assert server.failures == 0 and server.last_error == "" and count(OrthancStudy) == 1


@pytest.fixture
def app_config():
    return {"ORTHANC_TIMEOUT": 1}


def test_a_server_that_never_answers_times_out(app, orthanc_row):
    from tests.support.orthanc import SilentServer

    with SilentServer() as silent:
        orthanc_row.url = silent.url
        db.session.commit()
        summary = sync.run(orthanc_row.id)
    assert "did not answer in time" in summary.error
    assert fresh(orthanc_row.id).failures == 1


def test_only_one_runner_syncs_a_server_at_a_time(app, orthanc_row, upload):
    upload(gen(6, series=2))
    assert sync.acquire_lease(orthanc_row.id, "someone-else")
    assert sync.run(orthanc_row.id).skipped  # the lease is held elsewhere
    sync.release_lease(orthanc_row.id, "someone-else")

    results = []
    barrier = threading.Barrier(2)
    server_id = orthanc_row.id

    def runner():
        with app.app_context():
            barrier.wait()
            results.append(sync.run(server_id))
            db.session.remove()

    threads = [threading.Thread(target=runner) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and all(not r.error for r in results)
    worked = [r for r in results if not r.skipped]
    assert len(worked) >= 1
    db.session.expire_all()
    assert count(OrthancStudy) == 6 and count(OrthancSeries) == 12 and count(OrthancPatient) == 6
    assert fresh(orthanc_row.id).lease_owner is None


def test_an_expired_lease_is_taken_over(app, orthanc_row):
    from datetime import timedelta

    from ghimaging.models._time import utcnow

    assert sync.acquire_lease(orthanc_row.id, "crashed-worker")
    server = fresh(orthanc_row.id)
    server.lease_until = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert sync.run(orthanc_row.id).skipped == ""


def test_patients_link_by_puid_and_manual_links_survive_resync(app, orthanc_row, upload, create_patient):
    from ghimaging.orthanc import links

    same = create_patient(puid="G0-00000", family_name="Petrov")
    other = create_patient(puid="LOCAL-7", family_name="Other")
    upload(gen(3))
    sync.run(orthanc_row.id)
    rows = {p.patient_id: p for p in db.session.scalars(select(OrthancPatient))}
    assert rows["G0-00000"].local_patient_id == same.id and rows["G0-00000"].link_mode == "auto"
    assert rows["G0-00001"].local_patient_id is None
    links.link_patient(rows["G0-00001"], other, None)
    links.unlink_patient(rows["G0-00000"], None)
    create_patient(puid="G0-00002", family_name="Late")  # registered after the first sync

    sync.run(orthanc_row.id, mode="full")
    db.session.expire_all()
    rows = {p.patient_id: p for p in db.session.scalars(select(OrthancPatient))}
    assert rows["G0-00000"].local_patient_id is None and rows["G0-00000"].link_mode == "unlinked"
    assert rows["G0-00001"].local_patient_id == other.id and rows["G0-00001"].link_mode == "manual"
    assert rows["G0-00002"].local_patient_id is not None and rows["G0-00002"].link_mode == "auto"


def test_several_servers_one_failing_does_not_stop_the_others(app, orthanc_row, upload):
    from ghimaging import crypto
    from ghimaging.orthanc import worker

    bad = OrthancServer(label="Broken", url="http://127.0.0.1:9", password_enc=crypto.encrypt("x"),
                        needs_full_sync=True)
    db.session.add(bad)
    db.session.commit()
    upload(gen(2))
    ran = worker.tick("tester", 60, 900)
    by_label = {s.server: s for s in ran}
    assert by_label["Broken"].error and "connection refused" in by_label["Broken"].error
    assert by_label["Main"].error == ""
    assert count(OrthancStudy) == 2
    # the broken server backs off; the good one is not due again yet
    assert worker.tick("tester", 60, 900) == []


def test_the_sync_thread_syncs_and_stops_cleanly(app, orthanc_row, upload):
    from ghimaging.orthanc.worker import SyncWorker

    db.session.commit()  # the thread reads the server in its own session
    upload(gen(2))
    app.config.update(ORTHANC_SYNC_INTERVAL=1, ORTHANC_RECONCILE_INTERVAL=0)
    w = SyncWorker(app, interval=0.2)
    w.start()
    try:
        for _ in range(100):
            db.session.expire_all()
            if count(OrthancStudy) == 2:
                break
            threading.Event().wait(0.1)
    finally:
        w.stop(10)
    assert not w.is_alive()
    assert count(OrthancStudy) == 2


def test_stored_password_is_encrypted_and_never_logged(app, orthanc, caplog):
    caplog.set_level("DEBUG")
    server = servers.add_server(label="Enc", url=orthanc.url, username=orthanc.username, password=orthanc.password)
    raw = db.session.execute(db.text("SELECT password_enc FROM orthanc_servers WHERE id = :i"), {"i": server.id}).scalar()
    assert raw and orthanc.password not in raw
    server.password_enc = __import__("ghimaging.crypto", fromlist=["x"]).encrypt("bad-secret-xyz")
    db.session.commit()
    sync.run(server.id)
    assert "bad-secret-xyz" not in caplog.text and orthanc.password not in caplog.text
