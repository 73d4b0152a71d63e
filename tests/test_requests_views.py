"""The request pages: new order form, lists, request page, edit, submit, cancel."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Dr Alice Doe")


@pytest.fixture
def browser(doc, login):
    """A physician signed in, CSRF on."""
    return login("doc")


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def accessions_in(resp) -> list[str]:
    return re.findall(r"<code>([A-Z]+\d+)</code></a>", resp.get_data(as_text=True))


def count_requests() -> int:
    return db.session.scalar(select(func.count()).select_from(ImagingRequest))


def order_data(patient, *tests, action="submit", **kw):
    data = {"patient": patient.puid, "tests": [t.id for t in tests], "physician": 0, "action": action}
    data.update(kw)
    return data


# -- new order ----------------------------------------------------------------

def test_order_form_has_a_patient_picker_that_searches_by_puid(browser, catalog, create_patient):
    p = create_patient(puid="HOSP-7781", family_name="Mbeki", given_name="Thandi")
    create_patient(puid="HOSP-9000", family_name="Other")
    r = browser.get("/requests/new")
    assert r.status_code == 200
    m = re.search(r'<input[^>]*name="patient"[^>]*>', r.get_data(as_text=True))
    assert m and 'data-lookup="/patients/lookup"' in m.group(0)
    found = browser.get("/patients/lookup?q=HOSP-7781").get_json()
    assert [(x["puid"], x["name"], x["id"]) for x in found] == [("HOSP-7781", "Mbeki, Thandi", p.id)]
    assert [x["puid"] for x in browser.get("/patients/lookup?q=mbek").get_json()] == ["HOSP-7781"]


def test_order_form_is_prefilled_from_the_patient_page(browser, catalog, create_patient, doc):
    p = create_patient(puid="HOSP-1")
    body = page(browser.get(f"/requests/new?patient_id={p.id}"))
    assert 'value="HOSP-1"' in body
    assert re.search(rf'<option selected value="{doc.id}">|<option value="{doc.id}" selected>', body)


def test_order_and_submit_creates_requested_requests_sharing_an_order(browser, catalog, create_patient, doc):
    p = create_patient()
    r = browser.post("/requests/new", order_data(p, catalog["chest"], catalog["abd"], physician=doc.id,
                                                 urgent="y", clinical_context="Fever, cough"),
                     token_from="/requests/new")
    assert r.status_code == 302 and r.location.endswith(f"/patients/{p.id}")
    reqs = db.session.scalars(select(ImagingRequest).order_by(ImagingRequest.id)).all()
    assert [x.state for x in reqs] == ["requested", "requested"]
    assert len({x.order_number for x in reqs}) == 1
    assert all(x.urgent and x.requesting_physician_id == doc.id and x.clinical_context == "Fever, cough" and
               x.created_by_id == doc.id for x in reqs)
    assert "2 request(s) submitted" in page(browser.get(r.location))


def test_save_as_draft_creates_a_draft_and_opens_it(browser, catalog, create_patient):
    p = create_patient()
    r = browser.post("/requests/new", order_data(p, catalog["chest"], action="draft",
                                                 scheduled_date="2030-03-04", scheduled_time="08:15"),
                     token_from="/requests/new")
    req = db.session.scalar(select(ImagingRequest))
    assert r.status_code == 302 and r.location.endswith(f"/requests/{req.id}")
    assert req.state == "draft" and req.scheduled_at.isoformat() == "2030-03-04T08:15:00"
    assert "saved as draft" in page(browser.get(r.location))


def test_unknown_puid_is_a_field_error(browser, catalog):
    r = browser.post("/requests/new", {"patient": "NOBODY-1", "tests": [catalog["chest"].id], "physician": 0,
                                       "action": "submit"}, token_from="/requests/new")
    assert r.status_code == 400
    body = page(r)
    assert re.search(r'class="field picker has-error".*No patient matches', body, re.S)
    assert 'value="NOBODY-1"' in body
    assert count_requests() == 0


def test_no_test_is_a_field_error(browser, catalog, create_patient):
    p = create_patient()
    r = browser.post("/requests/new", {"patient": p.puid, "physician": 0, "action": "submit"},
                     token_from="/requests/new")
    assert r.status_code == 400
    assert re.search(r'test-picker has-error.*Choose at least one test', page(r), re.S)
    assert count_requests() == 0


def test_an_unknown_test_id_is_a_field_error(browser, catalog, create_patient):
    p = create_patient()
    r = browser.post("/requests/new", {"patient": p.puid, "tests": [99999], "physician": 0, "action": "submit"},
                     token_from="/requests/new")
    assert r.status_code == 400
    assert count_requests() == 0


def test_missing_patient_and_bad_date_are_field_errors(browser, catalog):
    r = browser.post("/requests/new", {"patient": "", "tests": [catalog["chest"].id], "physician": 0,
                                       "scheduled_date": "31/02/2024", "action": "submit"},
                     token_from="/requests/new")
    assert r.status_code == 400
    body = page(r)
    assert "Choose a patient." in body
    assert re.search(r'field-datefield.*has-error|has-error field-datefield', body)
    assert count_requests() == 0


def test_order_form_without_csrf_token_is_refused(browser, catalog, create_patient):
    p = create_patient()
    r = browser.client.post("/requests/new", data=order_data(p, catalog["chest"]))
    assert r.status_code == 400
    assert count_requests() == 0


@pytest.mark.parametrize("role", ["technologist", "radiologist"])
def test_only_physicians_order(make_user, login, catalog, create_patient, role):
    make_user("someone", role)
    c = login("someone")
    assert c.get("/requests/new").status_code == 403
    r = c.post("/requests/new", order_data(create_patient(), catalog["chest"]))
    assert r.status_code == 403
    assert count_requests() == 0


# -- lists --------------------------------------------------------------------

@pytest.fixture
def mixed(create_request, create_patient, catalog, doc):
    """One request in each state, plus an urgent requested one."""
    pa = create_patient(family_name="Adeyemi", puid="P-ADE")
    pb = create_patient(family_name="Brown", puid="P-BRO")
    draft = create_request(pa, user=doc)
    plain = create_request(pa, user=doc, submit=True)
    urgent = create_request(pb, catalog["abd"], user=doc, submit=True, urgent=True)
    later = create_request(pb, user=doc, submit=True)
    done = create_request(pb, user=doc, submit=True)
    workflow.create_result(done, doc, radiologist=None, result_date=done.created_at.date(), report="ok",
                           final=True)  # a final result closes the request
    cancelled = create_request(pa, user=doc)
    workflow.cancel(cancelled, doc, "duplicate")
    db.session.commit()
    return {"draft": draft, "plain": plain, "urgent": urgent, "later": later, "done": done,
            "cancelled": cancelled}


@pytest.mark.parametrize("tab,expected", [
    ("draft", ["draft"]),
    ("requested", ["urgent", "later", "plain"]),
    ("done", ["done"]),
    ("cancelled", ["cancelled"]),
    ("all", ["urgent", "cancelled", "done", "later", "plain", "draft"]),
])
def test_list_tabs_show_their_state_urgent_first(browser, mixed, tab, expected):
    r = browser.get(f"/requests?state={tab}")
    assert r.status_code == 200
    assert accessions_in(r) == [mixed[k].accession_number for k in expected]
    assert re.search(rf'href="/requests\?state={tab}" class="active" aria-current="page"', r.get_data(as_text=True))


def test_list_defaults_to_requested_and_survives_a_bad_tab(browser, mixed):
    assert accessions_in(browser.get("/requests")) == accessions_in(browser.get("/requests?state=requested"))
    r = browser.get("/requests?state=<script>")
    assert r.status_code == 200 and len(accessions_in(r)) == 6


@pytest.mark.parametrize("q,expected", [
    ("adeyemi", ["cancelled", "plain", "draft"]),
    ("P-BRO", ["urgent", "done", "later"]),
    ("p-bro", ["urgent", "done", "later"]),
    ("US-ABD", ["urgent"]),
    ("ultrasound", ["urgent"]),
    ("nothing-like-this", []),
])
def test_search_by_patient_name_puid_and_test(browser, mixed, q, expected):
    r = browser.get("/requests", query_string={"state": "all", "q": q})
    assert r.status_code == 200
    assert accessions_in(r) == [mixed[k].accession_number for k in expected]


def test_search_by_accession_number(browser, mixed):
    acc = mixed["later"].accession_number
    assert accessions_in(browser.get("/requests", query_string={"state": "all", "q": acc})) == [acc]
    assert accessions_in(browser.get("/requests", query_string={"state": "all", "q": acc.lower()})) == [acc]


def test_search_stays_within_the_tab(browser, mixed):
    r = browser.get("/requests", query_string={"state": "draft", "q": "Adeyemi"})
    assert accessions_in(r) == [mixed["draft"].accession_number]


def test_list_is_paginated(app, browser, create_request, doc):
    app.config["ITEMS_PER_PAGE"] = 4
    made = [create_request(user=doc, submit=True) for _ in range(10)]
    newest_first = [r.accession_number for r in reversed(made)]
    p1, p2, p3 = (browser.get(f"/requests?state=requested&page={n}") for n in (1, 2, 3))
    assert accessions_in(p1) == newest_first[:4]
    assert accessions_in(p2) == newest_first[4:8]
    assert accessions_in(p3) == newest_first[8:]
    assert "Page 2 of 3" in page(p2) and "10 in all" in page(p2)
    assert 'href="/requests?state=requested&page=3"' in page(p2)
    beyond = browser.get("/requests?state=requested&page=99")
    assert beyond.status_code == 200 and accessions_in(beyond) == []
    assert browser.get("/requests?page=abc").status_code == 200


def test_lists_need_login(client):
    r = client.get("/requests?state=all")
    assert r.status_code == 302 and "/login" in r.location


# -- request page -------------------------------------------------------------

def test_request_page_shows_history_with_who_and_when(browser, create_request, doc, make_user, login):
    make_user("bob", "physician", full_name="Dr Bob Roe")
    req = create_request(user=doc)
    bob = login("bob")
    assert bob.post(f"/requests/{req.id}/submit", token_from=f"/requests/{req.id}").status_code == 302
    bob.post(f"/requests/{req.id}/cancel", {"reason": "Patient moved away"}, token_from=f"/requests/{req.id}")
    body = page(browser.get(f"/requests/{req.id}"))
    history = body[body.index("<h2>History</h2>"):]
    items = re.findall(r"<li>(.*?)</li>", history, re.S)
    assert len(items) == 3
    stamp = r'<span class="when">\d{4}-\d\d-\d\d \d\d:\d\d</span>'
    assert re.search(stamp + r" <strong>Create</strong>.*by Dr Alice Doe", items[0], re.S)
    assert re.search(stamp + r" <strong>Submit</strong>\s*draft → requested.*by Dr Bob Roe", items[1], re.S)
    assert re.search(stamp + r" <strong>Cancelled</strong>\s*requested → cancelled.*by Dr Bob Roe.*Patient moved away",
                     items[2], re.S)


def test_request_page_shows_the_order(browser, catalog, create_patient, doc):
    p = create_patient(family_name="Okafor", given_name="Ngozi")
    a, b = workflow.create_order(p, [catalog["chest"], catalog["abd"]], user=doc, physician=doc,
                                 clinical_context="Persistent cough")
    db.session.commit()
    body = page(browser.get(f"/requests/{a.id}"))
    for text in ("Okafor, Ngozi", a.accession_number, a.order_number, a.study_instance_uid, "Dr Alice Doe",
                 "Persistent cough", "XRAY1"):
        assert text in body
    assert f'href="/requests/{b.id}">Abdominal ultrasound</a>' in body


def test_unknown_request_is_404(browser):
    assert browser.get("/requests/999999").status_code == 404
    assert browser.post("/requests/999999/submit").status_code == 404


# -- edit ---------------------------------------------------------------------

def test_edit_a_request(browser, create_request, doc):
    req = create_request(user=doc)
    url = f"/requests/{req.id}/edit"
    form = page(browser.get(url))
    assert "Edit request" in form
    r = browser.post(url, {"urgent": "y", "physician": doc.id, "clinical_context": "Chest pain",
                           "comment": "wheelchair", "scheduled_date": "2031-01-02", "scheduled_time": "14:45"},
                     token_from=url)
    assert r.status_code == 302 and r.location.endswith(f"/requests/{req.id}")
    db.session.refresh(req)
    assert (req.urgent, req.requesting_physician_id, req.clinical_context, req.comment,
            req.scheduled_at.isoformat()) == (True, doc.id, "Chest pain", "wheelchair", "2031-01-02T14:45:00")
    assert req.events[-1].action == "edit"


def test_edit_with_an_overlong_comment_is_a_field_error(browser, create_request, doc):
    req = create_request(user=doc)
    url = f"/requests/{req.id}/edit"
    r = browser.post(url, {"physician": 0, "comment": "x" * 4001}, token_from=url)
    assert r.status_code == 400
    assert re.search(r"has-error.*Field cannot be longer than 4000 characters", page(r), re.S)
    db.session.refresh(req)
    assert req.comment == ""


def test_a_closed_request_cannot_be_edited(browser, create_request, doc):
    req = create_request(user=doc)
    workflow.cancel(req, doc, "not needed")
    db.session.commit()
    url = f"/requests/{req.id}/edit"
    r = browser.get(url)
    assert r.status_code == 302 and r.location.endswith(f"/requests/{req.id}")
    assert "is cancelled; it can no longer be edited" in page(browser.get(r.location))
    r = browser.post(url, {"physician": 0, "comment": "sneaky"}, token_from=f"/requests/{req.id}")
    assert r.status_code == 302
    db.session.refresh(req)
    assert req.comment == ""


# -- submit and cancel --------------------------------------------------------

def test_submit_from_the_request_page(browser, create_request, doc):
    req = create_request(user=doc)
    assert f'action="/requests/{req.id}/submit"' in page(browser.get(f"/requests/{req.id}"))
    r = browser.post(f"/requests/{req.id}/submit", token_from=f"/requests/{req.id}")
    assert r.status_code == 302
    db.session.refresh(req)
    assert req.state == "requested"
    body = page(browser.get(r.location))
    assert f"Request {req.accession_number} submitted." in body
    assert f'action="/requests/{req.id}/submit"' not in body


def test_submitting_twice_gives_a_clear_message(browser, create_request, doc):
    """The second click of a double submit, or a stale tab: the person must
    see why nothing happened, not a 500 and not a blank page."""
    req = create_request(user=doc)
    token = browser.token(f"/requests/{req.id}")
    assert browser.post(f"/requests/{req.id}/submit", {"csrf_token": token}).status_code == 302
    browser.get(f"/requests/{req.id}")  # consume the success message
    r = browser.post(f"/requests/{req.id}/submit", {"csrf_token": token})
    assert r.status_code < 500
    expected = f"Request {req.accession_number} is requested; it cannot be submitted"
    if r.status_code in (301, 302, 303):
        assert expected in page(browser.get(r.location))
    else:
        assert expected in page(r), (r.status_code, r.get_data(as_text=True)[:300])
    db.session.refresh(req)
    assert req.state == "requested"
    assert [e.action for e in req.events] == ["create", "submit"]


def test_cancel_with_a_reason(browser, create_request, doc):
    req = create_request(user=doc, submit=True)
    r = browser.post(f"/requests/{req.id}/cancel", {"reason": "Patient declined"},
                     token_from=f"/requests/{req.id}")
    assert r.status_code == 302
    db.session.refresh(req)
    assert req.state == "cancelled" and req.cancel_reason == "Patient declined"
    body = page(browser.get(r.location))
    assert "Cancelled because" in body and "Patient declined" in body
    assert f'action="/requests/{req.id}/cancel"' not in body


@pytest.mark.parametrize("reason", ["", "   "])
def test_cancel_without_a_reason_is_refused(browser, create_request, doc, reason):
    req = create_request(user=doc, submit=True)
    r = browser.post(f"/requests/{req.id}/cancel", {"reason": reason}, token_from=f"/requests/{req.id}")
    assert r.status_code == 400
    assert "Give a reason for cancelling." in page(r)
    db.session.refresh(req)
    assert req.state == "requested" and len(req.events) == 2


@pytest.mark.parametrize("final,message", [(True, "is done; it cannot be cancelled"),
                                           (False, "has a result; it cannot be cancelled")])
def test_cancelling_a_reported_request_is_refused_with_a_message(browser, create_request, doc, final, message):
    req = create_request(user=doc, submit=True)
    workflow.create_result(req, doc, radiologist=None, result_date=req.created_at.date(), report="ok", final=final)
    db.session.commit()
    state = req.state
    r = browser.post(f"/requests/{req.id}/cancel", {"reason": "oops"}, token_from=f"/requests/{req.id}")
    assert 400 <= r.status_code < 500
    assert f"Request {req.accession_number} {message}" in page(r)
    db.session.refresh(req)
    assert req.state == state == ("done" if final else "requested")


@pytest.mark.parametrize("role", ["technologist", "radiologist"])
def test_only_physicians_edit_submit_and_cancel(make_user, login, create_request, doc, role):
    req = create_request(user=doc)
    make_user("someone", role)
    c = login("someone")
    body = page(c.get(f"/requests/{req.id}"))
    assert f"/requests/{req.id}/submit" not in body and f"/requests/{req.id}/cancel" not in body
    assert c.get(f"/requests/{req.id}/edit").status_code == 403
    assert c.post(f"/requests/{req.id}/submit").status_code == 403
    assert c.post(f"/requests/{req.id}/cancel", {"reason": "no"}).status_code == 403
    db.session.refresh(req)
    assert req.state == "draft"


def test_an_admin_may_do_what_a_physician_does(make_user, login, create_request, doc):
    req = create_request(user=doc)
    make_user("boss", "admin")
    c = login("boss")
    assert c.post(f"/requests/{req.id}/submit", token_from=f"/requests/{req.id}").status_code == 302
    db.session.refresh(req)
    assert req.state == "requested"
