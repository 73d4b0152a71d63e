"""No silent name loss on the way to the modality (issue 8, part 4).

A real Orthanc 1.10.1 with its worklists plugin reads the folder ghimaging
writes; pynetdicom and dcmtk's ``findscu -W`` play the modality.

- Orthanc left at its default encoding (Latin1): the server page, the
  Worklists page and ``GET /api/v1/orthanc/servers/<id>`` warn and name the
  setting; the worklist self-test turns red and lists the damaged names.
- Orthanc with ``DefaultEncoding: Utf8``: names in eight scripts come back
  intact through both modality tools, and the self-test is green.
- A name the template's character set cannot hold refuses the submit (page,
  order form, API, ``create_order``) and the request stays a draft with no
  file; with the template's UTF-8 fallback on, the file is ISO_IR 192 and
  the name comes back intact. A request is never ``requested`` without its
  file, or else (after an edit) the page and the API say why it is missing.
"""

from __future__ import annotations

import os
import re
from html import unescape
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, RequestState, WorklistTemplate
from ghimaging.orthanc import servers
from ghimaging.worklists import file_status, selftest, templates
from tests.support.orthanc import WORKLISTS_PLUGIN, OrthancServer
from tests.test_worklist_mwl import FINDSCU, c_find, findscu, keys, query

# One name per script the issue lists; each is Family, Given.
NAMES = {
    "latin1": ("Núñez", "Begoña"),
    "greek": ("Παπαδόπουλος", "Γιώργος"),
    "cyrillic": ("Иванов", "Иван"),
    "japanese": ("山田", "太郎"),
    "korean": ("김", "민준"),
    "chinese": ("王", "小明"),
    "arabic": ("العلي", "أحمد"),
    "hebrew": ("כהן", "דוד"),
}


@pytest.fixture(autouse=True)
def _requires_modality_tools():
    """Missing parts fail, never skip: the test command installs them."""
    if not WORKLISTS_PLUGIN.exists():
        pytest.fail("Orthanc's worklists plugin is missing: `bash deploy/test.sh` installs Debian's orthanc")
    if not os.access(FINDSCU, os.X_OK):
        pytest.fail("dcmtk's findscu is missing: `bash deploy/test.sh` installs Debian's dcmtk")


@pytest.fixture
def app_config(tmp_path):
    """ghimaging writes into the very folder Orthanc reads (Worklists.Database)."""
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def folder(app) -> Path:
    return Path(app.config["WORKLIST_DIR"])


@pytest.fixture
def start_orthanc(tmp_path):
    started = []

    def start(**kw) -> OrthancServer:
        kw.setdefault("worklist_dir", tmp_path / "worklists")
        server = OrthancServer(tmp_path / f"orthanc{len(started)}", worklists=True, **kw)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


def add_row(orthanc: OrthancServer):
    row = servers.add_server(label="Main", url=orthanc.url, username=orthanc.username, password=orthanc.password)
    db.session.commit()  # the pages' sessions see it
    return row


@pytest.fixture
def world(create_patient, create_request, catalog, doc):
    """One submitted chest X-ray (general template, ISO_IR 192) per script."""
    out = {}
    for script, (family, given) in NAMES.items():
        patient = create_patient(puid=f"PID-{script.upper()}", family_name=family, given_name=given)
        out[script] = create_request(patient, catalog["chest"], physician=doc, submit=True)
    return out


def html_of(response) -> str:
    return unescape(response.get_data(as_text=True))


# -- Orthanc at Latin1 ------------------------------------------------------------

def test_a_latin1_orthanc_is_warned_about_on_every_page_and_in_the_api(start_orthanc, app, admin, api, world):
    orthanc = start_orthanc()  # Debian's default: DefaultEncoding Latin1
    row = add_row(orthanc)
    assert row.default_encoding == "Latin1"  # read from GET /tools/default-encoding by the check

    body = api("admin").get(f"/api/v1/orthanc/servers/{row.id}").get_json()
    assert body["default_encoding"] == "Latin1"
    assert len(body["warnings"]) == 2
    general, register = body["warnings"]
    assert "encoding" in general and '"DefaultEncoding": "Utf8"' in general and "Latin1" in general
    # Seven of the eight register names do not fit Latin-1 (Núñez does).
    assert "encoding" in register and register.startswith("7 patient name(s)")
    assert '"DefaultEncoding": "Utf8"' in register
    listed = api("admin").get("/api/v1/orthanc/servers").get_json()["items"]
    assert listed[0]["warnings"] == body["warnings"]

    for page in (f"/orthanc/servers/{row.id}", "/orthanc/servers", "/admin/worklists/"):
        html = html_of(admin.get(page))
        assert '"DefaultEncoding": "Utf8"' in html, page
        assert "7 patient name(s) in the register" in html, page


