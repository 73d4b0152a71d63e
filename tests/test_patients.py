"""The patient registry pages: register, edit, search, the patient page
and the picker's lookup."""

from __future__ import annotations

import html
import re
from datetime import date, timedelta
from urllib.parse import quote, urlsplit

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import Patient
from tests.support.web import CsrfClient


@pytest.fixture
def tech(make_user, login) -> CsrfClient:
    make_user("tech", "technologist")
    return login("tech")


def field_errors(resp, name: str) -> list[str]:
    """The error messages shown under the form field called ``name``."""
    for chunk in re.findall(r'<div class="field [^"]*has-error[^"]*">(.*?)</div>', resp.get_data(as_text=True), re.S):
        if f'name="{name}"' in chunk:
            return [html.unescape(m) for m in re.findall(r'<p class="error">(.*?)</p>', chunk)]
    return []


def patient_form(**kw) -> dict:
    data = {"puid": "GH-2024-0001", "family_name": "Müller", "given_name": "Jürgen Paul",
            "birth_date": "1975-04-03", "sex": "M", "phone": "+49 30 1234567", "notes": "Claustrophobic."}
    data.update(kw)
    return {k: v for k, v in data.items() if v is not None}


def fresh(patient_id: int) -> Patient | None:
    db.session.expire_all()
    return db.session.get(Patient, patient_id)


def patient_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Patient))


def listed_puids(resp) -> list[str]:
    """PUIDs in the order the patient list shows them."""
    assert resp.status_code == 200
    return [html.unescape(p) for p in re.findall(r'<td><a href="/patients/\d+"><code>([^<]*)</code></a></td>',
                                                 resp.get_data(as_text=True))]


# -- register and edit ---------------------------------------------------------

@pytest.mark.parametrize("role", ["technologist", "physician", "admin"])
def test_a_patient_is_registered(make_user, login, role):
    make_user("someone", role)
    c = login("someone")
    assert c.get("/patients/new").status_code == 200
    r = c.post("/patients/new", patient_form())
    assert r.status_code == 302
    p = db.session.scalar(select(Patient).where(Patient.puid == "GH-2024-0001"))
    assert urlsplit(r.location).path == f"/patients/{p.id}"
    assert (p.family_name, p.given_name, p.birth_date, p.sex, p.phone, p.notes) == \
        ("Müller", "Jürgen Paul", date(1975, 4, 3), "M", "+49 30 1234567", "Claustrophobic.")
    page = c.get(r.location).get_data(as_text=True)
    assert "Müller, Jürgen Paul" in page and "GH-2024-0001" in page


def test_optional_fields_may_be_left_empty(tech):
    r = tech.post("/patients/new", patient_form(given_name="", birth_date="", phone="", notes=""))
    assert r.status_code == 302
    p = db.session.scalar(select(Patient))
    assert p.given_name == "" and p.birth_date is None


def test_a_patient_is_edited(tech, create_patient):
    p = create_patient(puid="P-1", family_name="Smith")
    form = tech.get(f"/patients/{p.id}/edit").get_data(as_text=True)
    assert 'value="P-1"' in form and 'value="Smith"' in form
    r = tech.post(f"/patients/{p.id}/edit", patient_form(puid="P-1", family_name="Smith-Jones", phone="555"))
    assert r.status_code == 302
    p = fresh(p.id)
    assert (p.puid, p.family_name, p.phone) == ("P-1", "Smith-Jones", "555")


def test_a_duplicate_puid_is_a_field_error_and_nothing_is_saved(tech, create_patient):
    create_patient(puid="GH-2024-0001")
    r = tech.post("/patients/new", patient_form())
    assert r.status_code == 400
    assert field_errors(r, "puid") == ["Another patient already has PUID GH-2024-0001."]
    assert patient_count() == 1


def test_editing_to_another_patients_puid_is_refused(tech, create_patient):
    create_patient(puid="TAKEN")
    p = create_patient(puid="MINE", family_name="Mine")
    r = tech.post(f"/patients/{p.id}/edit", patient_form(puid="TAKEN", family_name="Changed"))
    assert r.status_code == 400
    assert field_errors(r, "puid")
    p = fresh(p.id)
    assert (p.puid, p.family_name) == ("MINE", "Mine")


