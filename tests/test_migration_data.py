"""Upgrading keeps the clinic's data. SQLite rebuilds a table to alter it
(batch mode); with foreign keys on, dropping the old copy would cascade
into every table pointing at it. A database at 0004 (before studies were
keyed as Orthanc keys them) with a study, its series and a link to a
request must come out of the upgrade with all three, and the study's
name searchable."""

from __future__ import annotations

from flask_migrate import upgrade
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
                        count("imaging_requests")) == (1, 1, 1, 1)
                key, birth = conn.execute(text("SELECT name_key, birth_date FROM orthanc_studies")).one()
                assert (key, birth) == ("aneas dana", "19700102")
                assert conn.execute(text("SELECT needs_full_sync FROM orthanc_servers")).scalar_one() in (True, 1)
        finally:
            db.session.remove()
            db.engine.dispose()
