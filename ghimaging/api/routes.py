"""JSON API v1: the same services as the pages, bearer-token authentication."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import RequestEntityTooLarge

from ..auth import service as auth
from ..catalog import service as catalog
from ..extensions import db
from ..imaging import queries, workflow
from ..models import ImagingRequest, Patient, Role, User
from ..patients import service as patients
from ..permissions import Action
from ..querytools import bounded_int
from ..exceptions import DomainError
from .errors import ApiError, from_domain, bad_request, conflict, invalid, not_found
from .openapi import document
from .serializers import request_json, test_json

bp = Blueprint("api", __name__, url_prefix="/api/v1")
F = TypeVar("F", bound=Callable[..., Any])
MAX_PAGE = 200


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[Response, int]:
    return exc.response()


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> tuple[Response, int]:
    db.session.rollback()
    return from_domain(exc).response()


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc):
    limit, _ = json_limits()
    return ApiError(413, "too_large", f"The body is too large; the API takes at most {limit:,} bytes.").response()


@bp.before_request
def _bound_body():
    """No JSON body of ours comes near the upload limit (64 MB): read at
    most API_MAX_JSON_BYTES, whether the size is announced or streamed
    (chunked bodies reach us when the server marks them terminated)."""
    limit, _ = json_limits()
    # One byte more than allowed: a streamed body (no Content-Length) is cut
    # there without an error, and body() refuses what reaches the extra byte.
    request.max_content_length = limit + 1


@bp.before_request
def _authenticate():
    if request.endpoint == "api.openapi":
        return None
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "unauthorized", "Send 'Authorization: Bearer <token>'.")
    user = auth.user_for_token(token.strip())
    if user is None:
        raise ApiError(401, "unauthorized", "The token is not valid.")
    g.api_user = user
    return None


@bp.after_request
def _no_cookies(resp):
    resp.headers["Cache-Control"] = "no-store"
    return resp


def need(action: Action) -> Callable[[F], F]:
    """The API's decorator over the permission map (:mod:`ghimaging.permissions`)."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not g.api_user.can(action):
                raise ApiError(403, "forbidden", "Your role does not allow this.")
            return view(*args, **kwargs)

        wrapped.required_action = action  # type: ignore[attr-defined]  # read by the permission tests
        return wrapped  # type: ignore[return-value]

    return decorator


def json_limits() -> tuple[int, int]:
    """API_MAX_JSON_BYTES and API_MAX_JSON_DEPTH (config.py): a body of a
    few hundred KB covers the longest report (100,000 characters, each up to
    six bytes as a \\u escape); anything nested deeper than a few levels is
    not one of our documents."""
    return int(current_app.config["API_MAX_JSON_BYTES"]), int(current_app.config["API_MAX_JSON_DEPTH"])


