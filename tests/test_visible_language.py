"""What staff read is in their language, also where the text is not typed
in a template: choices made when a form class is defined, the empty choice
of a person select, numbers, history notes stored as codes, the Orthanc
encoding warning and the identity of a study or patient without a birth
date. Each of these was found English (or raw) on Spanish and German pages."""

from __future__ import annotations

from datetime import date

from flask_babel import refresh

from ghimaging.extensions import db
from ghimaging.imaging import reporting
from ghimaging.models import OrthancServer, OrthancStudy
from ghimaging.orthanc import identity, servers

ES = {"Accept-Language": "es"}
EN = {"Accept-Language": "en"}
DE = {"Accept-Language": "de"}


def page(c, path: str, headers: dict[str, str]) -> str:
    r = c.get(path, headers=headers)
    assert r.status_code == 200, (path, r.status_code)
    return r.get_data(as_text=True)


def test_the_desks_report_styles_and_empty_choice_follow_the_reader(make_user, login, create_request):
    rad = make_user("rad", "radiologist")
    req = create_request(submit=True)
    db.session.commit()
    c = login("rad")
    desk = page(c, f"/requests/{req.id}/result", ES)
    assert "Con imágenes y leyendas" in desk and "With images and captions" not in desk
    assert "— ninguno —" in desk and "— none —" not in desk
    assert "Mit Bildern und Beschriftungen" in page(c, f"/requests/{req.id}/result", DE)
    assert "With images and captions" in page(c, f"/requests/{req.id}/result", EN)
    assert rad.id


def test_the_order_forms_empty_physician_is_in_the_readers_language(make_user, login, catalog):
    make_user("doc", "physician")
    html = page(login("doc"), "/requests/new", DE)
    assert "— keiner —" in html and "— none —" not in html


def test_the_upload_limit_is_written_with_the_readers_digit_grouping(make_user, login, app):
    app.config["UPLOAD_MAX_FILES"] = 20000
    db.session.add(OrthancServer(label="Main", url="http://127.0.0.1:9"))  # the form shows with a server
    db.session.commit()
    make_user("tech", "technologist")
    c = login("tech")
    assert "20.000" in page(c, "/upload/", DE) and "20,000" not in page(c, "/upload/", DE)
    assert "20,000" in page(c, "/upload/", EN)


def test_history_notes_stored_as_codes_are_said_in_the_readers_language(make_user, login, create_request):
    rad = make_user("rad", "radiologist")
    doc = make_user("doc", "physician")
    req = create_request(submit=True, user=doc)
    reporting.create_result(req, rad, radiologist=rad, result_date=date.today(), report="Findings.")
    db.session.commit()
    html = page(login("doc"), f"/requests/{req.id}", ES)
    assert f"Orden {req.order_number}" in html and f"order {req.order_number}" not in html
    assert ">preliminar<" in html and ">preliminary<" not in html


def test_the_orthanc_encoding_warning_is_in_the_readers_language(app, create_patient):
    create_patient(family_name="Παπαδόπουλος", given_name="Νίκος")
    row = OrthancServer(label="Main", url="http://127.0.0.1:9", default_encoding="Latin1")
    db.session.add(row)
    db.session.commit()
    with app.test_request_context("/", headers=ES):
        refresh()  # the locale is kept in the test's app context, which every request context here shares
        general, register = servers.encoding_warnings(row)
    assert general.startswith("La codificación predeterminada de Orthanc es Latin1")
    assert register.startswith("1 nombre(s) de pacientes") and "Παπαδόπουλος" in register
    assert '"DefaultEncoding": "Utf8"' in register
    with app.test_request_context("/", headers=EN):
        refresh()
        assert servers.encoding_warnings(row)[1].startswith("1 patient name(s) in the register")


def test_an_identity_without_a_birth_date_does_not_say_born(app, create_patient):
    patient = create_patient(family_name="Sinfecha", given_name="Ana", birth_date=None)
    study = OrthancStudy(patient_id=patient.puid, patient_name="Sinfecha^Ana", birth_date="")
    for headers, wanted, wrong in ((EN, "birth date not given", "born"),
                                   (ES, "fecha de nacimiento no indicada", "nac."),
                                   (DE, "Geburtsdatum nicht angegeben", "geb.")):
        with app.test_request_context("/", headers=headers):
            refresh()
            for said in (identity.study_identity(study), identity.patient_identity(patient)):
                assert said.endswith(wanted) and wrong not in said, said
