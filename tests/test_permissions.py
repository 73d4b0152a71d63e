"""Who may reach what, over every page route.

The routes are read from the application's URL map, so a page added later
without ``login_required`` (or a role check) makes these tests fail.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from werkzeug.routing import IntegerConverter

from ghimaging import create_app
from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, ModalityType, Patient, Result, ResultAddendum
from tests.support.web import CsrfClient

ROLES = ("admin", "physician", "technologist", "radiologist")
PUBLIC_ENDPOINTS = {"auth.login", "static"}


def _page_routes() -> list[tuple[str, str]]:
    """(method, path) for every route of the pages (not the API, not static),
    with ids filled in (1, which may not exist); read at collection time
    from a throwaway app."""
    app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(prefix="ghimaging-routes-"),
                      "DATABASE_URL": "sqlite://", "TESTING": True})
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.startswith("api."):
            continue
        path = rule.rule
        for name, conv in rule._converters.items():
            value = "1" if isinstance(conv, IntegerConverter) else "x.png"
            path = re.sub(rf"<(?:[^<>:]+:)?{name}>", value, path)
        assert "<" not in path, rule.rule
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, path))
    return out


PAGE_ROUTES = _page_routes()
#: Paths with an id filled in: for these a 404 still shows the role check let the user through.
FILLED_IN = {p for _, p in PAGE_ROUTES if re.search(r"/1(/|$)|x\.png", p)}


def test_the_route_table_is_not_empty():
    """Guards the tests below against passing over an empty table."""
    paths = {p for _, p in PAGE_ROUTES}
    assert len(PAGE_ROUTES) >= 30
    assert {"/", "/requests/new", "/admin/users", "/catalog/", "/patients/", "/logout"} <= paths


def test_anonymous_visitors_are_sent_to_the_login_page_from_every_page_route(app):
    """GET where a route answers GET; POST (with a valid CSRF token, so that
    only the login check can refuse) where it takes POST."""
    c = CsrfClient(app.test_client())
    token = c.token("/login")
    got = {}
    for method, path in PAGE_ROUTES:
        r = c.get(path) if method == "GET" else c.client.post(path, data={"csrf_token": token})
        got[method, path] = (r.status_code, urlsplit(r.location or "").path)
    assert got == {k: (302, "/login") for k in PAGE_ROUTES}


# -- the role matrix --------------------------------------------------------------

@dataclass
class World:
    users: dict[str, Any]
    catalog: dict[str, Any]
    patient: Patient
    create_request: Callable


@pytest.fixture
def world(make_user, catalog, create_patient, create_request) -> World:
    users = {role: make_user(role, role) for role in ROLES}
    return World(users, catalog, create_patient(puid="PERM-1", family_name="Perm"), create_request)


def _fresh(model, id_):
    db.session.expire_all()
    return db.session.get(model, id_)


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def _result(w: World, *, final: bool = False) -> Result:
    req = w.create_request(w.patient, submit=True)
    res = workflow.create_result(req, w.users["admin"], radiologist=None, result_date=date.today(),
                                 report="No acute findings.")
    if final:
        workflow.finalise_result(res, w.users["admin"])
    return res


@dataclass
class Action:
    """One thing a user may try; ``allowed`` lists the roles that may do it.
    ``prepare`` makes the objects it acts on; ``done`` tells whether it took
    effect (checked both ways: done when allowed, untouched when refused)."""

    name: str
    allowed: set[str]
    prepare: Callable[[World], dict]
    call: Callable[[CsrfClient, dict], Any]
    done: Callable[[dict], bool] | None = None
    ok_status: int = 302


def _order(c, ctx):
    return c.post("/requests/new", {"patient": "PERM-1", "tests": [str(ctx["test"])], "physician": "0",
                                    "action": "submit", "comment": "ordered"})


def _result_form(report: str) -> dict:
    return {"radiologist": "0", "result_date": date.today().isoformat(), "report_style": "with_images",
            "report": report}


def _patient_form(puid: str, family: str) -> dict:
    return {"puid": puid, "family_name": family, "given_name": "G", "sex": "F", "birth_date": "1990-01-01"}


ACTIONS = [
    Action("open the order form", {"admin", "physician"}, lambda w: {},
           lambda c, ctx: c.get("/requests/new"), ok_status=200),
    Action("order", {"admin", "physician"},
           lambda w: {"test": w.catalog["chest"].id, "before": _count(ImagingRequest)},
           _order, lambda ctx: _count(ImagingRequest) == ctx["before"] + 1),
    Action("edit a request", {"admin", "physician"},
           lambda w: {"id": w.create_request(w.patient).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/edit", {"physician": "0", "comment": "edited"}),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).comment == "edited"),
    Action("submit a request", {"admin", "physician"},
           lambda w: {"id": w.create_request(w.patient).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/submit"),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).state == "requested"),
    Action("cancel a request", {"admin", "physician"},
           lambda w: {"id": w.create_request(w.patient, submit=True).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/cancel", {"reason": "ordered twice"}),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).state == "cancelled"),
    Action("open the result form", {"admin", "radiologist"},
           lambda w: {"id": w.create_request(w.patient, submit=True).id},
           lambda c, ctx: c.get(f"/requests/{ctx['id']}/result"), ok_status=200),
    Action("write a result", {"admin", "radiologist"},
           lambda w: {"id": w.create_request(w.patient, submit=True).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/result", _result_form("Normal chest.")),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).state == "done"),
    Action("edit a result", {"admin", "radiologist"},
           lambda w: {"id": _result(w).id},
           lambda c, ctx: c.post(f"/results/{ctx['id']}/edit", _result_form("Revised.")),
           lambda ctx: _fresh(Result, ctx["id"]).report == "Revised."),
    Action("finalise a result", {"admin", "radiologist"},
           lambda w: {"id": _result(w).id},
           lambda c, ctx: c.post(f"/results/{ctx['id']}/finalise"),
           lambda ctx: _fresh(Result, ctx["id"]).is_final),
    Action("add an addendum", {"admin", "radiologist"},
           lambda w: {"id": _result(w, final=True).id, "before": _count(ResultAddendum)},
           lambda c, ctx: c.post(f"/results/{ctx['id']}/addenda", {"text": "Compared with 2023."}),
           lambda ctx: _count(ResultAddendum) == ctx["before"] + 1),
    Action("register a patient", {"admin", "physician", "technologist"},
           lambda w: {"before": _count(Patient)},
           lambda c, ctx: c.post("/patients/new", _patient_form("PERM-NEW", "New")),
           lambda ctx: _count(Patient) == ctx["before"] + 1),
    Action("edit a patient", {"admin", "physician", "technologist"},
           lambda w: {"id": w.patient.id},
           lambda c, ctx: c.post(f"/patients/{ctx['id']}/edit", _patient_form("PERM-1", "Edited")),
           lambda ctx: _fresh(Patient, ctx["id"]).family_name == "Edited"),
    Action("add a modality type", {"admin"},
           lambda w: {"before": _count(ModalityType)},
           lambda c, ctx: c.post("/catalog/modalities/new", {"code": "OT", "name": "Other"}),
           lambda ctx: _count(ModalityType) == ctx["before"] + 1),
]


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_do_exactly_what_its_job_needs(world, login, role):
    c = login(role)
    wrong = []
    for action in ACTIONS:
        ctx = action.prepare(world)
        r = action.call(c, ctx)
        allowed = role in action.allowed
        want = action.ok_status if allowed else 403
        if r.status_code != want:
            wrong.append(f"{action.name}: {r.status_code}, expected {want}")
        elif action.done is not None and action.done(ctx) != allowed:
            wrong.append(f"{action.name}: answered {r.status_code} but the change "
                         f"{'did not happen' if allowed else 'happened'}")
    assert wrong == []


READ_ONLY = ["/", "/requests", "/requests?state=all", "/patients/", "/account"]


@pytest.mark.parametrize("role", ROLES)
def test_every_role_can_read_requests_results_and_patients(world, login, role):
    req = world.create_request(world.patient, submit=True)
    res = _result(world)
    c = login(role)
    paths = READ_ONLY + [f"/requests/{req.id}", f"/results/{res.id}", f"/results/{res.id}/print",
                         f"/patients/{world.patient.id}", "/patients/lookup?q=perm"]
    got = {p: c.get(p).status_code for p in paths}
    assert got == {p: 200 for p in paths}


ADMIN_ONLY = [(m, p) for m, p in PAGE_ROUTES if p.startswith(("/admin", "/catalog"))]


def test_the_admin_only_table_covers_users_settings_and_catalogue():
    paths = {p for _, p in ADMIN_ONLY}
    assert {"/admin/users", "/admin/settings/", "/catalog/", "/catalog/tests/new"} <= paths


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_only_admins_reach_admin_and_catalogue_pages(world, login, role):
    c = login(role)
    got = {(m, p): (c.get(p) if m == "GET" else c.post(p, {})).status_code for m, p in ADMIN_ONLY}
    assert got == {k: 403 for k in ADMIN_ONLY}


def test_admins_reach_every_admin_and_catalogue_page(world, login):
    """Known objects where this file creates them; elsewhere the filled-in id
    may not exist, and a 404 shows the role check let the admin through."""
    c = login("admin")
    mid = db.session.scalar(select(ModalityType.id).order_by(ModalityType.id))
    known = {"/admin/users/1": f"/admin/users/{world.users['physician'].id}",
             "/catalog/modalities/1": f"/catalog/modalities/{mid}",
             "/catalog/tests/1": f"/catalog/tests/{world.catalog['chest'].id}"}
    got, want = {}, {}
    for method, path in ADMIN_ONLY:
        if method != "GET":
            continue
        status = c.get(known.get(path, path)).status_code
        got[path] = status
        want[path] = status if path in FILLED_IN and path not in known and status == 404 else 200
    assert got == want
