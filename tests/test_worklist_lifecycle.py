"""Worklist files follow their requests (submit, edit, cancel, result),
`ghimaging worklists write` rebuilds the folder, and the pages, the API, the
template editor and `ghimaging init` show and manage them. Files only: no
Orthanc here (tests/test_worklist_mwl.py asks a real one)."""

from __future__ import annotations

import re
from datetime import date, datetime
from html import unescape
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import select, update

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, WorklistFile, WorklistTemplate
from ghimaging.worklists import build_file, templates


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def folder(app) -> Path:
    return Path(app.config["WORKLIST_DIR"])


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def wl(folder: Path, req: ImagingRequest) -> Path:
    return folder / f"{req.accession_number}.wl"


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def registered() -> set[str]:
    db.session.expire_all()
    return set(db.session.scalars(select(WorklistFile.filename)))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".wl"))


def general_body() -> str:
    return next(e["body"] for e in templates.shipped() if e["name"] == "general")


def store_broken(name: str, body: str) -> WorklistTemplate:
    """A stored template that no longer renders. Saving refuses it (an
    unknown name is caught when saved), so it goes straight into the
    database, as a row written by an older ghimaging or by hand would."""
    with pytest.raises(templates.TemplateError):
        templates.save(None, name=name, body=body, charset="ISO_IR 192", encoding="utf-8")
    row = WorklistTemplate(name=name, body=body, charset="ISO_IR 192", encoding="utf-8")
    db.session.add(row)
    db.session.commit()
    return row


# -- lifecycle ---------------------------------------------------------------

def test_submit_writes_the_accession_file_atomically(app, folder, create_request, create_patient, doc):
    patient = create_patient(puid="PUID-9", family_name="Müller", given_name="Jürgen")
    req = create_request(patient, physician=doc, submit=True, scheduled_at=datetime(2025, 5, 6, 7, 8))
    path = wl(folder, req)
    assert path.is_file()
    assert leftovers(folder) == []  # no temporary file left behind
    ds = read(path)
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.31"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (ds.AccessionNumber, ds.PatientID, str(ds.PatientName)) == (req.accession_number, "PUID-9", "Müller^Jürgen")
    assert ds.StudyInstanceUID == req.study_instance_uid
    step = ds.ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate) == ("CR", "XRAY1", "20250506")
    assert registered() == {path.name}
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_an_order_of_several_tests_writes_one_file_per_request(app, folder, catalog, create_patient):
    reqs = workflow.create_order(create_patient(), [catalog["chest"], catalog["abd"]], user=None, submit=True)
    assert sorted(p.name for p in folder.glob("*.wl")) == sorted(f"{r.accession_number}.wl" for r in reqs)
    assert read(wl(folder, reqs[1])).ScheduledProcedureStepSequence[0].Modality == "US"


def test_a_draft_is_never_written(app, folder, create_request, doc):
    req = create_request(physician=doc)
    workflow.update_request(req, user=doc, physician=doc, urgent=True, clinical_context="", comment="",
                            scheduled_at=datetime(2025, 1, 2, 3, 4))
    assert not wl(folder, req).exists()
    assert registered() == set()
    workflow.submit(req, doc)
    assert wl(folder, req).exists()


def test_editing_a_requested_request_rewrites_its_file_by_rename(app, folder, create_request, doc):
    req = create_request(physician=doc, submit=True, scheduled_at=datetime(2025, 5, 6, 7, 8))
    path = wl(folder, req)
    with open(path, "rb") as held:  # what a reader (Orthanc) has open stays whole
        before = path.read_bytes()
        workflow.update_request(req, user=doc, physician=doc, urgent=True, clinical_context="", comment="",
                                scheduled_at=datetime(2025, 5, 9, 14, 30))
        assert held.read() == before
    step = read(path).ScheduledProcedureStepSequence[0]
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == ("20250509", "143000")
    assert read(path).RequestedProcedurePriority == "STAT"
    assert leftovers(folder) == []