BAD_INPUT = [
    ("birth_date", (date.today() + timedelta(days=1)).isoformat()),
    ("birth_date", "1879-12-31"),
    ("birth_date", "2020-13-45"),
    ("birth_date", "yesterday"),
    ("sex", "X"),
    ("sex", ""),
    ("sex", "f\\"),
    ("puid", ""),
    ("puid", "GH\\0001"),
    ("puid", "GH\x010001"),
    ("puid", "P" * 65),
    ("family_name", ""),
    ("family_name", "Müller^Hans"),
    ("family_name", "Mül=ler"),
    ("family_name", "Back\\slash"),
    ("family_name", "M" * 101),
    ("given_name", "Hans^Peter"),
    ("phone", "1" * 51),
    ("notes", "n" * 5001),
]


def test_bad_input_on_registration_is_a_field_error_and_saves_nothing(tech):
    got = {}
    for field, value in BAD_INPUT:
        r = tech.post("/patients/new", patient_form(**{field: value}))
        got[field, value] = (r.status_code, bool(field_errors(r, field)))
    assert got == {k: (400, True) for k in BAD_INPUT}
    assert patient_count() == 0


def test_bad_input_on_edit_is_a_field_error_and_changes_nothing(tech, create_patient):
    p = create_patient(puid="KEEP", family_name="Keep", sex="F")
    got = {}
    for field, value in BAD_INPUT:
        r = tech.post(f"/patients/{p.id}/edit", patient_form(**{"puid": "KEEP", "family_name": "Keep", field: value}))
        got[field, value] = (r.status_code, bool(field_errors(r, field)))
    assert got == {k: (400, True) for k in BAD_INPUT}
    p = fresh(p.id)
    assert (p.puid, p.family_name, p.sex, p.given_name) == ("KEEP", "Keep", "F", "Given")


def test_a_missing_patient_is_404(tech):
    assert tech.get("/patients/999999").status_code == 404
    assert tech.get("/patients/999999/edit").status_code == 404
    assert tech.post("/patients/999999/edit", patient_form()).status_code == 404


# -- search ---------------------------------------------------------------------

@pytest.fixture
def registry(create_patient):
    """A small registry, names chosen to tell the search rules apart."""
    rows = [
        ("A-100", "Müller", "Hans"),
        ("A-101", "Mueller", "Anna"),
        ("A-102", "Smith", "John"),
        ("A-103", "Smith", "Jane"),
        ("B-200", "Johnson", "Hans"),
        ("C-300", "Özdemir", "Ayşe"),
        ("C-301", "Ångström", "Åsa"),
    ]
    return {puid: create_patient(puid=puid, family_name=fam, given_name=giv) for puid, fam, giv in rows}


def search(c: CsrfClient, q: str) -> list[str]:
    return sorted(listed_puids(c.get(f"/patients/?q={quote(q)}")))


def searches(c: CsrfClient, cases: dict[str, list[str]]) -> None:
    assert {q: search(c, q) for q in cases} == cases


def test_search_by_puid_family_name_and_family_comma_given(tech, registry):
    searches(tech, {
        "A-102": ["A-102"],
        "a-102": ["A-102"],
        "B-2": ["B-200"],
        "smith": ["A-102", "A-103"],
        "SMITH": ["A-102", "A-103"],
        "Smith, Ja": ["A-103"],
        "smith,john": ["A-102"],
        "Hans": ["A-100", "B-200"],
        "  Johnson  ": ["B-200"],
        "nobody": [],
    })


def test_search_finds_names_outside_ascii_whatever_their_case(tech, registry):
    searches(tech, {
        "Müller": ["A-100"],
        "müller": ["A-100"],
        "Müller, Hans": ["A-100"],
        "Ayşe": ["C-300"],
        "Özdemir": ["C-300"],
        "özdemir": ["C-300"],
        "Ångström": ["C-301"],
        "ÅNGSTRÖM": ["C-301"],
    })


def test_like_wildcards_in_the_search_are_taken_literally(tech, registry):
    searches(tech, {"%": [], "_": [], "%%": [], "Sm_th": [], "A-1%": []})


def test_search_without_a_query_lists_everyone_by_name(tech, registry):
    puids = listed_puids(tech.get("/patients/"))
    assert sorted(puids) == sorted(registry)
    names = [(registry[p].family_name, registry[p].given_name) for p in puids]
    assert names == sorted(names)


