"""Who may reach what, over every page route and every API route.

The routes are read from the application's URL map and the expected answers
from the permission map (:mod:`ghimaging.permissions`) and the action each
view declares (``requires`` and the API's ``need`` record it on the view as
``required_action``), so a page added later without ``requires`` (or with
the wrong action) makes these tests fail, and a rule changed in the map is
checked over every route at once.
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
from ghimaging.imaging import drafts, workflow
from ghimaging.models import ImagingRequest, ModalityType, Patient, Result, ResultAddendum, Role
from ghimaging.permissions import PERMISSIONS, allowed, roles_for
from ghimaging.permissions import Action as Permission
from tests.support.web import CsrfClient

ROLES = ("admin", "physician", "technologist", "radiologist")
PUBLIC_ENDPOINTS = {"auth.login", "static", "health.healthz"}
#: API routes that need no action: the API's own description.
API_PUBLIC_ENDPOINTS = {"api.openapi"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}

#: A throwaway app, read at collection time: its URL map and its views.
ROUTE_APP = create_app({"INSTANCE_PATH": tempfile.mkdtemp(prefix="ghimaging-routes-"),
                        "DATABASE_URL": "sqlite://", "TESTING": True})


def _routes(api: bool) -> list[tuple[str, str, str]]:
    """(method, path, endpoint) for every route of the pages (``api``
    False: not the API, not static) or of the API, with ids filled in (1,
    which may not exist)."""
    out = []
    for rule in ROUTE_APP.url_map.iter_rules():
        if rule.endpoint in PUBLIC_ENDPOINTS or rule.endpoint.startswith("api.") != api:
            continue
        path = rule.rule
        for name, conv in rule._converters.items():
            value = "1" if isinstance(conv, IntegerConverter) else "x.png"
            path = re.sub(rf"<(?:[^<>:]+:)?{name}>", value, path)
        assert "<" not in path, rule.rule
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, path, rule.endpoint))
    return out


def declared(endpoint: str) -> Permission | None:
    """The action the view of ``endpoint`` declares (None: none)."""
    return getattr(ROUTE_APP.view_functions[endpoint], "required_action", None)


def may(role: str, endpoint: str) -> bool:
    """What the permission map says ``role`` may do at ``endpoint``."""
    action = declared(endpoint)
    assert action is not None, f"{endpoint} declares no action"
    return allowed([Role(role)], action)


def endpoint_of(method: str, path: str) -> str:
    return ROUTE_APP.url_map.bind("localhost").match(urlsplit(path).path, method)[0]


PAGE_ROUTES_WITH_ENDPOINTS = _routes(api=False)
API_ROUTES = _routes(api=True)
PAGE_ROUTES = [(m, p) for m, p, _ in PAGE_ROUTES_WITH_ENDPOINTS]
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
    db.session.commit()  # the test is the boundary: the pages' sessions see it
    return res


@dataclass
class Action:
    """One thing a user may try at ``route`` (method, path with ids as 1);
    ``allowed`` lists the roles that may do it, as the clinic wants it (the
    permission map must say the same, see
    test_the_map_gives_each_action_the_roles_its_job_needs). ``prepare``
    makes the objects it acts on; ``done`` tells whether it took effect
    (checked both ways: done when allowed, untouched when refused)."""

    name: str
    route: tuple[str, str]
    allowed: set[str]
    prepare: Callable[[World], dict]
    call: Callable[[CsrfClient, dict], Any]
    done: Callable[[dict], bool] | None = None
    ok_status: int = 302

    @property
    def endpoint(self) -> str:
        return endpoint_of(*self.route)

    def by_the_map(self) -> set[str]:
        """The roles the permission map lets through this action's route."""
        return {role for role in ROLES if may(role, self.endpoint)}


def _order(c, ctx):
    return c.post("/requests/new", {"patient": "PERM-1", "tests": [str(ctx["test"])], "physician": "0",
                                    "action": "submit", "comment": "ordered"})


def _result_form(report: str) -> dict:
    return {"radiologist": "0", "result_date": date.today().isoformat(), "report_style": "with_images",
            "report": report}


def _patient_form(puid: str, family: str) -> dict:
    return {"puid": puid, "family_name": family, "given_name": "G", "sex": "F", "birth_date": "1990-01-01"}


