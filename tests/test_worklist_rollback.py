"""A worklist file follows the fate of the transaction that wrote it: the
services write (or remove) the file before the boundary commits, so a
request is never stored as offered without its file, and a transaction
that rolls back puts the folder back as it was (issue 14: one transaction
owner). The test is the boundary here: it commits or rolls back itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, WorklistFile
from ghimaging.worklists import writer


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


def wl(app, req: ImagingRequest) -> Path:
    return Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl"


def rows() -> set[str]:
    return set(db.session.scalars(db.select(WorklistFile.filename)))


def test_a_submit_that_rolls_back_leaves_no_file(app, create_request, doc):
    req = create_request(physician=doc)
    workflow.submit(req, doc)
    assert wl(app, req).exists()  # written before the commit ...
    db.session.rollback()
    assert not wl(app, req).exists()  # ... and gone with the transaction
    assert db.session.get(ImagingRequest, req.id).state == "draft"
    assert rows() == set()


def test_a_submit_that_commits_keeps_its_file(app, create_request, doc):
    req = create_request(physician=doc)
    workflow.submit(req, doc)
    path = wl(app, req)
    db.session.commit()
    db.session.close()  # the end of the request: nothing more to undo
    assert path.exists()
    assert rows() == {path.name}


def test_a_rewritten_file_gets_its_old_bytes_back_on_rollback(app, create_request, doc):
    from ghimaging.patients.service import update_patient

    req = create_request(physician=doc, submit=True)
    before = wl(app, req).read_bytes()
    patient = req.patient
    update_patient(patient, {"puid": patient.puid, "family_name": "Renamed", "given_name": "Ann",
                             "birth_date": patient.birth_date, "sex": patient.sex})
    assert b"Renamed" in wl(app, req).read_bytes()
    db.session.rollback()
    assert wl(app, req).read_bytes() == before


def test_a_withdrawn_item_comes_back_when_the_cancel_rolls_back(app, create_request, doc):
    req = create_request(physician=doc, submit=True)
    before = wl(app, req).read_bytes()
    workflow.cancel(req, doc, "ordered twice")
    assert not wl(app, req).exists()
    db.session.rollback()
    assert wl(app, req).read_bytes() == before
    assert rows() == {wl(app, req).name}


def test_a_rebuild_that_is_not_committed_changes_nothing(app, create_request, doc):
    req = create_request(physician=doc, submit=True)
    wl(app, req).unlink()
    stray = Path(app.config["WORKLIST_DIR"]) / "GONE.wl"
    stray.write_bytes(b"ours once")
    db.session.add(WorklistFile(filename="GONE.wl", request_id=None, digest="0" * 64))
    db.session.commit()
    report = writer.rebuild()
    assert (report.written, report.removed) == ([wl(app, req).name], ["GONE.wl"])
    assert wl(app, req).exists() and not stray.exists()
    db.session.rollback()
    assert not wl(app, req).exists() and stray.read_bytes() == b"ours once"
    assert rows() == {wl(app, req).name, "GONE.wl"}
