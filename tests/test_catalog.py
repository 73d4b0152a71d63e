"""The catalogue: seeded modality types, and the admin pages for modality
types and imaging tests."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from ghimaging.catalog import service
from ghimaging.extensions import db
from ghimaging.models import ImagingRequest, ImagingTest, ModalityType
from tests.support.web import CsrfClient

SEEDED = {"CR", "CT", "DX", "MG", "MR", "NM", "PT", "RF", "US", "XA"}


@pytest.fixture
def as_admin(make_user, login) -> CsrfClient:
    make_user("root", "admin")
    return login("root")


def field_errors(resp, name: str) -> list[str]:
    """The error messages shown under the form field called ``name``."""
    for chunk in re.findall(r'<div class="field [^"]*has-error[^"]*">(.*?)</div>', resp.get_data(as_text=True), re.S):
        if f'name="{name}"' in chunk:
            return [html.unescape(m) for m in re.findall(r'<p class="error">(.*?)</p>', chunk)]
    return []


def modalities() -> dict[str, str]:
    db.session.expire_all()
    return {m.code: m.name for m in db.session.scalars(select(ModalityType))}


def catalogue_tests() -> dict[str, ImagingTest]:
    db.session.expire_all()
    return {t.code: t for t in db.session.scalars(select(ImagingTest))}


def mod_id(code: str) -> int:
    return service.modality_by_code(code).id


def imaging_test_form(**kw) -> dict:
    data = {"code": "CT-HEAD", "name": "CT head without contrast", "modality": str(mod_id("CT")),
            "ae_title": "CT_SCANNER1", "worklist_template": "", "active": "y"}
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


# -- seed -----------------------------------------------------------------------

def test_seed_adds_the_ten_standard_modality_types_once(app):
    assert service.seed() == 10
    first = modalities()
    assert set(first) == SEEDED
    assert first["CR"] == "Computed Radiography"
    assert first["US"] == "Ultrasound"
    assert all(name for name in first.values())
    assert service.seed() == 0
    assert modalities() == first


def test_seed_keeps_local_edits_and_restores_only_what_is_missing(app):
    service.seed()
    db.session.commit()
    ct = service.modality_by_code("CT")
    ct.name = "CT (Siemens)"
    db.session.delete(service.modality_by_code("XA"))
    db.session.commit()
    assert service.seed() == 1
    now = modalities()
    assert set(now) == SEEDED
    assert now["CT"] == "CT (Siemens)"


# -- modality types -------------------------------------------------------------

def test_admin_adds_a_modality_type_and_a_lowercase_code_is_upper_cased(app, as_admin):
    service.seed()
    db.session.commit()
    r = as_admin.post("/catalog/modalities/new", {"code": " ot ", "name": "Other"})
    assert r.status_code == 302
    assert urlsplit(r.location).path == "/catalog/"
    assert modalities()["OT"] == "Other"
    page = as_admin.get("/catalog/").get_data(as_text=True)
    assert "OT</span>" in page and "Other" in page


def test_admin_edits_a_modality_type(app, as_admin):
    service.seed()
    db.session.commit()
    mid = mod_id("US")
    assert as_admin.get(f"/catalog/modalities/{mid}").status_code == 200
    r = as_admin.post(f"/catalog/modalities/{mid}", {"code": "US", "name": "Ultrasound (portable)"})
    assert r.status_code == 302
    assert modalities()["US"] == "Ultrasound (portable)"


def test_a_bad_modality_code_is_a_field_error_and_saves_nothing(app, as_admin):
    service.seed()
    db.session.commit()
    before = modalities()
    codes = ["C-T", "CT!", "ÇT", "C\\T", "C.T", "ABCDEFGHIJKLMNOPQ", "", "   "]
    got = {}
    for code in codes:
        r = as_admin.post("/catalog/modalities/new", {"code": code, "name": "Something"})
        got[code] = (r.status_code, bool(field_errors(r, "code")))
    assert got == {c: (400, True) for c in codes}
    assert modalities() == before


def test_a_duplicate_modality_code_is_a_field_error(app, as_admin):
    service.seed()
    db.session.commit()
    before = modalities()
    r = as_admin.post("/catalog/modalities/new", {"code": "ct", "name": "Another CT"})
    assert r.status_code == 400
    assert field_errors(r, "code") == ["Modality type CT already exists."]
    r = as_admin.post(f"/catalog/modalities/{mod_id('MR')}", {"code": "CT", "name": "Renamed"})
    assert r.status_code == 400
    assert field_errors(r, "code")
    assert modalities() == before


def test_a_modality_type_needs_a_name(app, as_admin):
    service.seed()
    db.session.commit()
    r = as_admin.post("/catalog/modalities/new", {"code": "OT", "name": "  "})
    assert r.status_code == 400
    assert field_errors(r, "name")
    assert "OT" not in modalities()


# -- imaging tests --------------------------------------------------------------

def test_admin_adds_an_imaging_test(app, as_admin):
    from ghimaging.worklists.templates import load_shipped

    service.seed()
    load_shipped()
    db.session.commit()
    r = as_admin.post("/catalog/tests/new", imaging_test_form(worklist_template="ct-mr"))
    assert r.status_code == 302
    t = catalogue_tests()["CT-HEAD"]
    assert (t.name, t.modality.code, t.ae_title, t.worklist_template, t.active) == \
        ("CT head without contrast", "CT", "CT_SCANNER1", "ct-mr", True)
    page = as_admin.get("/catalog/").get_data(as_text=True)
    assert "CT head without contrast" in page and "CT_SCANNER1" in page


def test_a_test_cannot_name_a_worklist_template_that_does_not_exist(app, as_admin):
    service.seed()
    db.session.commit()
    r = as_admin.post("/catalog/tests/new", imaging_test_form(worklist_template="no-such-template"))
    assert r.status_code == 400
    assert field_errors(r, "worklist_template")
    assert "CT-HEAD" not in catalogue_tests()


def test_admin_edits_an_imaging_test(app, as_admin, catalog):
    tid = catalog["chest"].id
    form = as_admin.get(f"/catalog/tests/{tid}").get_data(as_text=True)
    assert re.search(rf'<option selected value="{mod_id("CR")}">', form)
    r = as_admin.post(f"/catalog/tests/{tid}", imaging_test_form(code="XR-CHEST", name="Chest X-ray PA and lateral",
                                                        modality=str(mod_id("DX")), ae_title=" DX_ROOM2 "))
    assert r.status_code == 302
    t = catalogue_tests()["XR-CHEST"]
    assert (t.name, t.modality.code, t.ae_title) == ("Chest X-ray PA and lateral", "DX", "DX_ROOM2")


def test_a_bad_ae_title_is_a_field_error_and_saves_nothing(app, as_admin):
    service.seed()
    db.session.commit()
    titles = ["A" * 17, "AE\\1", "AE\t1", "ÄE1"]
    got = {}
    for ae in titles:
        r = as_admin.post("/catalog/tests/new", imaging_test_form(ae_title=ae))
        got[ae] = (r.status_code, bool(field_errors(r, "ae_title")))
    assert got == {ae: (400, True) for ae in titles}
    # A NUL is refused for the whole form, before any field is read.
    r = as_admin.post("/catalog/tests/new", imaging_test_form(ae_title="AE\x001"))
    assert r.status_code == 400 and "NUL" in r.get_data(as_text=True)
    assert catalogue_tests() == {}


def test_a_duplicate_test_code_is_a_field_error(app, as_admin, catalog):
    codes = ["XR-CHEST", "xr-chest", " Xr-Chest "]
    got = {}
    for code in codes:
        r = as_admin.post("/catalog/tests/new", imaging_test_form(code=code))
        got[code] = (r.status_code, any("already exists" in e for e in field_errors(r, "code")))
    assert got == {c: (400, True) for c in codes}
    assert set(catalogue_tests()) == {"XR-CHEST", "US-ABD"}


def test_renaming_a_test_to_another_tests_code_is_refused(app, as_admin, catalog):
    r = as_admin.post(f"/catalog/tests/{catalog['abd'].id}",
                      imaging_test_form(code="XR-CHEST", name="Abdominal ultrasound", modality=str(mod_id("US"))))
    assert r.status_code == 400
    assert field_errors(r, "code")
    assert catalogue_tests()["US-ABD"].name == "Abdominal ultrasound"


def test_other_bad_test_input_is_a_field_error(app, as_admin):
    service.seed()
    db.session.commit()
    cases = [("modality", "999999"), ("modality", "abc"), ("modality", ""), ("name", ""), ("code", ""),
             ("code", "X" * 33), ("worklist_template", "w" * 101)]
    got = {}
    for field, value in cases:
        r = as_admin.post("/catalog/tests/new", imaging_test_form(**{field: value}))
        got[field, value] = (r.status_code, bool(field_errors(r, field)))
    assert got == {k: (400, True) for k in got}
    assert catalogue_tests() == {}


def test_inactive_tests_are_not_offered_on_the_order_form(app, as_admin, catalog, make_user, login,
                                                          create_patient):
    chest = catalog["chest"]
    r = as_admin.post(f"/catalog/tests/{chest.id}", imaging_test_form(code="XR-CHEST", name="Chest X-ray PA",
                                                              modality=str(mod_id("CR")), active=None))
    assert r.status_code == 302
    assert catalogue_tests()["XR-CHEST"].active is False
    assert "Inactive" in as_admin.get("/catalog/").get_data(as_text=True)

    make_user("doc", "physician")
    doc = login("doc")
    form = doc.get("/requests/new").get_data(as_text=True)
    assert "Abdominal ultrasound" in form
    assert "Chest X-ray PA" not in form
    assert f'value="{chest.id}"' not in form

    patient = create_patient()
    r = doc.post("/requests/new", {"patient": patient.puid, "tests": [str(chest.id)], "physician": "0",
                                   "action": "submit"})
    assert r.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(ImagingRequest)) == 0


def test_a_missing_catalogue_entry_is_404(app, as_admin):
    assert as_admin.get("/catalog/tests/999999").status_code == 404
    assert as_admin.get("/catalog/modalities/999999").status_code == 404


@pytest.mark.parametrize("role", ["physician", "technologist", "radiologist"])
def test_non_admins_get_403_on_the_catalogue(app, catalog, make_user, login, role):
    make_user("someone", role)
    c = login("someone")
    tid, mid = catalog["chest"].id, mod_id("CR")
    calls = [
        ("GET", "/catalog/", None),
        ("GET", "/catalog/modalities/new", None),
        ("POST", "/catalog/modalities/new", {"code": "OT", "name": "Other"}),
        ("GET", f"/catalog/modalities/{mid}", None),
        ("POST", f"/catalog/modalities/{mid}", {"code": "CR", "name": "Changed"}),
        ("GET", "/catalog/tests/new", None),
        ("POST", "/catalog/tests/new", imaging_test_form()),
        ("GET", f"/catalog/tests/{tid}", None),
        ("POST", f"/catalog/tests/{tid}", imaging_test_form(code="XR-CHEST", active=None)),
    ]
    got = {(m, p): (c.get(p) if m == "GET" else c.post(p, data)).status_code for m, p, data in calls}
    assert got == {(m, p): 403 for m, p, _ in calls}
    assert "OT" not in modalities() and modalities()["CR"] == "Computed Radiography"
    assert set(catalogue_tests()) == {"XR-CHEST", "US-ABD"} and catalogue_tests()["XR-CHEST"].active