def test_editing_through_the_page_rewrites_the_file(app, folder, create_request, doc, login):
    req = create_request(physician=doc, submit=True, scheduled_at=datetime(2025, 5, 6, 7, 8))
    c = login("doc")
    r = c.post(f"/requests/{req.id}/edit", {"physician": str(doc.id), "scheduled_date": "2025-06-01",
                                             "scheduled_time": "09:15", "comment": "", "clinical_context": "",
                                             "confirm_past": "y"},
               token_from=f"/requests/{req.id}/edit")
    assert r.status_code == 302
    assert read(wl(folder, req)).ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == "20250601"


def test_cancelling_removes_the_file(app, folder, create_request, doc, login):
    req = create_request(physician=doc, submit=True)
    assert wl(folder, req).exists()
    c = login("doc")
    r = c.post(f"/requests/{req.id}/cancel", {"reason": "patient declined"}, token_from=f"/requests/{req.id}")
    assert r.status_code == 302
    assert not wl(folder, req).exists()
    assert registered() == set()


def test_a_final_result_completes_the_request_and_removes_the_file(app, folder, create_request, doc, make_user):
    rad = make_user("rad", "radiologist")
    req = create_request(physician=doc, submit=True)
    other = create_request(physician=doc, submit=True)
    workflow.create_result(req, rad, radiologist=rad, result_date=date.today(), report="Normal.", final=True)
    assert not wl(folder, req).exists()
    assert wl(folder, other).exists()
    assert registered() == {wl(folder, other).name}



def test_a_preliminary_result_takes_the_item_off_the_worklist(app, folder, create_request, doc, make_user, runner):
    """Reported without linked images (a study sent elsewhere, linked later):
    the exam was performed, so the modality must not be offered it again,
    though the request stays requested until the result is final."""
    rad = make_user("rad", "radiologist")
    req = create_request(physician=doc, submit=True)
    assert wl(folder, req).exists()
    workflow.create_result(req, rad, radiologist=rad, result_date=date.today(), report="Preliminary.")
    db.session.commit()
    assert req.state == "requested"
    assert not wl(folder, req).exists()
    assert registered() == set()
    # A repair of the folder does not put it back either.
    assert runner.invoke(args=["worklists", "write"]).exit_code == 0
    assert not wl(folder, req).exists()


# -- ghimaging worklists write ------------------------------------------------

def test_worklists_write_repairs_the_folder_and_leaves_foreign_files(app, folder, runner, create_request, doc):
    kept = create_request(physician=doc, submit=True)
    deleted = create_request(physician=doc, submit=True)
    stale = create_request(physician=doc, submit=True)
    cancelled = create_request(physician=doc, submit=True)
    draft = create_request(physician=doc)
    good = {r.id: wl(folder, r).read_bytes() for r in (kept, deleted, stale)}
    kept_stat = wl(folder, kept).stat()

    wl(folder, deleted).unlink()
    wl(folder, stale).write_bytes(good[stale.id][:-20] + b"X" * 20)  # edited on disk
    # Cancelled in the database without the file going away (a crash between
    # the commit and the removal, or a restored backup): still registered.
    db.session.execute(update(ImagingRequest).where(ImagingRequest.id == cancelled.id).values(state="cancelled"))
    db.session.commit()
    assert wl(folder, cancelled).exists() and wl(folder, cancelled).name in registered()
    foreign = folder / "FOREIGN-1.wl"
    foreign.write_bytes(b"written by another tool")
    foreign_mtime = foreign.stat().st_mtime_ns

    result = runner.invoke(args=["worklists", "write"])
    assert result.exit_code == 0, result.output
    assert "2 written, 1 unchanged, 1 removed, 1 not ours (left alone)" in result.output
    assert f"+ {wl(folder, deleted).name}" in result.output and f"+ {wl(folder, stale).name}" in result.output
    assert f"- {wl(folder, cancelled).name}" in result.output

    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted([wl(folder, kept).name, wl(folder, deleted).name, wl(folder, stale).name, foreign.name])
    assert not wl(folder, draft).exists()
    for req in (deleted, stale):
        ds = read(wl(folder, req))
        assert ds.AccessionNumber == req.accession_number and ds.StudyInstanceUID == req.study_instance_uid
    assert wl(folder, kept).stat().st_ino == kept_stat.st_ino  # untouched
    assert wl(folder, kept).stat().st_mtime_ns == kept_stat.st_mtime_ns
    assert foreign.read_bytes() == b"written by another tool" and foreign.stat().st_mtime_ns == foreign_mtime
    assert registered() == {wl(folder, r).name for r in (kept, deleted, stale)}