ACTIONS = [
    Action("open the order form", ("GET", "/requests/new"), {"admin", "physician"}, lambda w: {},
           lambda c, ctx: c.get("/requests/new"), ok_status=200),
    Action("order", ("POST", "/requests/new"), {"admin", "physician"},
           lambda w: {"test": w.catalog["chest"].id, "before": _count(ImagingRequest)},
           _order, lambda ctx: _count(ImagingRequest) == ctx["before"] + 1),
    Action("edit a request", ("POST", "/requests/1/edit"), {"admin", "physician"},
           lambda w: {"id": w.create_request(w.patient).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/edit", {"physician": "0", "comment": "edited"}),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).comment == "edited"),
    Action("submit a request", ("POST", "/requests/1/submit"), {"admin", "physician"},
           lambda w: {"id": w.create_request(w.patient).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/submit"),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).state == "requested"),
    Action("cancel a request", ("POST", "/requests/1/cancel"), {"admin", "physician"},
           lambda w: {"id": w.create_request(w.patient, submit=True).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/cancel", {"reason": "ordered twice"}),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).state == "cancelled"),
    Action("open the result form", ("GET", "/requests/1/result"), {"admin", "radiologist"},
           lambda w: {"id": w.create_request(w.patient, submit=True).id},
           lambda c, ctx: c.get(f"/requests/{ctx['id']}/result"), ok_status=200),
    Action("write a result", ("POST", "/requests/1/result"), {"admin", "radiologist"},
           lambda w: {"id": w.create_request(w.patient, submit=True).id},
           lambda c, ctx: c.post(f"/requests/{ctx['id']}/result", _result_form("Normal chest.")),
           lambda ctx: _fresh(ImagingRequest, ctx["id"]).result is not None),
    Action("edit a result", ("POST", "/results/1/edit"), {"admin", "radiologist"},
           lambda w: {"id": _result(w).id},
           lambda c, ctx: c.post(f"/results/{ctx['id']}/edit", {**_result_form("Revised."),
                                                                 "version": drafts.version_of(_fresh(Result, ctx["id"]))}),
           lambda ctx: _fresh(Result, ctx["id"]).report == "Revised."),
    Action("finalise a result", ("POST", "/results/1/finalise"), {"admin", "radiologist"},
           lambda w: {"id": _result(w).id},
           lambda c, ctx: c.post(f"/results/{ctx['id']}/finalise"),
           lambda ctx: _fresh(Result, ctx["id"]).is_final),
    Action("add an addendum", ("POST", "/results/1/addenda"), {"admin", "radiologist"},
           lambda w: {"id": _result(w, final=True).id, "before": _count(ResultAddendum)},
           lambda c, ctx: c.post(f"/results/{ctx['id']}/addenda", {"text": "Compared with 2023."}),
           lambda ctx: _count(ResultAddendum) == ctx["before"] + 1),
    Action("register a patient", ("POST", "/patients/new"), {"admin", "physician", "technologist"},
           lambda w: {"before": _count(Patient)},
           lambda c, ctx: c.post("/patients/new", _patient_form("PERM-NEW", "New")),
           lambda ctx: _count(Patient) == ctx["before"] + 1),
    Action("edit a patient", ("POST", "/patients/1/edit"), {"admin", "physician", "technologist"},
           lambda w: {"id": w.patient.id},
           lambda c, ctx: c.post(f"/patients/{ctx['id']}/edit", _patient_form("PERM-1", "Edited")),
           lambda ctx: _fresh(Patient, ctx["id"]).family_name == "Edited"),
    Action("add a modality type", ("POST", "/catalog/modalities/new"), {"admin"},
           lambda w: {"before": _count(ModalityType)},
           lambda c, ctx: c.post("/catalog/modalities/new", {"code": "OT", "name": "Other"}),
           lambda ctx: _count(ModalityType) == ctx["before"] + 1),
]


def test_the_map_gives_each_action_the_roles_its_job_needs():
    """The clinic's rules above, read through the permission map and the
    action each route declares."""
    got = {a.name: a.by_the_map() for a in ACTIONS}
    assert got == {a.name: a.allowed for a in ACTIONS}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_do_exactly_what_its_job_needs(world, login, role):
    c = login(role)
    wrong = []
    for action in ACTIONS:
        ctx = action.prepare(world)
        r = action.call(c, ctx)
        allowed = role in action.by_the_map()
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
    paths = [*READ_ONLY, f"/requests/{req.id}", f"/results/{res.id}", f"/results/{res.id}/print",
             f"/patients/{world.patient.id}", "/patients/lookup?q=perm"]
    got = {p: c.get(p).status_code for p in paths}
    assert got == {p: 200 for p in paths}


#: Pages the permission map keeps for administrators.
ADMIN_ONLY_BY_THE_MAP = [(m, p) for m, p, e in PAGE_ROUTES_WITH_ENDPOINTS
                         if declared(e) is not None and roles_for(declared(e)) == {Role.ADMIN}]
ADMIN_ONLY = [(m, p) for m, p in ADMIN_ONLY_BY_THE_MAP if p.startswith(("/admin", "/catalog"))]


def test_the_admin_only_table_covers_users_settings_and_catalogue():
    paths = {p for _, p in ADMIN_ONLY}
    assert {"/admin/users", "/admin/settings/", "/catalog/", "/catalog/tests/new"} <= paths
    # Every page under /admin and /catalog is for administrators only.
    assert set(ADMIN_ONLY) == {(m, p) for m, p in PAGE_ROUTES if p.startswith(("/admin", "/catalog"))}


@pytest.mark.parametrize("role", [r for r in ROLES if r != "admin"])
def test_only_admins_reach_admin_and_catalogue_pages(world, login, role):
    c = login(role)
    got = {(m, p): (c.get(p) if m == "GET" else c.post(p, {})).status_code for m, p in ADMIN_ONLY_BY_THE_MAP}
    assert got == {k: 403 for k in ADMIN_ONLY_BY_THE_MAP}


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


# -- every route, every role: the map and the declared actions -------------------

def test_every_page_route_and_every_api_write_route_declares_an_action():
    """A view without ``requires`` (pages) or ``need`` (API writes) would be
    guarded by nothing the permission map says."""
    pages = sorted({e for _, _, e in PAGE_ROUTES_WITH_ENDPOINTS if declared(e) is None})
    api_writes = sorted({e for m, _, e in API_ROUTES
                         if m not in READ_METHODS and e not in API_PUBLIC_ENDPOINTS and declared(e) is None})
    assert (pages, api_writes) == ([], [])
    assert {a for a in (declared(e) for _, _, e in [*PAGE_ROUTES_WITH_ENDPOINTS, *API_ROUTES]) if a} <= set(PERMISSIONS)


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_the_pages_the_map_gives_it_and_no_other(world, login, role):
    """Refused (403) wherever the map does not give ``role`` the route's
    action, whatever the method; let through (a page, a redirect, or a 404
    for an id that does not exist) on every page it may read."""
    c = login(role)
    got, want = {}, {}
    for method, path, endpoint in PAGE_ROUTES_WITH_ENDPOINTS:
        if may(role, endpoint):
            if method != "GET" or endpoint == "auth.logout":
                continue  # writes by those allowed are the actions above and each area's tests
            status = c.get(path).status_code
            got[method, path] = status != 403
            want[method, path] = True
        else:
            r = c.get(path) if method == "GET" else c.post(path, {})
            got[method, path], want[method, path] = r.status_code, 403
    assert got == want


@pytest.mark.parametrize("role", ROLES)
def test_each_role_reaches_the_api_routes_the_map_gives_it_and_no_other(world, api, role):
    """Over the API with a bearer token: 403 ``forbidden`` where the map
    does not give the route's action to ``role``, never 403 where it does."""
    client = api(role)
    db.session.commit()  # the token the fixture made, for the test client's session
    got, want = {}, {}
    for method, path, endpoint in API_ROUTES:
        if endpoint in API_PUBLIC_ENDPOINTS:
            continue
        action = declared(endpoint)
        if action is not None and not allowed([Role(role)], action):
            r = client.client.open(path, method=method, json={}, headers=client.headers)
            got[method, path] = (r.status_code, (r.get_json(silent=True) or {}).get("error"))
            want[method, path] = (403, "forbidden")
        elif method == "GET":
            got[method, path] = client.get(path).status_code != 403
            want[method, path] = True
    assert got == want
