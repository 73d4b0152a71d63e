"""DICOM person names are shown whole: every component group (alphabetic,
ideographic, phonetic) on every page, in the print and in the API, by one
function (``ghimaging.ui.dicom_name``), from names stored in a real Orthanc
1.10.1."""

from __future__ import annotations

import re
from datetime import date

import pytest

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest
from ghimaging.orthanc import sync
from ghimaging.orthanc.matching import studies_of
from ghimaging.ui import dicom_name
from tests.support import dicomgen

HONG = "Hong^Gildong=洪^吉洞=홍^길동"
HONG_SHOWN = "Hong, Gildong (洪 吉洞 · 홍 길동)"


@pytest.mark.parametrize("raw,shown", [
    ("MUELLER^ANNA", "MUELLER, ANNA"),
    ("Müller^Jürgen", "Müller, Jürgen"),
    (HONG, HONG_SHOWN),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou (山田 太郎 · やまだ たろう)"),
    ("Wang^XiaoDong=王^小東=", "Wang, XiaoDong (王 小東)"),  # phonetic group empty
    ("Hong^Gildong==홍^길동", "Hong, Gildong (홍 길동)"),  # ideographic group empty
    ("=洪^吉洞=홍^길동", "洪 吉洞 (홍 길동)"),  # no alphabetic group: the next one leads
    ("Smith^John^^^", "Smith, John"),  # trailing separators
    ("Smith^John=", "Smith, John"),
    ("Smith^^^^=", "Smith"),
    ("^^^", ""),  # empty groups: nothing, so pages can say "(no name)"
    ("^^^^=^=", ""),
    ("", ""),
    (None, ""),
    ("^John", "John"),
    ("Smith^Jane^Ann^Dr.^Jr.", "Smith, Dr. Jane Ann, Jr."),
    ("Smith^^^^Jr.", "Smith Jr."),
    ("  Doe ^ John  Paul ", "Doe, John Paul"),
    ("John Smith", "John Smith"),  # not PN-shaped: as it is
    ("Doe^John\\Doe^Jane", "Doe, John; Doe, Jane"),  # two values
])
def test_a_person_name_is_shown_whole_and_without_separators(raw, shown):
    assert dicom_name(raw) == shown
    assert "^" not in dicom_name(raw) and "=" not in dicom_name(raw)


def test_the_jinja_filter_is_the_same_function(app):
    assert app.jinja_env.filters["dicomname"] is dicom_name


# -- end to end: from Orthanc to every page ------------------------------------------------------

@pytest.fixture
def staff(make_user):
    return {"doc": make_user("doc", "physician"), "rad": make_user("rad", "radiologist")}


@pytest.fixture
def linked(app, orthanc, orthanc_row, staff, create_patient, create_request):
    """A request and its study, whose images carry the three-group name;
    linked by the sync (same PUID, StudyInstanceUID and accession)."""
    patient = create_patient(family_name="Hong", given_name="Gildong")
    req = create_request(patient, submit=True, user=staff["doc"], physician=staff["doc"])
    orthanc.upload(dicomgen.make_instance(patient.puid, HONG, req.study_instance_uid,
                                          accession=req.accession_number, referring="Kim^Minji=金^敏智=김^민지",
                                          study_description="CHEST PA", rows=16, cols=16))
    assert sync.run(orthanc_row.id, mode="full").error == ""
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    links = studies_of(req)
    assert len(links) == 1
    return req, links[0].study


def test_orthanc_keeps_every_group_and_so_does_the_mirror(linked, orthanc):
    _req, study = linked
    assert orthanc.get(f"/studies/{study.orthanc_id}")["PatientMainDicomTags"]["PatientName"] == HONG
    assert study.patient_name == HONG


def test_study_page_shows_the_name_whole(linked, login):
    _req, study = linked
    html = login("rad").get(f"/orthanc/studies/{study.id}").get_data(as_text=True)
    patient = re.search(r"<dt>Patient</dt><dd>([^<]*)<br>", html).group(1)
    assert patient == HONG_SHOWN
    referring = re.search(r"<dt>Referring</dt><dd>([^<]*)</dd>", html).group(1)
    assert referring == "Kim, Minji (金 敏智 · 김 민지)"


def test_studies_list_and_orthanc_patient_page_show_the_name_whole(linked, login):
    _req, study = linked
    rad = login("rad")
    assert HONG_SHOWN in rad.get("/orthanc/studies").get_data(as_text=True)
    assert HONG_SHOWN in rad.get("/orthanc/patients").get_data(as_text=True)
    html = rad.get(f"/orthanc/patients/{study.patient_row_id}").get_data(as_text=True)
    assert re.search(r"<h1>([^<]*) <code>", html).group(1) == HONG_SHOWN
    assert f"<title>{HONG_SHOWN}" in html


def test_result_page_and_print_name_the_patient_of_the_images_whole(linked, login, staff):
    req, _study = linked
    result = workflow.create_result(req, staff["rad"], radiologist=staff["rad"], result_date=date.today(),
                                    report="No acute findings.")
    db.session.commit()  # the pages below are another session
    rad = login("rad")
    page = rad.get(f"/results/{result.id}").get_data(as_text=True)
    assert f"Images of {HONG_SHOWN}" in page
    printed = rad.get(f"/results/{result.id}/print").get_data(as_text=True)
    row = re.search(r'<tr class="study"><th>Images</th><td colspan="3">([^<]*)</td></tr>', printed)
    assert row, "the print names the studies it reports on"
    assert f"images of {HONG_SHOWN}, ID {req.patient.puid}" in row.group(1)
    assert f"accession {req.accession_number}" in row.group(1)


def test_api_gives_the_raw_name_and_its_display_form(linked, api):
    req, _study = linked
    got = api("radiologist").get(f"/api/v1/requests/{req.id}").json
    assert len(got["studies"]) == 1
    item = got["studies"][0]
    assert item["patient_name"] == HONG and item["patient_name_display"] == HONG_SHOWN
    assert item["patient_id"] == req.patient.puid


def test_api_study_gives_the_raw_name_and_its_display_form(linked, api):
    """Needs ``"patient_name_display"`` in ``orthanc.queries.study_json``
    (the study list, one study and the Inbox items are built by it)."""
    _req, study = linked
    client = api("radiologist")
    one = client.get(f"/api/v1/studies/{study.id}").json
    assert one["patient_name"] == HONG and one["patient_name_display"] == HONG_SHOWN
    listed = client.get("/api/v1/studies").json["items"]
    assert [(s["patient_name"], s["patient_name_display"]) for s in listed] == [(HONG, HONG_SHOWN)]
