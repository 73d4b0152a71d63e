"""The start page's queues against the clock and the permission map: a
result finalised while the physician's page is being built is new on the
next visit (never lost), and which queues a person gets follows the
permission map, an administrator without a clinical role keeping the
overview."""

from __future__ import annotations

import re
import threading
from datetime import date

import pytest
from flask import before_render_template

from ghimaging import permissions
from ghimaging.extensions import db
from ghimaging.imaging import queues, workflow
from ghimaging.models import ImagingRequest, Role, User
from ghimaging.permissions import Action


def section(body: str, sid: str) -> str:
    if f'id="{sid}"' not in body:
        return ""
    return body.split(f'id="{sid}"', 1)[1].split("</section>", 1)[0]


def rows(body: str, sid: str) -> list[str]:
    return re.findall(r'data-request="([^"]+)"', section(body, sid))


def start(client) -> str:
    r = client.get("/")
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _finalise_elsewhere(app, req_id: int, rad_id: int) -> None:
    """Another radiologist's worker finalises the result and commits."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                req = db.session.get(ImagingRequest, req_id)
                assert req is not None and req.result is not None
                workflow.finalise_result(req.result, db.session.get(User, rad_id))
                db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported below
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not errors, errors


def test_a_result_finalised_while_the_page_is_built_is_new_on_the_next_visit(app, make_user, login,
                                                                               create_request):
    doc = make_user("doc", "physician")
    rad = make_user("rad", "radiologist")
    req = create_request(user=doc, physician=doc, submit=True)
    workflow.create_result(req, rad, radiologist=rad, result_date=date(2026, 11, 30), report="Fracture.")
    db.session.commit()
    acc, req_id, rad_id = req.accession_number, req.id, rad.id
    phys = login("doc")
    done: list[bool] = []

    def finalise_during_render(sender, template, context, **extra):
        if template.name == "imaging/dashboard.html" and not done:  # the queues are read by now
            done.append(True)
            _finalise_elsewhere(app, req_id, rad_id)

    with before_render_template.connected_to(finalise_during_render, app):
        body = start(phys)
    assert done and acc not in rows(body, "new-results")  # read before it was final
    body = start(phys)
    assert rows(body, "new-results") == [acc]  # ... so it is new now, not lost
    assert rows(start(phys), "new-results") == []  # and seen after that


def test_queues_follow_the_permission_map(app, make_user, monkeypatch):
    tech = make_user("tech", "technologist")
    assert queues.queues_of(tech) == {"technologist"}
    # A clinic that lets technologists report too: the map alone decides.
    monkeypatch.setitem(permissions.PERMISSIONS, Action.REPORT, frozenset({Role.RADIOLOGIST, Role.TECHNOLOGIST}))
    assert queues.queues_of(tech) == {"technologist", "radiologist"}
    assert "to_report" in queues.counts(tech)
    assert "radiologist" in queues.start_page(tech)


def test_an_administrator_gets_queues_from_clinical_roles_only(app, make_user):
    assert queues.queues_of(make_user("boss", "admin")) == set()
    assert queues.queues_of(make_user("boss2", "admin", "physician")) == {"physician"}
    everyone = make_user("all", "admin", "physician", "technologist", "radiologist")
    assert queues.queues_of(everyone) == {"physician", "technologist", "radiologist"}
    gone = make_user("gone", "physician")
    gone.active = False
    assert queues.queues_of(gone) == set() and queues.counts(gone) == {}


@pytest.mark.parametrize("roles", [("physician",), ("radiologist",), ("technologist",)])
def test_each_clinical_role_has_its_queue_on_the_page(app, make_user, login, roles):
    make_user("someone", *roles)
    body = start(login("someone"))
    sid = {"physician": "new-results", "radiologist": "to-report", "technologist": "today"}[roles[0]]
    assert f'id="{sid}"' in body