def test_a_latin1_orthanc_warns_even_with_an_all_latin_register(start_orthanc, app, api, create_patient):
    """Latin1 cannot hold non-Latin names: said before the first one arrives."""
    create_patient(family_name="Müller", given_name="Jürgen")
    row = add_row(start_orthanc())
    warnings = api("admin").get(f"/api/v1/orthanc/servers/{row.id}").get_json()["warnings"]
    assert len(warnings) == 1 and "encoding" in warnings[0] and "Cyrillic" in warnings[0]


def test_self_test_on_a_latin1_orthanc_turns_red_and_lists_the_damaged_names(start_orthanc, app, admin, world):
    orthanc = start_orthanc()
    row = add_row(orthanc)
    result = selftest.self_test(row, app.config["WORKLIST_DIR"])
    assert not result.ok
    assert "8 worklist item(s) found" in result.message and "differ from the database" in result.message
    assert "DefaultEncoding" in result.hint
    damaged = {script for script, req in world.items()
               if any(d.startswith(req.accession_number + ": PatientName") for d in result.differences)}
    assert damaged == set(NAMES) - {"latin1"}  # Núñez^Begoña survives Latin-1
    # Each difference shows what the modality got and what the register has.
    cyrillic = next(d for d in result.differences if d.startswith(world["cyrillic"].accession_number))
    assert "Иванов^Иван" in cyrillic
    # What the modality really received: the name is not intact.
    [item] = c_find(orthanc, query(accession=world["cyrillic"].accession_number))
    assert str(item.PatientName) != "Иванов^Иван"

    r = admin.post("/admin/worklists/test", {"server_id": str(row.id)}, token_from="/admin/worklists/")
    html = html_of(r)
    assert r.status_code == 200
    block = re.search(r'<div class="flash (flash-\w+)"[^>]*id="selftest-result">(.*?)</div>', html, re.S)
    assert block and block.group(1) == "flash-error"
    assert "differ from the database" in block.group(2)
    for script in set(NAMES) - {"latin1"}:
        family, given = NAMES[script]
        assert f"{family}^{given}" in block.group(2), script


# -- Orthanc at Utf8 --------------------------------------------------------------

def test_every_script_comes_back_intact_from_a_utf8_orthanc(start_orthanc, app, api, world, tmp_path):
    orthanc = start_orthanc(default_encoding="Utf8")
    row = add_row(orthanc)
    assert row.default_encoding == "Utf8"
    assert api("admin").get(f"/api/v1/orthanc/servers/{row.id}").get_json()["warnings"] == []

    answers = {str(i.AccessionNumber): i for i in c_find(orthanc, query())}
    dcmtk = {str(i.AccessionNumber): i for i in findscu(orthanc, keys(), tmp_path / "rsp")}
    for script, req in world.items():
        expected = "^".join(NAMES[script])
        assert str(answers[req.accession_number].PatientName) == expected, ("pynetdicom", script)
        assert str(dcmtk[req.accession_number].PatientName) == expected, ("findscu", script)
        assert answers[req.accession_number].PatientID == dcmtk[req.accession_number].PatientID == req.patient.puid

    result = selftest.self_test(row, app.config["WORKLIST_DIR"])
    assert result.ok, result.differences
    assert result.differences == [] and "8 worklist item(s) found" in result.message


