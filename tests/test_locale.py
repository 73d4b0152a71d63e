"""The clinic's time zone and date format (issue 13 §2): every time is
stored in UTC and shown, typed and sent to the modalities in the clinic's
zone; dates and DICOM values are formatted for people. With the clinic in
America/La_Paz (UTC-4 all year, no DST)."""

from __future__ import annotations

import re
from datetime import date, datetime
from html import unescape
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind  # type: ignore[attr-defined]
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import ImagingRequest
from ghimaging.settings import service as settings
from tests.support.orthanc import WORKLISTS_PLUGIN, OrthancServer


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


def set_clinic(**values: str) -> None:
    settings.save_clinic_settings(values)
    db.session.commit()


@pytest.fixture
def la_paz(app):
    set_clinic(time_zone="America/La_Paz")


@pytest.fixture
def doc_api(api):
    return api("physician")


@pytest.fixture
def staff(make_user, login):
    make_user("tech", "technologist")
    return login("tech")


def text_of(resp) -> str:
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", resp.get_data(as_text=True))))


def order(doc_api, patient, when: str) -> ImagingRequest:
    r = doc_api.post("/api/v1/requests", json={"patient_id": patient.id, "test_code": "XR-CHEST",
                                                "scheduled_at": when, "submit": True, "confirm_past": True})
    assert r.status_code == 201, r.get_json()
    return db.session.get(ImagingRequest, r.get_json()["id"])


