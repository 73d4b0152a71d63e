"""Worklist content a modality expects (issue 8, part 5).

Orthanc answers a worklist C-FIND only with the elements the .wl file
holds, so the templates decide conformance to DICOM PS3.4 Table K.6-1
("Attributes for the Modality Worklist Information Model"). Every shipped
template is checked here by reading the answers of a real C-FIND
(pynetdicom, and dcmtk's findscu for the default template) against a real
Orthanc 1.10.1: each Type 1 and Type 2 return key is in the answer, Type 1
keys with a value. Also: the procedure and protocol code sequences carry
the test's code; a test without a station AE title is refused; a value cut
to its VR's length is a warning on the request page and in the API.
"""

from __future__ import annotations

import os
from html import unescape

import pytest
from pydicom.dataset import Dataset

from ghimaging.catalog import service as catalog_service
from ghimaging.extensions import db
from ghimaging.models import ImagingTest
from ghimaging.worklists import templates
from ghimaging.worklists.variables import CODING_SCHEME
from tests.support.orthanc import WORKLISTS_PLUGIN, OrthancServer
from tests.test_worklist_mwl import FINDSCU, c_find, findscu

# PS3.4 Table K.6-1, return key types (SCP) of the keys outside the
# Scheduled Procedure Step item. "1C" keys are the ones ghimaging fulfils
# (SpecificCharacterSet, the description and the code sequence).
TOP_KEYS = {
    "SpecificCharacterSet": "1C",
    # Requested Procedure
    "RequestedProcedureID": "1", "RequestedProcedureDescription": "1C", "RequestedProcedureCodeSequence": "1C",
    "StudyInstanceUID": "1", "ReferencedStudySequence": "2", "RequestedProcedurePriority": "2",
    "PatientTransportArrangements": "2",
    # Imaging Service Request
    "AccessionNumber": "2", "RequestingPhysician": "2", "ReferringPhysicianName": "2",
    # Visit Identification, Status, Relationship
    "AdmissionID": "2", "CurrentPatientLocation": "2", "ReferencedPatientSequence": "2",
    # Patient Identification, Demographic, Medical
    "PatientName": "1", "PatientID": "1", "PatientBirthDate": "2", "PatientSex": "2", "PatientWeight": "2",
    "ConfidentialityConstraintOnPatientDataDescription": "2", "PatientState": "2", "PregnancyStatus": "2",
    "MedicalAlerts": "2", "Allergies": "2", "SpecialNeeds": "2",
    # Scheduled Procedure Step
    "ScheduledProcedureStepSequence": "1",
}
SPS_KEYS = {
    "ScheduledStationAETitle": "1", "ScheduledProcedureStepStartDate": "1", "ScheduledProcedureStepStartTime": "1",
    "Modality": "1", "ScheduledPerformingPhysicianName": "2", "ScheduledProcedureStepDescription": "1C",
    "ScheduledProtocolCodeSequence": "1C", "ScheduledStationName": "2", "ScheduledProcedureStepLocation": "2",
    "PreMedication": "2C", "RequestedContrastAgent": "2C", "ScheduledProcedureStepID": "1",
}
CODE_KEYS = ("CodeValue", "LongCodeValue", "CodingSchemeDesignator", "CodeMeaning")
SHIPPED = [e["name"] for e in templates.shipped()]


@pytest.fixture(autouse=True)
def _requires_modality_tools():
    if not WORKLISTS_PLUGIN.exists():
        pytest.fail("Orthanc's worklists plugin is missing: `bash deploy/test.sh` installs Debian's orthanc")
    if not os.access(FINDSCU, os.X_OK):
        pytest.fail("dcmtk's findscu is missing: `bash deploy/test.sh` installs Debian's dcmtk")


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def mwl(app, tmp_path):
    server = OrthancServer(tmp_path / "orthanc", worklists=True, worklist_dir=tmp_path / "worklists",
                           default_encoding="Utf8")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


