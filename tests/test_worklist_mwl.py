"""What a modality sees: submitted requests queried from a real Orthanc
1.10.1 (worklists plugin on the folder ghimaging writes) with a Modality
Worklist C-FIND, by pynetdicom and by dcmtk's findscu, and the self-test on
the worklist settings page."""

from __future__ import annotations

import os
import subprocess
from datetime import date, datetime
from html import unescape
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind

from ghimaging.extensions import db
from ghimaging.imaging import numbers, workflow
from ghimaging.models import ImagingRequest
from ghimaging.orthanc import servers
from ghimaging.worklists import selftest, templates, writer
from tests.support.orthanc import WORKLISTS_PLUGIN, OrthancServer

# pynetdicom installs its own `findscu` console script, which comes first on
# PATH here; the modality tool we want is dcmtk's.
FINDSCU = "/usr/bin/findscu"
@pytest.fixture(autouse=True)
def _requires_worklists_plugin():
    """Missing parts fail, never skip: the test command installs them."""
    if not WORKLISTS_PLUGIN.exists():
        pytest.fail("Orthanc's worklists plugin is missing: `bash deploy/test.sh` installs Debian's orthanc")


@pytest.fixture
def _requires_findscu():
    if not os.access(FINDSCU, os.X_OK):
        pytest.fail("dcmtk's findscu is missing: `bash deploy/test.sh` installs Debian's dcmtk")


needs_findscu = pytest.mark.usefixtures("_requires_findscu")


@pytest.fixture
def app_config(tmp_path):
    """ghimaging writes into the very folder Orthanc reads (Worklists.Database)."""
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def start_orthanc(tmp_path):
    """``start_orthanc(**kw)``: a real Orthanc whose worklist folder is the app's."""
    started = []

    def start(**kw) -> OrthancServer:
        kw.setdefault("worklist_dir", tmp_path / "worklists")
        server = OrthancServer(tmp_path / f"orthanc{len(started)}", **kw)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def mwl(app, start_orthanc):
    """Orthanc as Debian configures it (DefaultEncoding Latin1) plus the plugin."""
    return start_orthanc(worklists=True)


@pytest.fixture
def mwl_utf8(app, start_orthanc):
    """DefaultEncoding Utf8: under Orthanc's default (Latin1) every worklist
    answer is transcoded to ISO_IR 100 and a Chinese name comes back as '^'."""
    return start_orthanc(worklists=True, default_encoding="Utf8")


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


# -- the modality's side -----------------------------------------------------

def query(*, accession="", name="", modality="", station="", day="", charset="") -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    for kw in ("PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "RequestedProcedureID",
               "RequestedProcedureDescription", "ReferringPhysicianName"):
        setattr(ds, kw, "")
    ds.PatientName = name
    ds.AccessionNumber = accession
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = station
    sps.ScheduledProcedureStepStartDate = day
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepID = ""
    sps.ScheduledProcedureStepDescription = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def c_find(orthanc: OrthancServer, ds: Dataset, calling_aet: str = "MODALITY1") -> list[Dataset]:
    """The worklist as pynetdicom gets it; fails unless Orthanc ends with Success."""
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established
    items, statuses = [], []
    try:
        for status, identifier in assoc.send_c_find(ds, ModalityWorklistInformationFind):
            statuses.append(status.Status if status is not None and "Status" in status else None)
            if statuses[-1] in (0xFF00, 0xFF01):
                items.append(identifier)
    finally:
        if assoc.is_established:
            assoc.release()
    assert statuses and statuses[-1] == 0x0000, f"C-FIND ended with {statuses[-1:]}\n{orthanc.log_tail()}"
    return items