def test_self_test_lists_an_item_nobody_ordered(start_orthanc, app, folder, world):
    """A .wl written by something else is not in the register: red."""
    orthanc = start_orthanc(default_encoding="Utf8")
    src = folder / f"{world['greek'].accession_number}.wl"
    foreign = pydicom.dcmread(src)
    foreign.AccessionNumber = "FOREIGN1"
    foreign.save_as(folder / "foreign.wl")
    result = selftest.self_test(add_row(orthanc), str(folder))
    assert not result.ok
    assert [d for d in result.differences if "FOREIGN1" in d and "no request" in d]


# -- a name the template cannot hold -----------------------------------------------

@pytest.fixture
def latin1_chest(catalog):
    """The chest X-ray is written with the shipped ISO_IR 100 template."""
    templates.load_shipped()
    catalog["chest"].worklist_template = "latin1"
    db.session.commit()
    return catalog["chest"]


def set_fallback(on: bool) -> None:
    tpl = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "latin1"))
    templates.save(tpl, name=tpl.name, body=tpl.body, charset=tpl.charset, encoding=tpl.encoding,
                   comment=tpl.comment, utf8_fallback=on)
    assert tpl.origin == "shipped"  # only the fallback changed: still refreshed by `init`


def request_count() -> int:
    return db.session.scalar(select(func.count()).select_from(ImagingRequest))


def assert_never_requested_without_a_file(folder: Path) -> None:
    """Every requested request has its file, or says why it has none."""
    db.session.expire_all()
    for req in db.session.scalars(select(ImagingRequest).where(ImagingRequest.state == "requested")):
        if not (folder / f"{req.accession_number}.wl").exists():
            assert req.worklist_problem, f"{req.accession_number} is requested without a file, silently"
            assert file_status(req).state == "missing"


def test_submit_is_refused_when_the_template_cannot_hold_the_name(app, folder, latin1_chest, create_patient,
                                                                   create_request, doc, login, api):
    patient = create_patient(puid="PID-LS", family_name="Łukasiewicz", given_name="Şule")
    req = create_request(patient, latin1_chest, physician=doc)
    page = login("doc")

    # The request page's Submit button.
    r = page.post(f"/requests/{req.id}/submit", token_from=f"/requests/{req.id}", follow_redirects=True)
    html = html_of(r)
    assert "Not submitted" in html
    assert "‘Ł’ (U+0141)" in html and "‘Ş’ (U+015E)" in html and "PatientName" in html
    assert "‘latin1’" in html and "ISO_IR 100" in html and "ISO_IR 192" in html
    assert "not offered to the modality" in html

    # The API.
    r = api("physician").post(f"/api/v1/requests/{req.id}/submit")
    assert r.status_code == 422
    body = r.get_json()
    assert body["error"] == "worklist_charset" and body["template"] == "latin1"
    assert body["characters"] == ["Ł", "Ş"]
    assert "Ł" in body["message"] and "latin1" in body["message"]

    # create_order(submit=True): the whole order is refused, nothing is saved.
    before = request_count()
    with pytest.raises(workflow.WorklistRefused) as err:
        workflow.create_order(patient, [latin1_chest], user=doc, physician=doc, submit=True)
    db.session.rollback()  # the test is the boundary: a failed call is rolled back
    assert err.value.code == "worklist_charset" and err.value.characters == ["Ł", "Ş"]
    assert request_count() == before

    # POST /api/v1/requests with submit: the same, as 422.
    r = api("physician").post("/api/v1/requests", json={"patient_id": patient.id, "test_code": "XR-CHEST",
                                                         "submit": True})
    assert r.status_code == 422 and r.get_json()["error"] == "worklist_charset"
    assert request_count() == before

    # The order form: an error on the page, nothing saved.
    r = page.post("/requests/new", {"patient": patient.puid, "tests": str(latin1_chest.id), "physician": str(doc.id),
                                    "action": "submit"}, token_from="/requests/new")
    html = html_of(r)
    assert r.status_code == 400 and 'id="worklist-error"' in html and "‘Ł’ (U+0141)" in html
    assert request_count() == before

    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    assert req.state == RequestState.DRAFT.value
    assert not (folder / f"{req.accession_number}.wl").exists()
    assert not folder.exists() or list(folder.glob("*.wl")) == []
    assert api("physician").get(f"/api/v1/requests/{req.id}").get_json()["worklist"]["state"] == "not_offered"
    # Saving as a draft is still possible.
    r = page.post("/requests/new", {"patient": patient.puid, "tests": str(latin1_chest.id), "physician": str(doc.id),
                                    "action": "draft"}, token_from="/requests/new")
    assert r.status_code == 302 and request_count() == before + 1
    assert_never_requested_without_a_file(folder)


