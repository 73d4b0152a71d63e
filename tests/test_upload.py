"""DICOM upload (/upload/) through the test client into a real Orthanc 1.10.1:
plain, extensionless and archived files, every outcome with its file name,
the archive bounds (zip bomb, file count, expansion, path names), the size
limit, roles and CSRF, and the studies synced and linked right after."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import uuid
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import OrthancServer, OrthancStudy
from ghimaging.orthanc import matching
from tests.support import dicomgen

JSON = "/upload/?format=json"


def dcm(patient_id: str = "UP-1", name: str = "UPLOAD^ANNA", **kw) -> bytes:
    kw.setdefault("rows", 16)
    kw.setdefault("cols", 16)
    return dicomgen.to_bytes(dicomgen.make_instance(patient_id, name, **kw))


def zip_of(members: dict[str, bytes], method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tar_of(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def app_config(request):
    """Settings per test, through ``@pytest.mark.parametrize("app_config", [...], indirect=True)``."""
    return getattr(request, "param", {})


@pytest.fixture
def tech(make_user, login, orthanc_row):
    make_user("tech", "technologist")
    return login("tech")


def send(c, files: list[tuple[str, bytes]], path: str = JSON, server_id=None, **fields):
    """POST the files as the page's script does (field ``files``, one part each)."""
    if server_id is None:
        server_id = _server_id()
    data = {"server_id": str(server_id), "files": [(io.BytesIO(b), n) for n, b in files], **fields}
    return c.post(path, data, token_from="/upload/", content_type="multipart/form-data")


def _server_id() -> int:
    return db.session.scalar(select(OrthancServer.id).limit(1))


def outcomes(resp) -> dict[str, tuple[str, str]]:
    assert resp.status_code == 200, resp.get_data(as_text=True)[:800]
    body = resp.get_json()
    return {o["name"]: (o["status"], o["detail"]) for o in body["outcomes"]}


def instances(orthanc) -> list[str]:
    return orthanc.get("/instances")


# -- what is accepted ---------------------------------------------------------

def test_a_dcm_file_is_stored_synced_at_once_and_linked_from_the_answer(tech, orthanc):
    r = send(tech, [("chest.dcm", dcm(accession="ACC-UP-1", study_description="CHEST UPLOAD"))])
    assert outcomes(r) == {"chest.dcm": ("stored", "")}
    body = r.get_json()
    assert body["counts"] == {"stored": 1, "already": 0, "rejected": 0, "failed": 0}
    assert body["aborted"] == ""
    assert len(instances(orthanc)) == 1
    (study_id,) = orthanc.get("/studies")
    assert body["studies"] == [study_id]
    db.session.expire_all()
    row = db.session.scalar(select(OrthancStudy).where(OrthancStudy.orthanc_id == study_id))
    assert row is not None and row.accession_number == "ACC-UP-1"  # mirrored now, not at the next tick
    (link,) = body["study_links"]
    assert link["id"] == row.id and link["url"] == f"/orthanc/studies/{row.id}"
    assert "CHEST UPLOAD" in link["label"]
    page = tech.get(link["url"])
    assert page.status_code == 200 and "ACC-UP-1" in page.get_data(as_text=True)