def wl_file(app, req: ImagingRequest) -> pydicom.Dataset:
    return pydicom.dcmread(Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl")


def test_0900_in_la_paz_is_stored_as_1300_utc_and_shown_as_0900(app, la_paz, catalog, create_patient, doc_api,
                                                                  staff):
    req = order(doc_api, create_patient(), "2026-11-30T09:00")
    assert req.scheduled_at == datetime(2026, 11, 30, 13, 0)  # stored in UTC
    page = text_of(staff.get(f"/requests/{req.id}"))
    assert "2026-11-30 09:00" in page and "13:00" not in page
    listed = text_of(staff.get("/requests?state=requested"))
    assert req.accession_number in listed and "2026-11-30 09:00" in listed
    assert doc_api.get(f"/api/v1/requests/{req.id}").status_code == 200


def test_the_worklist_file_carries_the_local_date_time_and_minus_0400(app, la_paz, catalog, create_patient,
                                                                        doc_api):
    req = order(doc_api, create_patient(), "2026-11-30T09:00")
    ds = wl_file(app, req)
    step = ds.ScheduledProcedureStepSequence[0]
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == ("20261130", "090000")
    assert ds.TimezoneOffsetFromUTC == "-0400"


def test_an_offset_given_to_the_api_is_converted_to_the_clinic_zone(app, la_paz, catalog, create_patient,
                                                                      doc_api):
    req = order(doc_api, create_patient(), "2026-11-30T15:00+01:00")  # 14:00 UTC, 10:00 in La Paz
    assert req.scheduled_at == datetime(2026, 11, 30, 14, 0)
    step = wl_file(app, req).ScheduledProcedureStepSequence[0]
    assert step.ScheduledProcedureStepStartTime == "100000"


def test_near_midnight_the_local_day_is_shown_and_sent(app, la_paz, catalog, create_patient, doc_api, staff):
    req = order(doc_api, create_patient(), "2026-11-30T23:30")
    assert req.scheduled_at == datetime(2026, 12, 1, 3, 30)  # the next day in UTC
    page = text_of(staff.get(f"/requests/{req.id}"))
    assert "2026-11-30 23:30" in page and "2026-12-01" not in page
    step = wl_file(app, req).ScheduledProcedureStepSequence[0]
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == ("20261130", "233000")


def test_in_utc_nothing_moves(app, catalog, create_patient, doc_api):
    req = order(doc_api, create_patient(), "2026-11-30T09:00")
    assert req.scheduled_at == datetime(2026, 11, 30, 9, 0)
    ds = wl_file(app, req)
    assert ds.TimezoneOffsetFromUTC == "+0000"
    assert ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime == "090000"


def test_the_date_format_setting_changes_how_dates_show(app, la_paz, catalog, create_patient, doc_api, staff):
    patient = create_patient(birth_date=date(1975, 4, 3))
    req = order(doc_api, patient, "2026-11-30T09:00")
    for fmt, scheduled, born in [("dd.mm.yyyy", "30.11.2026 09:00", "03.04.1975"),
                                 ("mm/dd/yyyy", "11/30/2026 09:00", "04/03/1975"),
                                 ("dd/mm/yyyy", "30/11/2026 09:00", "03/04/1975")]:
        set_clinic(date_format=fmt)
        assert scheduled in text_of(staff.get(f"/requests/{req.id}"))
        assert born in text_of(staff.get(f"/patients/{patient.id}"))
        assert born in text_of(staff.get("/patients/"))


def test_filters_format_dicom_dates_times_and_every_pn_group(app):
    set_clinic(date_format="dd.mm.yyyy")
    tpl = app.jinja_env.from_string("{{ d|dicomdate }}|{{ t|dicomtime }}|{{ n|dicomname }}|{{ bad|dicomdate }}")
    with app.test_request_context("/"):
        shown = tpl.render(d="20261130", t="083015.123", n="Hong^Gildong=洪^吉洞=홍^길동", bad="20261331")
    assert shown == "30.11.2026|08:30:15|Hong, Gildong (洪 吉洞 · 홍 길동)|20261331"
    with app.test_request_context("/"):
        assert app.jinja_env.from_string("{{ n|dicomname }}").render(n="Weiß^Günther") == "Weiß, Günther"


def test_settings_are_read_once_per_request_not_per_value(app, catalog, create_patient, create_request, staff):
    """A list of many times costs one settings query, not one per time."""
    from sqlalchemy import event

    for _ in range(5):
        create_request(submit=True, scheduled_at=datetime(2026, 11, 30, 9, 0))
    seen: list[str] = []

    def count(conn, cursor, statement, *a):
        if "FROM settings" in statement:
            seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        assert staff.get("/requests?state=requested").status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    # The locale's own query (key IN (...)); other settings reads are other features'.
    assert len([s for s in seen if " IN (" in s]) == 1, seen


# -- the real modality's view: Orthanc's worklist plugin -----------------------

def _c_find(orthanc: OrthancServer) -> list[Dataset]:
    ds = Dataset()
    ds.PatientName = ""
    ds.AccessionNumber = ""
    ds.TimezoneOffsetFromUTC = ""
    sps = Dataset()
    sps.ScheduledProcedureStepStartDate = ""
    sps.ScheduledProcedureStepStartTime = ""
    ds.ScheduledProcedureStepSequence = [sps]
    ae = AE(ae_title="MODALITY1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(ModalityWorklistInformationFind)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established
    items, last = [], None
    try:
        for status, identifier in assoc.send_c_find(ds, ModalityWorklistInformationFind):
            last = status.Status if status is not None and "Status" in status else None
            if last in (0xFF00, 0xFF01):
                items.append(identifier)
    finally:
        assoc.release()
    assert last == 0x0000, orthanc.log_tail()
    return items


def test_a_modality_asking_orthanc_gets_the_local_time_and_offset(app, la_paz, catalog, create_patient, doc_api,
                                                                    tmp_path):
    assert WORKLISTS_PLUGIN.exists(), "Orthanc's worklist plugin is missing (orthanc package)"
    req = order(doc_api, create_patient(), "2026-11-30T09:00")
    server = OrthancServer(tmp_path / "orthanc", worklists=True, worklist_dir=tmp_path / "worklists").start()
    try:
        items = {i.AccessionNumber: i for i in _c_find(server)}
    finally:
        server.kill()
    item = items[req.accession_number]
    step = item.ScheduledProcedureStepSequence[0]
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == ("20261130", "090000")
    assert item.TimezoneOffsetFromUTC == "-0400"


def test_a_template_reading_my_scheduled_at_gets_the_clinic_time(app, la_paz, catalog, create_patient, doc_api):
    """``${my.scheduled_at}`` in a clinic's own template is the same wall
    clock as ScheduledProcedureStepStartTime, not the stored UTC."""
    from sqlalchemy import select

    from ghimaging.models import WorklistTemplate
    from ghimaging.worklists import build_file, templates

    body = ("(0008,0005) CS [ISO_IR 192]\n(0008,0050) SH [${AccessionNumber}]\n"
            "(0040,1004) LO [${my.scheduled_at.isoformat()} ${my.scheduled_at.day} ${my.scheduled_at.hour}]\n")
    templates.save(None, name="mine", body=body, charset="ISO_IR 192", encoding="utf-8")
    db.session.commit()
    req = order(doc_api, create_patient(), "2026-11-30T23:30")
    text = build_file(req, db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "mine"))).text
    assert "(0040,1004) LO [2026-11-30T23:30:00 30 23]" in text