def test_worklists_write_twice_changes_nothing(app, folder, runner, create_request, doc):
    reqs = [create_request(physician=doc, submit=True) for _ in range(3)]
    (folder / "other.wl").write_bytes(b"not ours")
    wl(folder, reqs[0]).unlink()
    first = runner.invoke(args=["worklists", "write"])
    assert first.exit_code == 0, first.output
    assert "1 written, 2 unchanged, 0 removed, 1 not ours" in first.output
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    second = runner.invoke(args=["worklists", "write"])
    assert second.exit_code == 0, second.output
    assert "0 written, 3 unchanged, 0 removed, 1 not ours" in second.output
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    assert after == before


def test_rewriting_an_unchanged_request_gives_the_same_bytes(app, create_request):
    """The file must depend only on the request and the template, or every
    rebuild rewrites every file and the digests never match."""
    req = create_request(submit=True)
    assert build_file(req).data == build_file(req).data


def test_worklists_write_reports_a_broken_template_and_writes_the_rest(app, folder, runner, catalog,
                                                                      create_request, doc):
    store_broken("broken", "(0010,0010) PN [${NoSuchVariable}]\n")
    ok = create_request(physician=doc, submit=True, test=catalog["abd"])
    bad = create_request(physician=doc, submit=True, test=catalog["chest"])
    assert wl(folder, bad).exists()
    # The template breaks after the submit (set directly: the catalogue page
    # would rewrite the waiting items at once).
    catalog["chest"].worklist_template = "broken"
    db.session.commit()
    wl(folder, ok).unlink()
    result = runner.invoke(args=["worklists", "write"])
    assert result.exit_code != 0
    # The stale file goes: the modality must not see what the template no
    # longer writes; the request says why its file is missing.
    assert wl(folder, ok).exists() and not wl(folder, bad).exists()
    assert "NoSuchVariable" in result.output
    db.session.expire_all()
    assert "NoSuchVariable" in db.session.get(ImagingRequest, bad.id).worklist_problem


# -- pages and API -----------------------------------------------------------

def test_request_page_shows_the_worklist_text_and_attributes(app, folder, create_request, create_patient, doc,
                                                           make_user, login):
    """To those who manage worklist templates (tests/test_worklist_details_visibility.py: others see plain words)."""
    patient = create_patient(puid="PUID-5", family_name="Müller", given_name="Jürgen")
    req = create_request(patient, physician=doc, submit=True)
    make_user("boss", "admin")
    html = unescape(login("boss").get(f"/requests/{req.id}").get_data(as_text=True))
    assert "in the worklist" in html and f"{req.accession_number}.wl" in html
    assert f"(0008,0050) SH [{req.accession_number}]" in html  # the dump2dcm text
    assert "(0010,0010) PN [Müller^Jürgen]" in html
    assert re.search(r"PatientName</td><td>PN</td><td>Müller\^Jürgen", html)  # the decoded attributes
    assert re.search(r"StudyInstanceUID</td><td>UI</td><td>" + re.escape(req.study_instance_uid), html)
    assert "ScheduledProcedureStepSequence" in html