def test_the_form_without_script_gets_the_outcome_table_and_study_links(tech):
    r = send(tech, [("one.dcm", dcm(study_description="HTML ANSWER")), ("notes.txt", b"hello")], path="/upload/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "1 stored, 0 already stored, 1 rejected, 0 failed" in html
    assert '<tr class="outcome-stored"><td>one.dcm</td>' in html
    assert '<tr class="outcome-rejected"><td>notes.txt</td>' in html and "not a DICOM file" in html
    study = db.session.scalar(select(OrthancStudy))
    assert f'href="/orthanc/studies/{study.id}"' in html and "HTML ANSWER" in html


def test_the_study_link_label_shows_the_patient_name_as_the_pages_do(tech):
    """The script's answer and the page's answer label the study alike."""
    data = dcm("UP-7", "UPLOAD^ANNA^MARIA", study_description="KNEE")
    html = send(tech, [("a.dcm", data)], path="/upload/").get_data(as_text=True)
    assert "UPLOAD, ANNA MARIA · KNEE</a>" in html
    r = send(tech, [("a.dcm", data)])
    assert r.get_json()["study_links"][0]["label"] == "UPLOAD, ANNA MARIA · KNEE"


def test_an_extensionless_dicom_file_is_stored_under_its_name(tech, orthanc):
    assert outcomes(send(tech, [("IM000001", dcm())])) == {"IM000001": ("stored", "")}
    assert len(instances(orthanc)) == 1


def test_a_zip_with_nested_paths_and_junk_stores_the_dicom_and_names_the_rest(tech, orthanc):
    archive = zip_of({"a/b/c.dcm": dcm(), "a/d.dcm": dcm(), "readme.txt": b"burned by the CD writer",
                      "a/DICOMDIR-ish/": b"", "a/b/thumbs.db": b"\x00" * 600})
    got = outcomes(send(tech, [("cd.zip", archive)]))
    assert got["cd.zip/a/b/c.dcm"] == ("stored", "")
    assert got["cd.zip/a/d.dcm"] == ("stored", "")
    assert got["cd.zip/readme.txt"] == ("rejected", "not a DICOM file")
    assert got["cd.zip/a/b/thumbs.db"] == ("rejected", "not a DICOM file")
    assert len(got) == 4  # the directory entry is no file
    assert len(instances(orthanc)) == 2


def test_a_gzip_dicom_is_stored(tech, orthanc):
    got = outcomes(send(tech, [("image.dcm.gz", gzip.compress(dcm()))]))
    assert got == {"image.dcm": ("stored", "")}
    assert len(instances(orthanc)) == 1


@pytest.mark.parametrize("name,mode,shown", [("series.tar", "w", "series.tar"),
                                              ("series.tar.gz", "w:gz", "series.tar"),
                                              ("series.tgz", "w:gz", "series.tar")])
def test_tar_and_tar_gz_archives_are_stored(tech, orthanc, name, mode, shown):
    archive = tar_of({"DICOM/1.dcm": dcm(instance_number=1), "DICOM/2": dcm(instance_number=2),
                      "DICOM/index.html": b"<html></html>"}, mode)
    got = outcomes(send(tech, [(name, archive)]))
    assert got == {f"{shown}/DICOM/1.dcm": ("stored", ""), f"{shown}/DICOM/2": ("stored", ""),
                   f"{shown}/DICOM/index.html": ("rejected", "not a DICOM file")}
    assert len(instances(orthanc)) == 2


def test_a_folder_of_files_keeps_the_relative_names(tech, orthanc):
    files = [(f"CT HEAD/SE1/IM{i}", dcm(instance_number=i)) for i in range(1, 4)] + [("CT HEAD/.DS_Store", b"\x00\x01")]
    got = outcomes(send(tech, files))
    assert got == {"CT HEAD/SE1/IM1": ("stored", ""), "CT HEAD/SE1/IM2": ("stored", ""),
                   "CT HEAD/SE1/IM3": ("stored", ""), "CT HEAD/.DS_Store": ("rejected", "not a DICOM file")}


# -- what is refused, with a reason -------------------------------------------

def test_a_text_file_renamed_dcm_is_rejected_as_not_dicom(tech, orthanc):
    got = outcomes(send(tech, [("scan.dcm", b"Patient: Anna\nThis is not DICOM at all.\n" * 20)]))
    assert got == {"scan.dcm": ("rejected", "not a DICOM file")}
    assert instances(orthanc) == []


@pytest.mark.parametrize("keep", [300, 450, 600])
def test_a_truncated_dicom_is_refused_with_a_reason(tech, orthanc, keep):
    data = dcm(rows=64, cols=64)[:keep]
    assert data[128:132] == b"DICM"  # it starts like a real one
    got = outcomes(send(tech, [("cut.dcm", data)]))
    status, detail = got["cut.dcm"]
    assert status in ("rejected", "failed") and detail
    assert instances(orthanc) == []


def test_a_dicom_without_preamble_is_named_as_such(tech, orthanc):
    got = outcomes(send(tech, [("raw.dcm", dcm()[128:])]))
    assert got["raw.dcm"][0] == "rejected" and "preamble" in got["raw.dcm"][1]


def test_a_file_already_in_orthanc_is_reported_already_stored(tech, orthanc):
    data = dcm()
    assert outcomes(send(tech, [("first.dcm", data)])) == {"first.dcm": ("stored", "")}
    r = send(tech, [("again.dcm", data)])
    assert outcomes(r)["again.dcm"][0] == "already"
    assert r.get_json()["counts"]["already"] == 1 and r.get_json()["studies"]  # still shown with its study
    assert len(instances(orthanc)) == 1


def test_a_damaged_zip_is_rejected_with_its_name(tech, orthanc):
    data = zip_of({"a.dcm": dcm()})
    got = outcomes(send(tech, [("broken.zip", data[: len(data) // 2])]))
    (name, (status, detail)), = got.items()
    assert name.startswith("broken.zip") and status in ("rejected", "failed") and detail


# -- archive bounds -------------------------------------------------------------

def write_zip_bomb(path: Path, size: int = 200 * 1024**2, name: str = "bomb.dcm") -> None:
    """One member of ``size`` zeros (after a DICOM preamble), written in chunks."""
    chunk = bytes(1024**2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf, \
            zf.open(name, "w", force_zip64=True) as member:
        member.write(bytes(128) + b"DICM")
        left = size - 132
        while left > 0:
            member.write(chunk[:left])
            left -= len(chunk)


def test_a_zip_bomb_is_stopped_with_a_clear_message(tech, orthanc, tmp_path):
    bomb = tmp_path / "bomb.zip"
    write_zip_bomb(bomb)
    assert bomb.stat().st_size < 2 * 1024**2
    r = send(tech, [("good.dcm", dcm()), ("bomb.zip", bomb.read_bytes())])
    body = r.get_json()
    assert r.status_code == 200
    assert "zip bomb" in body["aborted"] and body["aborted"].startswith("The upload was stopped")
    got = outcomes(r)
    assert got["good.dcm"] == ("stored", "")
    assert got["bomb.zip"][0] == "failed" and "bomb.zip/bomb.dcm" in got["bomb.zip"][1]
    assert len(instances(orthanc)) == 1


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILES": 3}], indirect=True)
def test_an_archive_with_more_files_than_allowed_is_stopped(tech, orthanc):
    archive = zip_of({f"s/{i}.dcm": dcm(instance_number=i) for i in range(1, 7)})
    r = send(tech, [("many.zip", archive)])
    body = r.get_json()
    assert "more than 3 files" in body["aborted"]
    assert body["counts"]["stored"] <= 3
    assert outcomes(r)["many.zip"][0] == "failed"
    assert len(instances(orthanc)) <= 3


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILES": 3}], indirect=True)
def test_a_folder_with_more_files_than_allowed_is_refused_before_anything_is_sent(tech, orthanc):
    files = [(f"cd/IM{i}", dcm(instance_number=i)) for i in range(1, 7)]
    r = send(tech, files)
    body = r.get_json()
    assert r.status_code == 413, body
    assert body["message"] == "Too many files in one upload (6); the limit is 3 files. Upload in parts."
    assert instances(orthanc) == []


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILES": 3}], indirect=True)
def test_a_folder_of_too_many_files_is_not_called_too_large(tech, orthanc):
    """The form parser refuses more parts than UPLOAD_MAX_FILES allows with a
    413; the message must be about the number of files, not the 2 GB size limit."""
    r = send(tech, [(f"cd/{i}.txt", b"x") for i in range(150)])  # 300 bytes of files
    body = r.get_json()
    assert r.status_code in (200, 413), r.get_data(as_text=True)[:300]
    message = body.get("message") or body.get("aborted")
    assert "files" in message and "2048 MB" not in message, message
    assert instances(orthanc) == []


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_EXPANDED_BYTES": 256 * 1024}], indirect=True)
def test_an_archive_expanding_past_the_total_bound_is_stopped(tech, orthanc):
    archive = zip_of({f"{i}.dcm": dcm(instance_number=i, rows=128, cols=128) for i in range(1, 6)})  # 5 x 33 KB
    assert len(archive) < 256 * 1024
    big = zip_of({f"{i}.dcm": dcm(instance_number=i, rows=256, cols=256) for i in range(1, 6)})  # 5 x 131 KB
    r = send(tech, [("ok.zip", archive), ("big.zip", big)])
    body = r.get_json()
    assert "expands to more than" in body["aborted"]
    assert outcomes(r)["big.zip"][0] == "failed"


@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_FILE_BYTES": 64 * 1024}], indirect=True)
def test_a_gzip_expanding_past_the_file_bound_is_stopped(tech, orthanc):
    got = send(tech, [("huge.dcm.gz", gzip.compress(bytes(128) + b"DICM" + bytes(1024**2)))])
    assert "larger than" in got.get_json()["aborted"] or "more than" in got.get_json()["aborted"]
    assert instances(orthanc) == []


def test_an_archive_name_that_climbs_out_is_only_a_name(tech, orthanc, app):
    tag = uuid.uuid4().hex
    evil = f"../../evil-{tag}.dcm"
    archive = zip_of({evil: dcm(), f"/abs-{tag}.dcm": b"junk", f"..\\..\\win-{tag}.txt": b"junk"})
    cwd = Path.cwd()
    got = outcomes(send(tech, [("../x.zip", archive)]))
    assert got[f"../x.zip/../../evil-{tag}.dcm"] == ("stored", "")
    assert got[f"../x.zip/abs-{tag}.dcm"][0] == "rejected"
    assert got[f"../x.zip/../../win-{tag}.txt"][0] == "rejected"
    for base in (cwd, Path(tempfile.gettempdir()), Path(app.instance_path), Path(app.instance_path) / "x" / "y"):
        for name in (f"evil-{tag}.dcm", f"abs-{tag}.dcm", f"win-{tag}.txt"):
            assert not (base / name).exists() and not (base.parent / name).exists() \
                and not (base.parent.parent / name).exists()
    for root, _dirs, files in os.walk(app.instance_path):
        assert not any(tag in f for f in files), root


# -- size limit ------------------------------------------------------------------

@pytest.mark.parametrize("app_config", [{"UPLOAD_MAX_BYTES": 100_000}], indirect=True)
def test_an_upload_over_the_upload_limit_is_refused_with_413(tech, orthanc):
    r = send(tech, [("big.dcm", dcm(rows=256, cols=256))], path="/upload/")  # 131 KB
    assert r.status_code == 413, r.get_data(as_text=True)[:300]
    assert "The upload is too large; the limit is 97 KB." in r.get_data(as_text=True)
    assert instances(orthanc) == []


SMALL = {"UPLOAD_MAX_BYTES": 100_000, "MAX_CONTENT_LENGTH": 100_000}


@pytest.mark.parametrize("app_config", [SMALL], indirect=True)
def test_a_413_page_names_the_limit(tech, orthanc):
    r = send(tech, [("big.dcm", dcm(rows=256, cols=256))], path="/upload/")
    assert r.status_code == 413
    assert "The upload is too large; the limit is 97 KB." in r.get_data(as_text=True)
    assert instances(orthanc) == []


@pytest.mark.parametrize("app_config", [SMALL], indirect=True)
@pytest.mark.parametrize("how", [{"path": JSON}, {"path": "/upload/", "headers": {"Accept": "application/json"}}])
def test_a_413_answers_the_pages_script_in_json(tech, orthanc, how):
    """upload.js shows ``message`` from a JSON body; an HTML page becomes "HTTP 413"."""
    path = how["path"]
    r = tech.post(path, {"server_id": str(_server_id()), "files": [(io.BytesIO(dcm(rows=256, cols=256)), "big.dcm")]},
                  token_from="/upload/", content_type="multipart/form-data", headers=how.get("headers", {}))
    assert r.status_code == 413
    body = r.get_json(silent=True)
    assert body is not None, r.get_data(as_text=True)[:120]
    assert body["message"] == "The upload is too large; the limit is 97 KB."


@pytest.mark.parametrize("app_config", [{"MAX_CONTENT_LENGTH": 100_000}], indirect=True)
def test_the_upload_limit_not_the_general_form_limit_applies_to_uploads(tech, orthanc):
    """UPLOAD_MAX_BYTES (2 GB by default) is the bound for /upload/, not the
    64 MB MAX_CONTENT_LENGTH of every other form."""
    got = outcomes(send(tech, [("big.dcm", dcm(rows=256, cols=256))]))
    assert got == {"big.dcm": ("stored", "")}


def test_a_folder_of_more_than_a_thousand_files_is_not_refused_by_the_form_parser(tech):
    """A CT series is often 1,000-2,000 files; Flask's MAX_FORM_PARTS is 1,000."""
    files = [(f"junk/{i:05d}.txt", b"x") for i in range(1200)]
    r = send(tech, files)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert r.get_json()["counts"]["rejected"] == 1200


# -- bad input, roles, CSRF -------------------------------------------------------

@pytest.mark.parametrize("role", ["physician", "radiologist"])
def test_other_roles_may_not_upload(make_user, login, orthanc_row, orthanc, role):
    make_user("someone", role)
    c = login("someone")
    assert c.get("/upload/").status_code == 403
    r = c.post(JSON, {"server_id": str(orthanc_row.id), "files": [(io.BytesIO(dcm()), "a.dcm")]},
               content_type="multipart/form-data")
    assert r.status_code == 403
    assert instances(orthanc) == []


@pytest.mark.parametrize("role", ["technologist", "admin"])
def test_technologists_and_admins_may_upload(make_user, login, orthanc_row, orthanc, role):
    make_user("someone", role)
    c = login("someone")
    page = c.get("/upload/")
    assert page.status_code == 200 and 'id="progress-bar"' in page.get_data(as_text=True)
    assert outcomes(send(c, [("a.dcm", dcm())], server_id=orthanc_row.id)) == {"a.dcm": ("stored", "")}


def test_signed_out_visitors_are_sent_to_the_login_page(app, orthanc_row, orthanc):
    from tests.support.web import CsrfClient

    c = CsrfClient(app.test_client())
    assert c.get("/upload/").status_code == 302
    r = c.post(JSON, {"server_id": str(orthanc_row.id), "files": [(io.BytesIO(dcm()), "a.dcm")]},
               token_from="/login", content_type="multipart/form-data")
    assert r.status_code in (302, 401) and instances(orthanc) == []


def test_a_missing_csrf_token_is_a_400_with_a_message_not_a_500(tech, orthanc_row, orthanc):
    c = tech.client
    data = {"server_id": str(orthanc_row.id), "files": [(io.BytesIO(dcm()), "a.dcm")]}
    html = c.post("/upload/", data=data, content_type="multipart/form-data")
    assert html.status_code == 400 and "reload" in html.get_data(as_text=True)
    data = {"server_id": str(orthanc_row.id), "files": [(io.BytesIO(dcm()), "a.dcm")]}
    js = c.post(JSON, data=data, content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert js.status_code == 400
    assert js.get_json(silent=True) and "reload" in js.get_json()["message"], js.get_data(as_text=True)[:200]
    assert instances(orthanc) == []


@pytest.mark.parametrize("fields,message", [
    ({"server_id": ""}, "Choose the Orthanc server"),
    ({"server_id": "abc"}, "Choose the Orthanc server"),
    ({"server_id": "99999999999999999999"}, "Choose the Orthanc server"),
    ({"server_id": "424242"}, "Choose the Orthanc server"),
])
def test_a_bad_server_is_a_400_with_a_message(tech, fields, message):
    r = tech.post(JSON, {"files": [(io.BytesIO(dcm()), "a.dcm")], **fields}, token_from="/upload/",
                  content_type="multipart/form-data")
    assert r.status_code == 400 and message in r.get_json()["message"]


def test_no_files_is_a_400_with_a_message(tech, orthanc_row):
    r = tech.post(JSON, {"server_id": str(orthanc_row.id)}, token_from="/upload/", content_type="multipart/form-data")
    assert r.status_code == 400 and "Choose files" in r.get_json()["message"]


@pytest.mark.parametrize("request_id", ["abc", "-1", "99999999999999999999", "777"])
def test_a_bad_request_id_is_ignored_not_a_500(tech, request_id):
    got = outcomes(send(tech, [("a.dcm", dcm())], request_id=request_id))
    assert got == {"a.dcm": ("stored", "")}


def test_an_orthanc_that_stops_answering_is_reported_not_a_500(tech, orthanc):
    orthanc.kill()
    r = send(tech, [("a.dcm", dcm()), ("b.dcm", dcm())])
    body = r.get_json()
    assert r.status_code == 200
    assert body["aborted"].startswith("Orthanc stopped answering")
    assert body["outcomes"][0]["status"] == "failed" and body["outcomes"][0]["name"] == "a.dcm"


# -- for a request -----------------------------------------------------------------

def test_uploading_for_a_request_links_the_study_to_it(tech, orthanc, create_request):
    req = create_request(submit=True)
    other = create_request(submit=True)
    # Its own StudyInstanceUID and accession, so no automatic rule applies; the patient's own PatientID.
    r = send(tech, [("cd/IM1", dcm(req.patient.puid, "OTHER^NAME", accession="EXT-ACC-9"))], request_id=str(req.id))
    assert outcomes(r) == {"cd/IM1": ("stored", "")}
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy))
    assert [link.request_id for link in matching.requests_of(study)] == [req.id]
    assert [link.method for link in matching.studies_of(req)] == ["manual"]
    assert req.images_available and not other.images_available
    assert r.get_json()["study_links"][0]["id"] == study.id


def test_uploading_another_patients_cd_for_a_request_does_not_link_it_without_a_confirmation(
        tech, orthanc, create_request):
    """A CD from elsewhere carries that hospital's PatientID: the choice of
    request on the upload page is not the explicit confirmation and reason
    that linking another patient's study needs."""
    req = create_request(submit=True)
    r = send(tech, [("cd/IM1", dcm("EXT-9", "OTHER^NAME", accession="EXT-ACC-9"))], request_id=str(req.id))
    assert outcomes(r) == {"cd/IM1": ("stored", "")}
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy))
    assert matching.requests_of(study) == [] and not req.images_available
    assert "another patient" in r.get_json()["aborted"] and "EXT-9" in r.get_json()["aborted"]


def test_uploading_without_a_request_leaves_an_unknown_study_unmatched(tech, orthanc, create_request):
    req = create_request(submit=True)
    send(tech, [("IM1", dcm("EXT-9", "OTHER^NAME", accession="EXT-ACC-9"))])
    db.session.expire_all()
    study = db.session.scalar(select(OrthancStudy))
    assert matching.requests_of(study) == [] and not req.images_available


def test_an_upload_keeping_the_worklist_uid_links_itself(tech, orthanc, create_request):
    req = create_request(submit=True)
    send(tech, [("IM1", dcm(req.patient.puid, "X^Y", study_uid=req.study_instance_uid))])
    db.session.expire_all()
    assert [link.request_id for link in matching.requests_of(db.session.scalar(select(OrthancStudy)))] == [req.id]