def code_item() -> Dataset:
    item = Dataset()
    for kw in CODE_KEYS:
        setattr(item, kw, None)
    return item


def k61_query(accession: str) -> Dataset:
    """Every Table K.6-1 key as a return key (universal matching), as a
    modality that wants them all would ask."""
    ds = Dataset()
    for kw in TOP_KEYS:
        setattr(ds, kw, [] if kw.endswith("Sequence") else None)
    ds.AccessionNumber = accession
    ds.RequestedProcedureCodeSequence = [code_item()]
    sps = Dataset()
    for kw in SPS_KEYS:
        if not kw.endswith("Sequence"):
            setattr(sps, kw, None)
    sps.ScheduledProtocolCodeSequence = [code_item()]
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def missing_keys(item: Dataset, test: ImagingTest) -> list[str]:
    """Table K.6-1 keys absent from an answer, or Type 1 keys without a value."""
    out = []

    def check(ds: Dataset, table: dict[str, str], where: str) -> None:
        for kw, typ in table.items():
            if kw not in ds:
                out.append(f"{where}{kw} (Type {typ}) absent")
            elif typ in ("1", "1C") and (ds.get(kw) in (None, "") or (kw.endswith("Sequence") and not len(ds.get(kw)))):
                out.append(f"{where}{kw} (Type {typ}) empty")

    check(item, TOP_KEYS, "")
    if "ScheduledProcedureStepSequence" in item and len(item.ScheduledProcedureStepSequence) == 1:
        check(item.ScheduledProcedureStepSequence[0], SPS_KEYS, "ScheduledProcedureStepSequence > ")
    else:
        out.append("ScheduledProcedureStepSequence: not one item")
    return out


def the_code(seq) -> tuple[str, str, str]:
    assert len(seq) == 1
    item = seq[0]
    value = item.get("CodeValue") or item.get("LongCodeValue")
    return str(value), str(item.CodingSchemeDesignator), str(item.CodeMeaning)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_template_answers_every_type_1_and_2_key_of_table_k61(mwl, app, catalog, create_patient,
                                                                           create_request, doc, name):
    templates.load_shipped()
    catalog["chest"].worklist_template = name
    db.session.commit()
    req = create_request(create_patient(family_name="Meyer", given_name="Ann"), catalog["chest"], physician=doc,
                         submit=True)
    [item] = c_find(mwl, k61_query(req.accession_number))
    assert missing_keys(item, catalog["chest"]) == []
    assert the_code(item.RequestedProcedureCodeSequence) == ("XR-CHEST", CODING_SCHEME, "Chest X-ray PA")
    step = item.ScheduledProcedureStepSequence[0]
    assert the_code(step.ScheduledProtocolCodeSequence) == ("XR-CHEST", CODING_SCHEME, "Chest X-ray PA")
    assert item.RequestedProcedurePriority == "ROUTINE"
    assert item.ReferencedStudySequence == [] and item.ReferencedPatientSequence == []


def test_findscu_reads_the_same_keys_from_the_default_template(mwl, app, catalog, create_patient, create_request,
                                                               doc, tmp_path):
    req = create_request(create_patient(family_name="Meyer", given_name="Ann"), catalog["chest"], physician=doc,
                         submit=True)
    keys = [f"AccessionNumber={req.accession_number}"]
    keys += [kw for kw in TOP_KEYS if kw not in ("AccessionNumber", "ScheduledProcedureStepSequence",
                                                 "RequestedProcedureCodeSequence")]
    keys += [f"RequestedProcedureCodeSequence[0].{kw}" for kw in CODE_KEYS]
    keys += [f"ScheduledProcedureStepSequence[0].{kw}" for kw in SPS_KEYS if kw != "ScheduledProtocolCodeSequence"]
    keys += [f"ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence[0].{kw}" for kw in CODE_KEYS]
    [item] = findscu(mwl, keys, tmp_path / "rsp")
    assert missing_keys(item, catalog["chest"]) == []
    assert the_code(item.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence) == (
        "XR-CHEST", CODING_SCHEME, "Chest X-ray PA")