def test_request_page_says_when_the_file_is_missing_or_not_offered(app, folder, create_request, doc, login):
    live = create_request(physician=doc, submit=True)
    draft = create_request(physician=doc)
    wl(folder, live).unlink()
    c = login("doc")
    assert "file missing" in c.get(f"/requests/{live.id}").get_data(as_text=True)
    assert "not offered to the modality" in c.get(f"/requests/{draft.id}").get_data(as_text=True)


def test_api_returns_the_worklist_text(app, folder, create_request, api):
    req = create_request(submit=True)
    client = api("technologist")
    r = client.get(f"/api/v1/requests/{req.id}/worklist")
    assert r.status_code == 200
    body = r.get_json()
    assert body["filename"] == f"{req.accession_number}.wl" and body["live"] is True
    assert body["charset"] == "ISO_IR 192" and body["template"] == "general"
    assert f"(0008,0050) SH [{req.accession_number}]" in body["text"]
    assert body["text"] == build_file(req).text
    assert client.get("/api/v1/requests/999999/worklist").status_code == 404
    assert app.test_client().get(f"/api/v1/requests/{req.id}/worklist").status_code == 401


def test_api_answers_422_for_a_broken_template(app, catalog, create_request, api):
    store_broken("broken", "(0010,0010) PN [${NoSuchVariable}]\n")
    catalog["chest"].worklist_template = "broken"
    db.session.commit()
    req = create_request()
    r = api("technologist").get(f"/api/v1/requests/{req.id}/worklist")
    assert r.status_code == 422
    assert "NoSuchVariable" in r.get_data(as_text=True)
    assert r.get_json()["file"]["state"] == "not_offered"


# -- a broken template -------------------------------------------------------

def test_a_broken_template_refuses_the_submit_and_says_why(app, folder, catalog, create_request, doc, login):
    """A request is never `requested` without its worklist file: a template
    that does not render keeps the request a draft, and the page says why."""
    store_broken("broken", "(0008,0005) CS [ISO_IR 192]\n(0010,0010) PN [${PatientNme}]\n")
    catalog["chest"].worklist_template = "broken"
    db.session.commit()
    req = create_request(physician=doc)
    c = login("doc")
    r = c.post(f"/requests/{req.id}/submit", token_from=f"/requests/{req.id}")
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).state == "draft"
    assert not wl(folder, req).exists()
    html = unescape(c.get(f"/requests/{req.id}").get_data(as_text=True))
    assert "Not submitted" in html and "template does not work" in html
    assert "The worklist cannot be built" in html and "PatientNme" in html and "line 2" in html


# -- the template editor -----------------------------------------------------

@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


EDITOR = "/admin/worklists/templates/new"


def form(body: str, action: str = "preview", request_id: int = 0, **kw) -> dict:
    return {"name": kw.get("name", "mine"), "charset": kw.get("charset", "ISO_IR 192"),
            "encoding": kw.get("encoding", "utf-8"), "body": body, "comment": "", "action": action,
            "preview_request": str(request_id)}


def test_editor_previews_against_the_chosen_request(app, admin, create_request, create_patient):
    chosen = create_request(create_patient(family_name="Chosen", given_name="One"), submit=True)
    create_request(create_patient(family_name="Other", given_name="Two"), submit=True)
    r = admin.post(EDITOR, form(general_body(), request_id=chosen.id), token_from=EDITOR)
    assert r.status_code == 200
    html = unescape(r.get_data(as_text=True))
    assert f"(0008,0050) SH [{chosen.accession_number}]" in html
    assert "Chosen^One" in html and "Other^Two" not in html.split("As a modality reads it")[1]
    assert re.search(r"PatientName</td><td>PN</td><td>Chosen\^One", html)
    assert db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "mine")) is None