def findscu(orthanc: OrthancServer, keys: list[str], out: Path) -> list[Dataset]:
    """The worklist as dcmtk's findscu gets it (answers extracted to files)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("rsp*.dcm"):
        old.unlink()
    args = [FINDSCU, "-W", "-X", "-od", str(out), "-aet", "MODALITY2", "-aec", orthanc.aet, "-to", "30",
            "127.0.0.1", str(orthanc.dicom_port)]
    for key in keys:
        args += ["-k", key]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


SPS = "ScheduledProcedureStepSequence[0]"
RETURN_KEYS = ["SpecificCharacterSet", "PatientName", "PatientID", "AccessionNumber", "StudyInstanceUID",
               "RequestedProcedureID", f"{SPS}.Modality", f"{SPS}.ScheduledStationAETitle",
               f"{SPS}.ScheduledProcedureStepStartDate", f"{SPS}.ScheduledProcedureStepStartTime",
               f"{SPS}.ScheduledProcedureStepID"]


def keys(**match: str) -> list[str]:
    """findscu -k arguments: every return key, some with a value to match."""
    names = {"accession": "AccessionNumber", "name": "PatientName", "modality": f"{SPS}.Modality",
             "station": f"{SPS}.ScheduledStationAETitle", "day": f"{SPS}.ScheduledProcedureStepStartDate"}
    given = {names[k]: v for k, v in match.items()}
    return [f"{k}={given[k]}" if k in given else k for k in RETURN_KEYS]


def accessions(items) -> list[str]:
    return sorted(str(i.AccessionNumber) for i in items)


def by_accession(items) -> dict[str, Dataset]:
    return {str(i.AccessionNumber): i for i in items}


@pytest.fixture
def scheduled(app, catalog, create_patient, create_request, doc):
    """Three requests: chest X-ray (CR, XRAY1) on two days, an ultrasound (US, US1)."""
    anna = create_patient(puid="PID-ANNA", family_name="Schmidt", given_name="Anna", birth_date=date(1980, 5, 6),
                          sex="F")
    bert = create_patient(puid="PID-BERT", family_name="Braun", given_name="Bert", birth_date=date(1975, 1, 2),
                          sex="M")
    return {
        "anna_cr": create_request(anna, catalog["chest"], physician=doc, submit=True,
                                  scheduled_at=datetime(2025, 3, 10, 8, 30)),
        "anna_us": create_request(anna, catalog["abd"], physician=doc, submit=True,
                                  scheduled_at=datetime(2025, 3, 10, 9, 45)),
        "bert_cr": create_request(bert, catalog["chest"], physician=doc, submit=True,
                                  scheduled_at=datetime(2025, 3, 11, 14, 0)),
        "draft": create_request(bert, catalog["abd"], physician=doc, scheduled_at=datetime(2025, 3, 10, 10, 0)),
    }


# -- the attributes ----------------------------------------------------------

def test_modality_finds_submitted_requests_with_their_attributes(mwl, scheduled):
    items = by_accession(c_find(mwl, query()))
    live = [scheduled[k] for k in ("anna_cr", "anna_us", "bert_cr")]
    assert sorted(items) == sorted(r.accession_number for r in live)  # the draft is not offered
    anna_cr = items[scheduled["anna_cr"].accession_number]
    assert str(anna_cr.PatientName) == "Schmidt^Anna"
    assert anna_cr.PatientID == "PID-ANNA"
    assert anna_cr.PatientBirthDate == "19800506" and anna_cr.PatientSex == "F"
    assert anna_cr.StudyInstanceUID == scheduled["anna_cr"].study_instance_uid
    assert anna_cr.RequestedProcedureID == scheduled["anna_cr"].accession_number
    assert anna_cr.RequestedProcedureDescription == "Chest X-ray PA"
    assert str(anna_cr.ReferringPhysicianName) == "House^Gregory"
    assert len(anna_cr.ScheduledProcedureStepSequence) == 1
    step = anna_cr.ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle) == ("CR", "XRAY1")
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == ("20250310", "083000")
    assert step.ScheduledProcedureStepID == scheduled["anna_cr"].accession_number
    assert step.ScheduledProcedureStepDescription == "Chest X-ray PA"
    us = items[scheduled["anna_us"].accession_number].ScheduledProcedureStepSequence[0]
    assert (us.Modality, us.ScheduledStationAETitle) == ("US", "US1")


@pytest.mark.parametrize("match, expected", [
    ({"modality": "US"}, ["anna_us"]),
    ({"modality": "CR"}, ["anna_cr", "bert_cr"]),
    ({"station": "XRAY1"}, ["anna_cr", "bert_cr"]),
    ({"station": "US1"}, ["anna_us"]),
    ({"station": "NOWHERE"}, []),
    ({"day": "20250310"}, ["anna_cr", "anna_us"]),
    ({"day": "20250311"}, ["bert_cr"]),
    ({"day": "20250311-20250331"}, ["bert_cr"]),
    ({"name": "Schm*"}, ["anna_cr", "anna_us"]),
    ({"name": "*^Bert"}, ["bert_cr"]),
    ({"name": "Braun^Bert"}, ["bert_cr"]),
    ({"name": "Nobody*"}, []),
    ({"modality": "CR", "day": "20250310"}, ["anna_cr"]),
])
def test_pynetdicom_query_filters(mwl, scheduled, match, expected):
    items = c_find(mwl, query(**match))
    assert accessions(items) == sorted(scheduled[k].accession_number for k in expected)


def test_pynetdicom_query_by_accession_number(mwl, scheduled):
    items = c_find(mwl, query(accession=scheduled["bert_cr"].accession_number))
    assert [str(i.PatientName) for i in items] == ["Braun^Bert"]


@needs_findscu
@pytest.mark.parametrize("match, expected", [
    ({}, ["anna_cr", "anna_us", "bert_cr"]),
    ({"modality": "US"}, ["anna_us"]),
    ({"station": "XRAY1"}, ["anna_cr", "bert_cr"]),
    ({"day": "20250311"}, ["bert_cr"]),
    ({"name": "Schm*"}, ["anna_cr", "anna_us"]),
    ({"modality": "CR", "day": "20250310"}, ["anna_cr"]),
])
def test_findscu_query_filters(mwl, scheduled, tmp_path, match, expected):
    items = findscu(mwl, keys(**match), tmp_path / "rsp")
    assert accessions(items) == sorted(scheduled[k].accession_number for k in expected)


@needs_findscu
def test_findscu_sees_the_same_attributes_as_pynetdicom(mwl, scheduled, tmp_path):
    req = scheduled["bert_cr"]
    [item] = findscu(mwl, keys(accession=req.accession_number), tmp_path / "rsp")
    assert (str(item.PatientName), item.PatientID, item.StudyInstanceUID) == ("Braun^Bert", "PID-BERT",
                                                                           req.study_instance_uid)
    step = item.ScheduledProcedureStepSequence[0]
    assert (step.Modality, step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate,
            step.ScheduledProcedureStepStartTime) == ("CR", "XRAY1", "20250311", "140000")
    [same] = c_find(mwl, query(accession=req.accession_number))
    assert same.StudyInstanceUID == item.StudyInstanceUID


# -- character sets ----------------------------------------------------------

@pytest.fixture
def use_template(catalog):
    """``use_template(name)``: the chest X-ray is written with that template."""

    def use(name: str) -> None:
        templates.load_shipped()
        catalog["chest"].worklist_template = name
        db.session.commit()

    return use


@needs_findscu
@pytest.mark.parametrize("encoding", [None, "Utf8"], ids=["orthanc-latin1", "orthanc-utf8"])
@pytest.mark.parametrize("template", ["general", "latin1"], ids=["ISO_IR_192", "ISO_IR_100"])
def test_mueller_juergen_comes_back_intact(start_orthanc, app, create_patient, create_request, use_template,
                                           tmp_path, template, encoding):
    orthanc = start_orthanc(worklists=True, default_encoding=encoding)
    use_template(template)
    patient = create_patient(puid="PID-MJ", family_name="Müller", given_name="Jürgen")
    req = create_request(patient, submit=True)
    on_disk = (Path(writer.folder()) / f"{req.accession_number}.wl").read_bytes()
    assert "Müller^Jürgen".encode("utf-8" if template == "general" else "latin-1") in on_disk
    [item] = c_find(orthanc, query(accession=req.accession_number))
    assert str(item.PatientName) == "Müller^Jürgen"
    [item] = c_find(orthanc, query(name="Müller*", charset="ISO_IR 192"))
    assert item.AccessionNumber == req.accession_number
    [item] = findscu(orthanc, keys(accession=req.accession_number), tmp_path / "rsp")
    assert str(item.PatientName) == "Müller^Jürgen"


@needs_findscu
def test_chinese_name_in_gb18030_comes_back_intact(mwl_utf8, create_patient, create_request, catalog, tmp_path):
    body = next(e["body"] for e in templates.shipped() if e["name"] == "general")
    templates.save(None, name="chinese", body=body, charset="GB18030", encoding="gb18030")
    catalog["chest"].worklist_template = "chinese"
    db.session.commit()
    req = create_request(create_patient(puid="PID-WANG", family_name="王", given_name="小明"), submit=True)
    on_disk = (Path(writer.folder()) / f"{req.accession_number}.wl").read_bytes()
    assert b"GB18030" in on_disk and "王^小明".encode("gb18030") in on_disk
    [item] = c_find(mwl_utf8, query(accession=req.accession_number))
    assert str(item.PatientName) == "王^小明"
    assert item.PatientID == "PID-WANG"
    [item] = findscu(mwl_utf8, keys(accession=req.accession_number), tmp_path / "rsp")
    assert str(item.PatientName) == "王^小明"


# -- hostile text ------------------------------------------------------------

def test_brackets_and_newlines_do_not_break_the_worklist(mwl, catalog, create_patient, create_request, scheduled):
    from ghimaging.extensions import db

    # The catalogue pages refuse a newline in a name; other roads (imports,
    # the database) may not, so the worklist must cope: set it directly.
    catalog["abd"].name = "Abdomen]\n(0010,0020) LO [EVIL"
    db.session.commit()
    odd = create_patient(puid="PID-ODD", family_name="O]Brien", given_name="[Jo]")
    req = create_request(odd, catalog["abd"], submit=True, comment="x]\n(0008,0050) SH [EVIL")
    items = by_accession(c_find(mwl, query()))
    assert len(items) == 4  # the three of `scheduled`, and this one
    item = items[req.accession_number]
    assert item.PatientID == "PID-ODD"
    assert str(item.PatientName).split("^")[0].split() == ["O", "Brien"]
    # The injected text stays inside its one value, as plain words.
    assert item.RequestedProcedureDescription == "Abdomen (0010,0020) LO EVIL"
    assert item.ScheduledProcedureStepSequence[0].Modality == "US"
    assert all(i.PatientID != "EVIL" and i.AccessionNumber != "EVIL" for i in items.values())


# -- the item goes away ------------------------------------------------------

def test_cancel_removes_the_item_from_the_answer(mwl, scheduled, doc):
    req = scheduled["anna_us"]
    assert req.accession_number in accessions(c_find(mwl, query()))
    workflow.cancel(req, doc, "patient declined")
    remaining = accessions(c_find(mwl, query()))
    assert req.accession_number not in remaining and len(remaining) == 2
    assert c_find(mwl, query(accession=req.accession_number)) == []


def test_a_result_removes_the_item_from_the_answer(mwl, scheduled, make_user):
    rad = make_user("rad", "radiologist")
    workflow.create_result(scheduled["bert_cr"], rad, radiologist=rad, result_date=date.today(), report="Normal.")
    assert accessions(c_find(mwl, query())) == sorted(scheduled[k].accession_number for k in ("anna_cr", "anna_us"))


def test_an_edit_is_what_the_modality_sees_next(mwl, scheduled, doc):
    req = scheduled["bert_cr"]
    workflow.update_request(req, user=doc, physician=doc, urgent=False, clinical_context="", comment="",
                            scheduled_at=datetime(2025, 4, 1, 16, 20))
    assert c_find(mwl, query(day="20250311")) == []
    [item] = c_find(mwl, query(day="20250401"))
    assert item.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "162000"


# -- scale -------------------------------------------------------------------

@needs_findscu
def test_a_thousand_live_items_still_answer_correctly(mwl, catalog, create_patient, tmp_path):
    """The requests go in with one commit and the folder is filled by
    `writer.rebuild()` (what `ghimaging worklists write` runs): three times
    faster than 1,000 submits, and the same files. dcmtk's findscu checks
    one item too (missing findscu fails the test)."""
    patients = [create_patient(puid=f"PID-{n:04d}", family_name=f"Family{n:04d}", given_name="Given")
                for n in range(50)]
    order = numbers.new_order_number()
    reqs = [ImagingRequest(order_number=order, patient=patients[n % 50], test=catalog["chest" if n % 2 else "abd"],
                           state="requested", accession_number=numbers.new_accession_number(),
                           study_instance_uid=numbers.new_study_uid(), scheduled_at=datetime(2025, 6, 1 + n % 20, 8))
            for n in range(1000)]
    db.session.add_all(reqs)
    db.session.commit()
    report = writer.rebuild()
    db.session.commit()  # as the command does
    assert (len(report.written), report.errors) == (1000, [])
    assert len(list(Path(writer.folder()).glob("*.wl"))) == 1000
    assert len(c_find(mwl, query())) == 1000
    target = reqs[777]
    [one] = c_find(mwl, query(accession=target.accession_number))
    assert one.StudyInstanceUID == target.study_instance_uid and one.PatientID == target.patient.puid
    assert len(c_find(mwl, query(modality="US"))) == 500
    assert len(c_find(mwl, query(name="Family0007^*"))) == 20
    assert len(c_find(mwl, query(modality="CR", day="20250602"))) == 50
    [one] = findscu(mwl, keys(accession=target.accession_number), tmp_path / "rsp")
    assert one.StudyInstanceUID == target.study_instance_uid


# -- the self-test -----------------------------------------------------------

def add_row(orthanc: OrthancServer):
    row = servers.add_server(label="Main", url=orthanc.url, username=orthanc.username, password=orthanc.password)
    db.session.commit()  # the pages' sessions see it
    return row


def test_self_test_shows_what_a_modality_sees(mwl, scheduled, app):
    result = selftest.self_test(add_row(mwl), app.config["WORKLIST_DIR"])
    assert result.ok, result.message
    assert accessions(result.items) == sorted(scheduled[k].accession_number for k in ("anna_cr", "anna_us", "bert_cr"))
    assert "3 worklist item(s)" in result.message


@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


def press_test_worklist(admin, row) -> tuple[int, str]:
    r = admin.post("/admin/worklists/test", {"server_id": str(row.id)}, token_from="/admin/worklists/")
    return r.status_code, unescape(r.get_data(as_text=True))


def test_test_worklist_button_lists_the_items(mwl, scheduled, admin):
    status, html = press_test_worklist(admin, add_row(mwl))
    assert status == 200
    assert "3 worklist item(s) found" in html
    for key in ("anna_cr", "anna_us", "bert_cr"):
        assert scheduled[key].accession_number in html
    assert "Schmidt^Anna" in html and "XRAY1" in html and "20250311" in html


def test_self_test_explains_a_refused_worklist_query(start_orthanc, app, scheduled, admin):
    orthanc = start_orthanc(worklists=True, always_allow_find_worklist=False)
    row = add_row(orthanc)
    result = selftest.self_test(row, app.config["WORKLIST_DIR"])
    assert not result.ok
    assert "DicomAlwaysAllowFindWorklist" in result.hint
    status, html = press_test_worklist(admin, row)
    assert status == 200
    assert "DicomAlwaysAllowFindWorklist" in html and scheduled["anna_cr"].accession_number not in html


def test_self_test_says_when_the_plugin_is_missing(start_orthanc, app, scheduled, admin):
    orthanc = start_orthanc(worklists=False, worklist_dir=None)
    row = add_row(orthanc)
    result = selftest.self_test(row, app.config["WORKLIST_DIR"])
    assert not result.ok
    assert "worklists plugin is not loaded" in result.message
    assert app.config["WORKLIST_DIR"] in result.hint
    status, html = press_test_worklist(admin, row)
    assert status == 200 and "worklists plugin is not loaded" in html


def test_self_test_says_when_orthanc_does_not_answer(start_orthanc, app, admin):
    orthanc = start_orthanc(worklists=True)
    row = add_row(orthanc)
    orthanc.kill()
    result = selftest.self_test(row, app.config["WORKLIST_DIR"])
    assert not result.ok and "No DICOM association" in result.message