def test_a_test_code_longer_than_16_characters_is_a_long_code_value(mwl, app, catalog, create_patient,
                                                                    create_request, doc):
    """CodeValue is SH (16 characters); a longer code goes whole into
    LongCodeValue (UC) rather than being cut into another test's code."""
    test = catalog_service.save_test(None, code="XR-CHEST-PA-LATERAL-2V", name="Chest X-ray PA and lateral",
                                     modality=catalog["chest"].modality, ae_title="XRAY1")
    req = create_request(create_patient(), test, physician=doc, submit=True)
    [item] = c_find(mwl, k61_query(req.accession_number))
    code = item.RequestedProcedureCodeSequence[0]
    assert "CodeValue" not in code and code.LongCodeValue == "XR-CHEST-PA-LATERAL-2V"
    assert the_code(item.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence)[0] == \
        "XR-CHEST-PA-LATERAL-2V"


# -- a test without a station ------------------------------------------------------

def test_a_test_without_a_station_ae_title_is_refused_everywhere(app, catalog, make_user, login, api):
    with pytest.raises(catalog_service.CatalogError) as err:
        catalog_service.save_test(None, code="CT-HEAD", name="CT head", modality=catalog["chest"].modality,
                                  ae_title="  ")
    assert err.value.field == "ae_title" and "required" in str(err.value)
    with pytest.raises(catalog_service.CatalogError):
        t = catalog["chest"]
        catalog_service.save_test(t, code=t.code, name=t.name, modality=t.modality, ae_title="")
    db.session.expire_all()
    assert catalog["chest"].ae_title == "XRAY1"

    make_user("boss", "admin")
    from tests.test_catalog import imaging_test_form

    r = login("boss").post("/catalog/tests/new", imaging_test_form(ae_title=""), token_from="/catalog/tests/new")
    html = unescape(r.get_data(as_text=True))
    assert r.status_code == 400 and "scheduled station AE title is required" in html

    r = api("admin").post("/api/v1/tests", json={"code": "CT-HEAD", "name": "CT head", "modality": "CT"})
    assert r.status_code == 422 and "ae_title" in r.get_json()["fields"]
    assert catalog_service.test_by_code("CT-HEAD") is None


# -- a value cut to its VR length ---------------------------------------------------

def test_a_value_cut_to_its_vr_length_is_a_warning_on_the_request_page_and_in_the_api(app, catalog, create_patient,
                                                                                     create_request, doc, login, api):
    long_name = "Chest X-ray PA and lateral with inspiration and expiration views, both sides"  # 76 characters
    test = catalog_service.save_test(None, code="XR-CHEST-LONG", name=long_name, modality=catalog["chest"].modality,
                                     ae_title="XRAY1")
    family = "Wolfeschlegelsteinhausenbergerdorffwelchevoralternwarengewissenhaftschaferswessen"  # 80
    req = create_request(create_patient(family_name=family, given_name="Hubert"), test, physician=doc, submit=True)
    html = unescape(login("doc").get(f"/requests/{req.id}").get_data(as_text=True))
    assert 'id="worklist-warnings"' in html
    assert "RequestedProcedureDescription is cut to 64 characters (LO)" in html
    assert "PatientName is cut to 64 characters (PN)" in html
    assert f"“{long_name[:64].strip()}”" in html
    warnings = api("technologist").get(f"/api/v1/requests/{req.id}/worklist").get_json()["warnings"]
    assert any(w.startswith("RequestedProcedureDescription is cut") for w in warnings)
    assert any(w.startswith("PatientName is cut") for w in warnings)

    plain = create_request(create_patient(family_name="Meyer"), catalog["chest"], physician=doc, submit=True)
    html = unescape(login("doc").get(f"/requests/{plain.id}").get_data(as_text=True))
    assert 'id="worklist-warnings"' not in html