def test_with_the_fallback_the_file_is_utf8_and_the_name_comes_back_intact(start_orthanc, app, folder,
                                                                           latin1_chest, create_patient,
                                                                           create_request, doc, login, api,
                                                                           tmp_path, admin):
    orthanc = start_orthanc(default_encoding="Utf8")
    set_fallback(True)
    patient = create_patient(puid="PID-LS", family_name="Łukasiewicz", given_name="Şule")
    plain = create_patient(puid="PID-MJ", family_name="Müller", given_name="Jürgen")
    req = create_request(patient, latin1_chest, physician=doc)
    r = api("physician").post(f"/api/v1/requests/{req.id}/submit")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["state"] == "requested"
    assert body["worklist"]["state"] == "written" and body["worklist"]["charset"] == "ISO_IR 192"
    assert body["worklist"]["written_at"]

    ds = pydicom.dcmread(folder / f"{req.accession_number}.wl")
    assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == "Łukasiewicz^Şule"
    # A name that fits stays in the template's own set.
    other = create_request(plain, latin1_chest, physician=doc, submit=True)
    assert pydicom.dcmread(folder / f"{other.accession_number}.wl").SpecificCharacterSet == "ISO_IR 100"

    wl = api("technologist").get(f"/api/v1/requests/{req.id}/worklist").get_json()
    assert wl["fallback"] is True and wl["charset"] == "ISO_IR 192" and wl["template_charset"] == "ISO_IR 100"
    assert wl["warnings"][0].startswith("Written in ISO_IR 192 (UTF-8), not ISO_IR 100")
    html = html_of(login("doc").get(f"/requests/{req.id}"))
    assert 'id="worklist-fallback"' in html and "in the worklist" in html
    assert "ISO_IR" not in html  # the character set is for those who manage worklists
    assert re.search(r"written .*? in <code>ISO_IR 192</code>", html_of(admin.get(f"/requests/{req.id}")))

    [item] = c_find(orthanc, query(accession=req.accession_number))
    assert str(item.PatientName) == "Łukasiewicz^Şule"
    [item] = findscu(orthanc, keys(accession=req.accession_number), tmp_path / "rsp")
    assert str(item.PatientName) == "Łukasiewicz^Şule"

    # Turned off again: the next such submit is refused.
    set_fallback(False)
    again = create_request(patient, latin1_chest, physician=doc)
    with pytest.raises(workflow.WorklistRefused):
        workflow.submit(again, doc)
    assert_never_requested_without_a_file(folder)


def test_an_edit_that_the_template_cannot_hold_is_refused(app, folder, latin1_chest, create_patient,
                                                           create_request, doc, make_user, login):
    """Editing a requested request rewrites its item, or is not saved."""
    polish = make_user("lz", "physician", full_name="Łucja Żak")
    req = create_request(create_patient(family_name="Meyer", given_name="Ann"), latin1_chest, physician=doc,
                         submit=True)
    with pytest.raises(workflow.WorklistRefused) as err:
        workflow.update_request(req, user=doc, physician=polish, urgent=True, clinical_context="", comment="",
                                scheduled_at=None)
    db.session.rollback()  # the test is the boundary: a failed call is rolled back
    assert "Ł" in err.value.message and "RequestingPhysician" in err.value.message
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    assert req.requesting_physician_id == doc.id and req.urgent is False
    assert pydicom.dcmread(folder / f"{req.accession_number}.wl").ReferringPhysicianName == "House^Gregory"
    r = login("doc").post(f"/requests/{req.id}/edit", {"physician": str(polish.id), "urgent": "y"},
                          token_from=f"/requests/{req.id}/edit")
    assert r.status_code == 400 and 'id="worklist-error"' in html_of(r) and "Not saved" in html_of(r)
    assert_never_requested_without_a_file(folder)