BAD_BODIES = {
    "genshi-syntax": ("(0008,0005) CS [ISO_IR 192]\n(0010,0010) PN [${PatientName.}]\n", "line 2"),
    "undefined-name": ("(0008,0005) CS [ISO_IR 192]\n\n(0010,0010) PN [${PatientNme}]\n", "line 3"),
    "not-dump-syntax": ("(0008,0005) CS [ISO_IR 192]\nPatientName = ${PatientName}\n", "line 2"),
    "unclosed-sequence-item": ("(0008,0005) CS [ISO_IR 192]\n(0008,0060) CS [CR]\n(fffe,e00d) -\n", "line 3"),
    "unknown-vr": ("(0008,0005) CS [ISO_IR 192]\n(0010,0010) ZZ [${PatientName}]\n", "line 2"),
    "number-out-of-range": ("(0008,0005) CS [ISO_IR 192]\n(0010,21c0) US [70000]\n", "line 2"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_editor_shows_a_broken_template_with_its_line_and_answers_400(app, admin, create_request, case):
    body, where = BAD_BODIES[case]
    req = create_request(submit=True)
    r = admin.post(EDITOR, form(body, request_id=req.id), token_from=EDITOR)
    assert r.status_code == 400
    assert where in r.get_data(as_text=True)


def test_editor_save_of_a_syntax_error_answers_400_with_the_line(app, admin):
    body = "(0008,0005) CS [ISO_IR 192]\n(0008,0050) SH [${AccessionNumber}]\n(0010,0010) PN [${PatientName + }]\n"
    r = admin.post(EDITOR, form(body, action="save"), token_from=EDITOR)
    assert r.status_code == 400
    assert "line 3" in r.get_data(as_text=True)
    assert db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "mine")) is None


@pytest.mark.parametrize("field, value", [("body", ""), ("preview_request", "abc"), ("charset", "NOPE"),
                                          ("name", "n" * 101), ("encoding", "")])
@pytest.mark.parametrize("action", ["preview", "save"])
def test_editor_answers_400_to_a_bad_form(app, admin, create_request, field, value, action):
    data = form(general_body(), action=action, request_id=create_request(submit=True).id)
    data[field] = value
    r = admin.post(EDITOR, data, token_from=EDITOR)
    assert r.status_code == 400


def test_editor_refuses_a_mismatched_encoding_with_400(app, admin):
    r = admin.post(EDITOR, form(general_body(), action="save", charset="ISO_IR 100", encoding="utf-8"),
                   token_from=EDITOR)
    assert r.status_code == 400
    assert "ISO_IR 100" in unescape(r.get_data(as_text=True))


def test_editor_saves_a_template_and_the_test_uses_it(app, admin, folder, catalog, create_request):
    body = general_body().replace("(0040,0020) CS [SCHEDULED]", "(0040,0020) CS [SCHEDULED]\n(0040,0010) SH [ROOM 7]")
    r = admin.post(EDITOR, form(body, action="save", name="room7", charset="ISO_IR 100", encoding="latin-1"),
                   token_from=EDITOR)
    assert r.status_code == 302
    saved = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "room7"))
    assert r.headers["Location"].endswith(f"/admin/worklists/templates/{saved.id}")
    assert (saved.body, saved.charset, saved.encoding, saved.origin) == (body, "ISO_IR 100", "iso8859-1", "custom")
    catalog["chest"].worklist_template = "room7"
    db.session.commit()
    ds = read(wl(folder, create_request(submit=True)))
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert ds.ScheduledProcedureStepSequence[0].ScheduledStationName == "ROOM 7"
    page = admin.get(f"/admin/worklists/templates/{saved.id}")
    assert page.status_code == 200 and "room7" in page.get_data(as_text=True)


