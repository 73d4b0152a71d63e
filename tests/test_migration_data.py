"""Upgrading keeps the clinic's data. SQLite rebuilds a table to alter it
(batch mode); with foreign keys on, dropping the old copy would cascade
into every table pointing at it. A database at 0004 (before studies were
keyed as Orthanc keys them) with a study, its series and a link to a
request must come out of the upgrade with all three, and the study's
name searchable."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from ghimaging import MIGRATIONS_DIR, create_app
from ghimaging.extensions import db

ROWS = [
    "INSERT INTO users (id, username, full_name, email, password_hash, active, session_version, created_at) "
    "VALUES (1, 'doc', 'Doc', '', 'x', :t, 0, '2026-01-01 00:00:00')",
    "INSERT INTO patients (id, puid, family_name, given_name, sex, phone, notes, search_key, created_at, updated_at) "
    "VALUES (1, 'D-100', 'Äneas', 'Dana', 'F', '', '', 'd-100 äneas, dana', '2026-01-01', '2026-01-01')",
    "INSERT INTO modality_types (id, code, name) VALUES (1, 'CR', 'Computed radiography')",
    "INSERT INTO imaging_tests (id, code, name, modality_id, ae_title, worklist_template, active) "
    "VALUES (1, 'XR', 'Chest', 1, 'XRAY1', 'general', :t)",
    "INSERT INTO imaging_requests (id, order_number, patient_id, test_id, urgent, clinical_context, comment, state, "
    "accession_number, study_instance_uid, cancel_reason, images_available, created_at, updated_at) "
    "VALUES (1, 'O1', 1, 1, :f, '', '', 'requested', 'GH1', '2.25.1', '', :t, '2026-01-01', '2026-01-01')",
    "INSERT INTO orthanc_servers (id, label, url, browser_url, username, password_enc, created_at, validated, "
    "version, dicom_aet, dicom_port, orthanc_name, plugins, last_change, orthanc_last, needs_full_sync, "
    "sync_generation, last_error, failures) VALUES (1, 'Main', 'http://x', '', '', '', '2026-01-01', :t, '', '', 0, "
    "'', '', 5, 5, :f, 1, '', 0)",
    "INSERT INTO orthanc_patients (id, server_id, patient_id, orthanc_id, name, birth_date, sex, link_mode, "
    "seen_generation, updated_at) VALUES (1, 1, 'D-100', 'p1', 'ÄNEAS^DANA', '19700102', 'F', '', 1, '2026-01-01')",
    "INSERT INTO orthanc_studies (id, server_id, study_uid, orthanc_id, patient_row_id, patient_id, patient_name, "
    "accession_number, study_date, study_time, description, modalities, institution, referring_physician, "
    "series_count, instance_count, stable, orthanc_last_update, seen_generation, synced_at) VALUES (1, 1, '2.25.1', "
    "'s1', 1, 'D-100', 'ÄNEAS^DANA', 'GH1', '20260101', '', '', 'CR', '', '', 1, 1, :t, '', 1, '2026-01-01')",
    "INSERT INTO orthanc_series (id, study_id, series_uid, orthanc_id, number, description, modality, "
    "instance_count, first_instance, seen_generation) VALUES (1, 1, '2.25.2', 'se1', 1, '', 'CR', 1, 'i1', 1)",
    "INSERT INTO study_links (id, study_id, request_id, method, created_at) "
    "VALUES (1, 1, 1, 'study_uid', '2026-01-01')",
    # Linked by the old rules to another patient's request (its accession only).
    "INSERT INTO patients (id, puid, family_name, given_name, sex, phone, notes, search_key, created_at, updated_at) "
    "VALUES (2, 'E-200', 'Eriksen', 'Erik', 'M', '', '', 'e-200 eriksen, erik', '2026-01-01', '2026-01-01')",
    "INSERT INTO imaging_requests (id, order_number, patient_id, test_id, urgent, clinical_context, comment, state, "
    "accession_number, study_instance_uid, cancel_reason, images_available, created_at, updated_at) "
    "VALUES (2, 'O2', 2, 1, :f, '', '', 'requested', 'GH2', '2.25.9', '', :t, '2026-01-01', '2026-01-01')",
    "INSERT INTO study_links (id, study_id, request_id, method, created_at) "
    "VALUES (2, 1, 2, 'accession', '2026-01-01')",
]


def test_upgrading_from_0004_keeps_studies_series_and_links(fresh_url, tmp_path):
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": fresh_url, "TESTING": True})
    with app.app_context():
        try:
            upgrade(directory=str(MIGRATIONS_DIR), revision="0004")
            with db.engine.begin() as conn:
                for sql in ROWS:
                    conn.execute(text(sql), {k: v for k, v in {"t": True, "f": False}.items() if f":{k}" in sql})
            upgrade(directory=str(MIGRATIONS_DIR))
            with db.engine.connect() as conn:
                def count(table: str) -> int:
                    return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
                assert (count("orthanc_studies"), count("orthanc_series"), count("study_links"),
                        count("imaging_requests")) == (1, 1, 2, 2)
                warnings = dict(conn.execute(text("SELECT id, warning FROM study_links")).all())
                assert warnings[1] == "", "the patient's own study needs no check"
                assert "PatientID \u201cD-100\u201d is not the PUID \u201cE-200\u201d" in warnings[2]
                key, birth = conn.execute(text("SELECT name_key, birth_date FROM orthanc_studies")).one()
                assert (key, birth) == ("aneas dana", "19700102")
                assert conn.execute(text("SELECT needs_full_sync FROM orthanc_servers")).scalar_one() in (True, 1)
        finally:
            db.session.remove()
            db.engine.dispose()


def test_downgrading_0005_with_one_uid_under_two_patients_leaves_no_orphans(fresh_url, tmp_path):
    """The old key (server, UID) cannot hold both studies: the second goes,
    and its series and links with it (foreign keys are off while migrating
    on SQLite; the migration's final foreign_key_check would fail)."""
    app = create_app({"INSTANCE_PATH": str(tmp_path / "instance"), "DATABASE_URL": fresh_url, "TESTING": True})
    with app.app_context():
        try:
            upgrade(directory=str(MIGRATIONS_DIR), revision="0004")
            with db.engine.begin() as conn:
                for sql in ROWS:
                    conn.execute(text(sql), {k: v for k, v in {"t": True, "f": False}.items() if f":{k}" in sql})
            upgrade(directory=str(MIGRATIONS_DIR), revision="0005")
            with db.engine.begin() as conn:
                conn.execute(text(
                    "INSERT INTO orthanc_studies (id, server_id, study_uid, orthanc_id, patient_row_id, patient_id, "
                    "patient_name, name_key, birth_date, uid_shared, accession_number, study_date, study_time, "
                    "description, modalities, institution, referring_physician, series_count, instance_count, stable, "
                    "orthanc_last_update, seen_generation, synced_at) VALUES (2, 1, '2.25.1', 's2', NULL, 'E-200', "
                    "'ERIKSEN^ERIK', 'eriksen erik', '', :t, '', '', '', '', 'CR', '', '', 1, 1, :t, '', 1, "
                    "'2026-01-01')"), {"t": True})
                conn.execute(text("INSERT INTO orthanc_series (id, study_id, series_uid, orthanc_id, number, "
                                  "description, modality, instance_count, first_instance, seen_generation) "
                                  "VALUES (2, 2, '2.25.3', 'se2', 1, '', 'CR', 1, 'i2', 1)"))
                conn.execute(text("INSERT INTO study_links (id, study_id, request_id, method, created_at, warning, "
                                  "other_patient, reason) VALUES (3, 2, 2, 'manual', '2026-01-01', '', :t, 'x')"),
                             {"t": True})
            downgrade(directory=str(MIGRATIONS_DIR), revision="0004")
            with db.engine.connect() as conn:
                assert conn.execute(text("SELECT id FROM orthanc_studies")).scalars().all() == [1]
                assert conn.execute(text("SELECT study_id FROM orthanc_series")).scalars().all() == [1]
                assert sorted(conn.execute(text("SELECT id FROM study_links")).scalars().all()) == [1, 2]
        finally:
            db.session.remove()
            db.engine.dispose()