def test_a_patient_edit_the_template_cannot_hold_says_why_the_file_is_missing(app, folder, latin1_chest,
                                                                             create_patient, create_request,
                                                                             doc, login, api):
    """The register must take the corrected name; the stale item (with the
    old name) leaves the worklist, and the request says why, for good."""
    from ghimaging.patients.service import update_patient

    patient = create_patient(puid="PID-K", family_name="Kowalski", given_name="Jan")
    req = create_request(patient, latin1_chest, physician=doc, submit=True)
    path = folder / f"{req.accession_number}.wl"
    assert path.exists()
    update_patient(patient, {"puid": patient.puid, "family_name": "Kowałski", "given_name": "Jan",
                             "birth_date": patient.birth_date, "sex": patient.sex})
    db.session.commit()  # the test is the boundary
    assert not path.exists()
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    assert req.state == "requested" and "‘ł’ (U+0142)" in req.worklist_problem
    assert req.events[-1].action == "worklist" and "‘ł’" in req.events[-1].note

    detail = api("physician").get(f"/api/v1/requests/{req.id}").get_json()
    assert detail["worklist"]["state"] == "missing" and "‘ł’ (U+0142)" in detail["worklist"]["reason"]
    assert api("physician").get(f"/api/v1/requests/{req.id}/worklist").get_json()["file"]["state"] == "missing"
    html = html_of(login("doc").get(f"/requests/{req.id}"))
    assert "file missing" in html and "‘ł’ (U+0142)" in html and "The modality finds it" not in html
    assert "the modality does not find it" in html
    assert_never_requested_without_a_file(folder)

    # The template is switched to fall back: saving the test rewrites the item.
    set_fallback(True)
    from ghimaging.catalog.service import save_test

    save_test(latin1_chest, code=latin1_chest.code, name=latin1_chest.name, modality=latin1_chest.modality,
              ae_title=latin1_chest.ae_title, worklist_template="latin1")
    assert str(pydicom.dcmread(path).PatientName) == "Kowałski^Jan"
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).worklist_problem == ""


def test_a_test_edit_that_loses_waiting_items_is_said_on_the_catalogue_page(app, folder, catalog, create_patient,
                                                                           create_request, doc, admin):
    templates.load_shipped()
    req = create_request(create_patient(family_name="Иванов", given_name="Иван"), catalog["chest"], physician=doc,
                         submit=True)
    t = catalog["chest"]
    from tests.test_catalog import imaging_test_form

    r = admin.post(f"/catalog/tests/{t.id}", imaging_test_form(code=t.code, name=t.name,
                                                               modality=str(t.modality_id), ae_title="XRAY1",
                                                               worklist_template="latin1"),
                   token_from=f"/catalog/tests/{t.id}", follow_redirects=True)
    html = html_of(r)
    assert "1 waiting request of this test is no longer in the worklist" in html and "‘И’" in html
    assert not (folder / f"{req.accession_number}.wl").exists()
    assert_never_requested_without_a_file(folder)


def test_a_folder_that_refuses_the_file_keeps_the_request_a_draft(app, tmp_path, create_request, doc, api):
    """The folder is a plain file here: writing into it fails for real."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    app.config["WORKLIST_DIR"] = str(blocker)
    req = create_request(physician=doc)
    r = api("physician").post(f"/api/v1/requests/{req.id}/submit")
    assert r.status_code == 503 and r.get_json()["error"] == "worklist_unwritable"
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).state == "draft"
    detail = api("physician").get(f"/api/v1/requests/{req.id}")
    assert detail.status_code == 200 and detail.get_json()["state"] == "draft"


def test_self_test_reads_the_encoding_orthanc_answers_with_now(start_orthanc, app, api, world):
    """PUT /tools/default-encoding changes Orthanc's encoding until restart:
    the self-test reads it again, so its verdict and the warnings agree."""
    orthanc = start_orthanc()
    row = add_row(orthanc)
    assert row.default_encoding == "Latin1"
    assert orthanc.session.put(orthanc.url + "/tools/default-encoding", data="Utf8", timeout=10).status_code == 200
    result = selftest.self_test(row, app.config["WORKLIST_DIR"])
    assert result.ok, result.differences
    db.session.expire_all()
    assert api("admin").get(f"/api/v1/orthanc/servers/{row.id}").get_json()["warnings"] == []