@pytest.mark.parametrize("role", ["physician", "technologist", "radiologist"])
def test_only_admins_reach_the_worklist_pages(app, make_user, login, create_request, role):
    make_user("someone", role)
    c = login("someone")
    req = create_request(submit=True)
    assert c.get("/admin/worklists/").status_code == 403
    assert c.get(EDITOR).status_code == 403
    r = c.post(EDITOR, form(general_body(), action="save", request_id=req.id), token_from="/account")
    assert r.status_code == 403
    assert db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "mine")) is None
    assert c.post("/admin/worklists/rebuild", {}, token_from="/account").status_code == 403


def test_worklist_page_lists_folder_templates_and_foreign_files(app, admin, folder, create_request):
    templates.load_shipped()
    req = create_request(submit=True)
    (folder / "FOREIGN.wl").write_bytes(b"x")
    html = admin.get("/admin/worklists/").get_data(as_text=True)
    assert str(folder) in html
    assert "2 <code>.wl</code> file(s), 1 of them written by ghimaging. 1 of them written by something else (left alone)." in html
    for name in ("general", "latin1", "gnuhealth-legacy"):
        assert f">{name}</a>" in html
    assert wl(folder, req).exists()


def test_rebuild_button_rewrites_a_deleted_file(app, admin, folder, create_request):
    req = create_request(submit=True)
    wl(folder, req).unlink()
    r = admin.post("/admin/worklists/rebuild", {}, token_from="/admin/worklists/")
    assert r.status_code == 302
    assert wl(folder, req).exists()


# -- ghimaging init ----------------------------------------------------------

def test_init_loads_the_shipped_templates_and_is_idempotent(app, runner):
    first = runner.invoke(args=["init"])
    assert first.exit_code == 0, first.output
    shipped = {e["name"]: e for e in templates.shipped()}
    db.session.expire_all()
    rows = {t.name: t for t in templates.all_templates()}
    assert set(rows) == set(shipped)
    assert f"{len(shipped)} worklist template(s) loaded" in first.output
    assert all(t.origin == "shipped" for t in rows.values())
    assert [t.name for t in rows.values() if t.is_default] == ["general"]
    assert (rows["latin1"].charset, rows["latin1"].body) == ("ISO_IR 100", shipped["general"]["body"])
    second = runner.invoke(args=["init"])
    assert second.exit_code == 0, second.output
    assert "0 worklist template(s) loaded" in second.output
    db.session.expire_all()
    assert len(templates.all_templates()) == len(shipped)


def test_init_keeps_a_shipped_template_an_admin_edited(app, runner):
    templates.load_shipped()
    xray = next(t for t in templates.all_templates() if t.name == "xray")
    templates.save(xray, name="xray", body="(0008,0005) CS [ISO_IR 192]\n(0010,0010) PN [${PatientName}]\n",
                   charset="ISO_IR 192", encoding="utf-8")
    result = runner.invoke(args=["init"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    xray = next(t for t in templates.all_templates() if t.name == "xray")
    assert xray.origin == "custom" and xray.body.count("\n") == 2


def test_editing_the_patient_or_the_test_rewrites_waiting_items(app, folder, create_request, create_patient, catalog):
    """The modality must never show a name or station that was corrected."""
    from ghimaging.catalog.service import save_test
    from ghimaging.patients.service import update_patient

    patient = create_patient(family_name="Smtih", given_name="Ann")
    req = create_request(patient, catalog["chest"], submit=True)
    draft = create_request(patient, catalog["abd"])
    assert str(read(wl(folder, req)).PatientName) == "Smtih^Ann"
    update_patient(patient, {"puid": patient.puid, "family_name": "Smith", "given_name": "Ann",
                             "birth_date": patient.birth_date, "sex": patient.sex})
    assert str(read(wl(folder, req)).PatientName) == "Smith^Ann"
    test = catalog["chest"]
    save_test(test, code=test.code, name=test.name, modality=test.modality, ae_title="XRAY2")
    assert read(wl(folder, req)).ScheduledProcedureStepSequence[0].ScheduledStationAETitle == "XRAY2"
    assert not wl(folder, draft).exists()