def test_the_order_and_edit_forms_take_and_give_back_the_clinic_time(app, la_paz, catalog, create_patient,
                                                                       make_user, login):
    """09:00 typed on the order form in La Paz is 13:00 UTC stored; the edit
    form offers 09:00 again, and saving it unchanged moves nothing."""
    doc = make_user("doc", "physician")
    patient = create_patient()
    c = login("doc")
    r = c.post("/requests/new", {"patient": patient.puid, "tests": str(catalog["chest"].id), "physician": doc.id,
                                 "scheduled_date": "2026-12-15", "scheduled_time": "09:00", "action": "submit"},
               token_from="/requests/new")
    assert r.status_code == 302, text_of(r)[:500]
    req = db.session.scalars(select(ImagingRequest)).one()
    assert req.scheduled_at == datetime(2026, 12, 15, 13, 0)
    edit = c.get(f"/requests/{req.id}/edit").get_data(as_text=True)
    assert re.search(r'id="scheduled_time"[^>]*value="09:00', edit) or 'value="09:00"' in edit
    assert 'value="2026-12-15"' in edit
    r = c.post(f"/requests/{req.id}/edit", {"physician": doc.id, "scheduled_date": "2026-12-15",
                                           "scheduled_time": "09:00", "clinical_context": "", "comment": ""},
               token_from=f"/requests/{req.id}/edit")
    assert r.status_code == 302, text_of(r)[:500]
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).scheduled_at == datetime(2026, 12, 15, 13, 0)


def test_changing_the_clinic_zone_rewrites_the_waiting_worklist_items(app, la_paz, catalog, create_patient,
                                                                       doc_api, make_user):
    """09:00 in La Paz is 13:00 UTC, so 14:00 in Berlin: a modality reading
    the item after the move must see 14:00 and +0100, not the old 09:00
    -0400. A reported request stays off the worklist."""
    from ghimaging.imaging import workflow

    req = order(doc_api, create_patient(), "2026-11-30T09:00")
    reported = order(doc_api, create_patient(), "2026-11-30T10:00")
    rad = make_user("rad", "radiologist")
    workflow.create_result(reported, rad, radiologist=rad, result_date=date(2026, 11, 30), report="Normal.")
    db.session.commit()
    path = Path(app.config["WORKLIST_DIR"]) / f"{reported.accession_number}.wl"
    assert not path.exists()
    step = wl_file(app, req).ScheduledProcedureStepSequence[0]
    assert (step.ScheduledProcedureStepStartTime, wl_file(app, req).TimezoneOffsetFromUTC) == ("090000", "-0400")

    set_clinic(time_zone="Europe/Berlin")
    ds = wl_file(app, req)
    step = ds.ScheduledProcedureStepSequence[0]
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime) == ("20261130", "140000")
    assert ds.TimezoneOffsetFromUTC == "+0100"
    assert not path.exists()