def test_lookup_gives_json_suggestions(tech, registry):
    r = tech.get("/patients/lookup?q=" + quote("Müller"))
    assert r.status_code == 200 and r.is_json
    p = registry["A-100"]
    assert r.json == [{"id": p.id, "puid": "A-100", "name": "Müller, Hans",
                       "birth_date": p.birth_date.isoformat(), "born": p.birth_date.isoformat(),
                       "sex": p.sex, "alerts": []}]


def test_lookup_with_an_empty_query_gives_no_suggestions(tech, registry):
    assert tech.get("/patients/lookup").json == []
    assert tech.get("/patients/lookup?q=%20%20").json == []


def test_lookup_gives_at_most_15_suggestions(tech, create_patient):
    for i in range(20):
        create_patient(family_name=f"Garcia{i:02d}")
    r = tech.get("/patients/lookup?q=garcia")
    assert len(r.json) == 15


def test_lookup_needs_a_signed_in_user(client):
    r = client.get("/patients/lookup?q=a")
    assert r.status_code == 302 and urlsplit(r.location).path == "/login"


# -- pagination -----------------------------------------------------------------

class TestPagination:
    @pytest.fixture
    def app_config(self):
        return {"ITEMS_PER_PAGE": 3}

    @pytest.fixture
    def seven(self, create_patient):
        return [create_patient(puid=f"PG{i}", family_name=f"Page{i}") for i in range(1, 8)]

    def test_the_list_is_cut_into_pages(self, tech, seven):
        assert listed_puids(tech.get("/patients/")) == ["PG1", "PG2", "PG3"]
        assert listed_puids(tech.get("/patients/?page=2")) == ["PG4", "PG5", "PG6"]
        last = tech.get("/patients/?page=3")
        assert listed_puids(last) == ["PG7"]
        assert "Page 3 of 3" in last.get_data(as_text=True)

    def test_the_pager_links_keep_the_search(self, tech, seven):
        body = tech.get("/patients/?q=page").get_data(as_text=True)
        assert "Page 1 of 3" in body
        links = [html.unescape(h) for h in re.findall(r'<a href="([^"]*page=2[^"]*)">Next', body)]
        assert links and "q=page" in links[0]

    def test_an_odd_page_number_gives_a_page_not_an_error(self, tech, seven):
        pages = ["0", "-1", "abc", "", "99", "99999999999999999999"]
        assert {p: tech.get(f"/patients/?page={p}").status_code for p in pages} == {p: 200 for p in pages}


# -- the patient page, and who may do what --------------------------------------

def test_the_patient_page_lists_the_patients_requests(tech, create_patient, create_request, catalog):
    p = create_patient(puid="ME", family_name="Me")
    draft = create_request(p)
    submitted = create_request(p, catalog["abd"], submit=True)
    other = create_request(create_patient(puid="SOMEONE-ELSE"))
    body = tech.get(f"/patients/{p.id}").get_data(as_text=True)
    assert draft.accession_number in body and submitted.accession_number in body
    assert other.accession_number not in body
    assert "Chest X-ray PA" in body and "Abdominal ultrasound" in body
    assert 'data-progress="draft"' in body and 'data-progress="scheduled"' in body


def test_a_patient_without_requests_says_so(tech, create_patient):
    p = create_patient()
    assert "No requests for this patient." in tech.get(f"/patients/{p.id}").get_data(as_text=True)


def test_a_radiologist_can_view_but_not_create_or_edit_patients(make_user, login, create_patient):
    p = create_patient(puid="VIEW-ME", family_name="Visible")
    make_user("rad", "radiologist")
    c = login("rad")
    assert c.get("/patients/").status_code == 200
    assert c.get(f"/patients/{p.id}").status_code == 200
    assert c.get("/patients/lookup?q=vis").json[0]["puid"] == "VIEW-ME"
    assert c.get("/patients/new").status_code == 403
    assert c.post("/patients/new", patient_form(puid="NEW")).status_code == 403
    assert c.get(f"/patients/{p.id}/edit").status_code == 403
    assert c.post(f"/patients/{p.id}/edit", patient_form(puid="VIEW-ME", family_name="Changed")).status_code == 403
    assert patient_count() == 1
    assert fresh(p.id).family_name == "Visible"
    page = c.get(f"/patients/{p.id}").get_data(as_text=True)
    assert f"/patients/{p.id}/edit" not in page