def body() -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it.

    Parsed here rather than by ``request.get_json``: Python's parser
    recurses once per level and a body nested ~900 levels deep raised
    RecursionError (a 500). The size is bounded before reading (413, see
    :func:`_bound_body`), the depth after parsing, without recursion."""
    if not request.is_json:
        raise bad_request("Send a JSON object with Content-Type: application/json.")
    raw = request.get_data(cache=True)
    limit, max_depth = json_limits()
    if len(raw) > limit:
        raise RequestEntityTooLarge()
    too_deep = bad_request(f"The JSON is nested too deeply; at most {max_depth} levels are allowed.")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise too_deep from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"The body is not valid JSON ({_json_reason(exc)}).") from None
    if not isinstance(data, dict):
        raise bad_request("Send a JSON object with Content-Type: application/json.")
    depth, bad_text = _walk(data, max_depth)
    if depth > max_depth:
        raise too_deep
    if bad_text:
        raise bad_request("Text must not contain NUL characters or unpaired surrogates (\\ud800-\\udfff).")
    return data


def _json_reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno}, column {exc.colno}"
    return str(exc)[:200]


# NUL, and halves of a surrogate pair (JSON may spell "\\ud800" alone): no
# database column takes either (a lone surrogate failed at the INSERT, a 500).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _walk(data: Any, max_depth: int) -> tuple[int, bool]:
    """(depth, whether any key or string holds text no column can store),
    with an explicit stack: stops as soon as ``max_depth`` is passed."""
    deepest, bad = 0, False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            bad = bad or _BAD_TEXT.search(value) is not None
        elif isinstance(value, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > max_depth:
                return deepest, bad
            if isinstance(value, dict):
                bad = bad or any(_BAD_TEXT.search(k) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)
    return deepest, bad


def _str(data: dict, key: str, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise invalid({key: "Must be a string."})
    return value


def _bool(data: dict, key: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise invalid({key: "Must be true or false."})
    return value


def _page() -> tuple[int, int]:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 50))
    except ValueError:
        raise bad_request("page and per_page must be whole numbers.") from None
    if not 1 <= page <= 1_000_000 or not 1 <= per_page <= MAX_PAGE:
        raise bad_request(f"page must be between 1 and 1000000 and per_page between 1 and {MAX_PAGE}.")
    return page, per_page


def _paged(stmt, serialize) -> dict[str, Any]:
    page, per_page = _page()
    p = db.paginate(stmt, page=page, per_page=per_page, error_out=False, count=True)
    return {"items": [serialize(x) for x in p.items], "page": page, "per_page": per_page, "total": p.total}


@bp.get("/openapi.json")
def openapi():
    return jsonify(document(request.url_root.rstrip("/") + "/api/v1"))


@bp.get("/me")
def me():
    u = g.api_user
    return jsonify(id=u.id, username=u.username, roles=sorted(r.value for r in u.roles))


# -- patients ---------------------------------------------------------------

@bp.get("/patients")
def list_patients():
    puid = request.args.get("puid")
    if puid is not None:
        _page()  # not used for one patient, but checked like everywhere else
        p = patients.by_puid(puid)
        return jsonify({"items": [patients.to_json(p)] if p else [], "page": 1, "per_page": 1,
                        "total": 1 if p else 0})
    return jsonify(_paged(patients.search_query(request.args.get("q", "")), patients.to_json))


@bp.get("/patients/<int:patient_id>")
def get_patient(patient_id: int):
    p = db.session.get(Patient, patient_id)
    if p is None:
        raise not_found("Patient")
    return jsonify(patients.to_json(p))


@bp.post("/patients")
@need(Action.EDIT_PATIENTS)
def create_patient():
    data = body()
    wrong = {key: "Must be a string." for key in ("puid", "family_name", "given_name", "birth_date", "sex",
                                                  "phone", "notes")
             if data.get(key) is not None and not isinstance(data.get(key), str)}
    if wrong:
        raise invalid(wrong)
    try:
        p = patients.create_patient(data)
    except patients.PatientError as exc:
        if set(exc.errors) == {"puid"} and "already" in exc.errors["puid"]:
            raise conflict(exc.errors["puid"]) from None
        raise invalid(exc.errors) from None
    resp = jsonify(patients.to_json(p))
    resp.status_code = 201
    resp.headers["Location"] = url_for("api.get_patient", patient_id=p.id)
    return resp


# -- catalogue --------------------------------------------------------------

@bp.get("/tests")
def list_tests():
    include_inactive = request.args.get("all") == "1"
    rows = catalog.active_tests() if not include_inactive else [
        t for m in catalog.all_modalities() for t in m.tests]
    return jsonify({"items": [test_json(t) for t in rows]})


@bp.post("/tests")
@need(Action.MANAGE_CATALOG)
def create_test():
    data = body()
    mod_code = _str(data, "modality")
    modality = catalog.modality_by_code(mod_code) if mod_code else None
    if modality is None:
        raise invalid({"modality": f"Unknown modality type {mod_code!r}; known: "
                       + ", ".join(m.code for m in catalog.all_modalities())})
    active = data.get("active", True)
    if not isinstance(active, bool):
        raise invalid({"active": "Must be true or false."})
    try:
        t = catalog.save_test(None, code=_str(data, "code"), name=_str(data, "name"), modality=modality,
                              ae_title=_str(data, "ae_title"),
                              worklist_template=_str(data, "worklist_template"), active=active)
    except catalog.CatalogError as exc:
        if "already exists" in str(exc):
            raise conflict(str(exc)) from None
        raise invalid({exc.field or "code": str(exc)}) from None
    except IntegrityError:
        # The unique index saw a code the service's lookup missed (on SQLite,
        # lower() folds only ASCII: 'CT-Ä' twice), or a simultaneous insert.
        db.session.rollback()
        raise conflict(f"A test with code {_str(data, 'code').strip()} already exists.") from None
    return jsonify(test_json(t)), 201


# -- requests ---------------------------------------------------------------

def _get_request(request_id: int) -> ImagingRequest:
    req = db.session.get(ImagingRequest, request_id)
    if req is None:
        raise not_found("Request")
    return req


def _user_ref(data: dict, key: str) -> User | None:
    name = _str(data, key)
    if not name:
        return None
    u = auth.find_user(name)
    if u is None:
        raise invalid({key: f"No user {name!r}."})
    return u


@bp.get("/requests")
def list_requests():
    state = request.args.get("state", "all") or "all"
    if state not in queries.TABS:
        raise bad_request(f"state must be one of {', '.join(queries.TABS)}.")
    pid = request.args.get("patient_id")
    patient_id = bounded_int(pid) if pid else None
    if pid and patient_id is None:
        raise bad_request("patient_id must be a whole number.")
    stmt = queries.request_list(state, request.args.get("q", ""), patient_id)
    gh = request.args.get("gnuhealth_request_id")
    if gh:
        from ..gnuhealth import status as gnuhealth_status

        gh_id = bounded_int(gh)
        if gh_id is None:
            raise bad_request("gnuhealth_request_id must be a whole number.")
        stmt = stmt.where(gnuhealth_status.request_filter(gh_id))
    return jsonify(_paged(stmt, request_json))


def request_detail(req: ImagingRequest) -> dict[str, Any]:
    """A request with its events and result, and the truth about its
    worklist file (written when / missing and why / not offered and why)."""
    from ..worklists import file_status

    out = request_json(req, detail=True)
    out["worklist"] = file_status(req).as_json()
    return out


def _worklist_refused(exc: workflow.WorklistRefused) -> ApiError:
    return ApiError(422, exc.code, exc.message, characters=exc.characters, template=exc.template or None,
                    fields=exc.errors)


@bp.get("/requests/<int:request_id>")
def get_request(request_id: int):
    return jsonify(request_detail(_get_request(request_id)))


@bp.post("/requests")
@need(Action.ORDER)
def create_request():
    data = body()
    pid = data.get("patient_id")
    if not isinstance(pid, int) or isinstance(pid, bool):
        raise invalid({"patient_id": "Must be the id of a patient (a whole number)."})
    patient = db.session.get(Patient, pid) if bounded_int(pid) else None
    if patient is None:
        raise invalid({"patient_id": f"No patient with id {pid}."})
    codes = data.get("test_codes")
    if codes is None:
        codes = [_str(data, "test_code")]
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        raise invalid({"test_code": "Give test_code (a string) or test_codes (a list of strings)."})
    tests = []
    for code in codes:
        t = catalog.test_by_code(code)
        if t is None:
            raise invalid({"test_code": f"Unknown test {code!r}."})
        tests.append(t)
    try:
        scheduled_at = workflow.parse_scheduled(_str(data, "scheduled_at"))
    except workflow.ValidationError as exc:
        raise invalid(exc.errors) from None
    physician = _user_ref(data, "physician")
    if physician is None and Role.PHYSICIAN in g.api_user.roles:
        physician = g.api_user
    try:
        created = workflow.create_order(
            patient, tests, user=g.api_user, physician=physician, urgent=_bool(data, "urgent"),
            clinical_context=_str(data, "clinical_context"), comment=_str(data, "comment"),
            scheduled_at=scheduled_at, submit=_bool(data, "submit"))
    except workflow.WorklistRefused as exc:
        raise _worklist_refused(exc) from None
    except workflow.ValidationError as exc:
        raise invalid(exc.errors) from None
    except workflow.WorklistUnwritable as exc:
        raise ApiError(503, "worklist_unwritable", str(exc)) from None
    if len(created) == 1:
        resp = jsonify(request_detail(created[0]))
        resp.headers["Location"] = url_for("api.get_request", request_id=created[0].id)
    else:
        resp = jsonify({"items": [request_json(r) for r in created], "order_number": created[0].order_number})
    resp.status_code = 201
    return resp


def _transition(fn: Callable[[], Any], req: ImagingRequest):
    try:
        fn()
    except workflow.TransitionError as exc:
        raise ApiError(409, "illegal_transition", str(exc), state=req.state) from None
    except workflow.WorklistRefused as exc:
        raise _worklist_refused(exc) from None
    except workflow.ValidationError as exc:
        raise invalid(exc.errors) from None
    except workflow.WorklistUnwritable as exc:
        raise ApiError(503, "worklist_unwritable", str(exc)) from None
    return jsonify(request_detail(req))


@bp.post("/requests/<int:request_id>/submit")
@need(Action.ORDER)
def submit_request(request_id: int):
    req = _get_request(request_id)
    return _transition(lambda: workflow.submit(req, g.api_user), req)


@bp.post("/requests/<int:request_id>/cancel")
@need(Action.ORDER)
def cancel_request(request_id: int):
    req = _get_request(request_id)
    data = body()
    reason = _str(data, "reason")
    return _transition(lambda: workflow.cancel(req, g.api_user, reason), req)


@bp.post("/requests/<int:request_id>/result")
@need(Action.REPORT)
def create_result(request_id: int):
    req = _get_request(request_id)
    data = body()
    report = _str(data, "report")
    day = _str(data, "date")
    try:
        result_date = date.fromisoformat(day) if day else date.today()
    except ValueError:
        raise invalid({"date": "Use YYYY-MM-DD."}) from None
    problem = workflow.date_problem(result_date, "The date of the result")
    if problem:
        raise invalid({"date": problem})
    radiologist = _user_ref(data, "radiologist")
    if radiologist is None and Role.RADIOLOGIST in g.api_user.roles:
        radiologist = g.api_user
    style = _str(data, "report_style", "with_images")
    final = _bool(data, "final")  # checked before anything is written
    if final and not report.strip():
        raise invalid({"report": "Write the report before finalising it."})
    resp = _transition(lambda: workflow.create_result(
        req, g.api_user, radiologist=radiologist, result_date=result_date, report=report,
        report_style=style), req)
    if final:
        _transition(lambda: workflow.finalise_result(req.result, g.api_user), req)
        resp = jsonify(request_detail(req))
    resp.status_code = 201
    return resp


@bp.get("/requests/<int:request_id>/worklist")
def request_worklist(request_id: int):
    """The rendered worklist text of a request, whether its file is live,
    and the truth about the file (``file``: written / missing and why)."""
    from ..worklists import UnencodableError, build_file, file_status, writer
    from ..worklists.dicomfile import DumpError
    from ..worklists.render import RenderError

    req = _get_request(request_id)
    status = file_status(req).as_json()
    try:
        data = build_file(req)
    except UnencodableError as exc:
        raise ApiError(422, "worklist_charset", str(exc), characters=exc.characters, template=exc.template,
                       file=status) from None
    except (RenderError, DumpError, ValueError) as exc:
        raise ApiError(422, "worklist_error", str(exc), file=status) from None
    return jsonify({"request_id": req.id, "filename": writer.filename(req), "live": writer.is_live(req),
                    "template": data.template.name, "charset": data.charset,
                    "template_charset": data.template.charset, "fallback": data.fallback,
                    "warnings": data.warnings, "file": status, "text": data.text})
