"""/api/v1 endpoints for imaging requests and their results.

Each view parses the body, calls one service of :mod:`ghimaging.imaging`
and commits once: a request created and submitted, or a result written and
finalised, is one transaction (all of it stays, or none)."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..extensions import db
from ..imaging import checks, ordering, people, queries, reporting, workflow
from ..models import ImagingRequest, Role
from ..permissions import Action
from ..querytools import bounded_int
from .errors import ApiError, bad_request, invalid, not_found
from .routes import _bool, _paged, _str, api_user, body, bp, need
from .serializers import request_json


def _get_request(request_id: int) -> ImagingRequest:
    req = db.session.get(ImagingRequest, request_id)
    if req is None:
        raise not_found("Request")
    return req


@bp.get("/requests")
def list_requests() -> ResponseReturnValue:
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


@bp.get("/requests/<int:request_id>")
def get_request(request_id: int) -> ResponseReturnValue:
    return jsonify(request_detail(_get_request(request_id)))


def _test_codes(data: dict[str, Any]) -> list[str]:
    codes = data.get("test_codes")
    if codes is None:
        codes = [_str(data, "test_code")]
    if not isinstance(codes, list) or not all(isinstance(c, str) and c for c in codes):
        raise invalid({"test_code": "Give test_code (a string) or test_codes (a list of strings)."})
    return codes


@bp.post("/requests")
@need(Action.ORDER)
def create_request() -> Response:
    data = body()
    user = api_user()
    patient = ordering.patient_by_id(data.get("patient_id"))
    tests = ordering.tests_by_code(_test_codes(data))
    scheduled_at = checks.parse_scheduled(_str(data, "scheduled_at"))
    if workflow.scheduled_in_past(scheduled_at) and not _bool(data, "confirm_past"):
        # The page's "Yes, schedule in the past" box: a slip of the year is
        # caught, a deliberate past time (a walk-in entered late) is kept.
        raise invalid({"scheduled_at": _("This time is more than an hour in the past; send confirm_past: true "
                                         "to keep it.")})
    physician = people.or_self(people.by_name(_str(data, "physician"), "physician"), user, Role.PHYSICIAN)
    order = ordering.Order(patient, tests, physician=physician, urgent=_bool(data, "urgent"),
                           clinical_context=_str(data, "clinical_context"), comment=_str(data, "comment"),
                           scheduled_at=scheduled_at, submit=_bool(data, "submit"))
    created = ordering.place(order, user)
    db.session.commit()
    if len(created) == 1:
        resp = jsonify(request_detail(created[0]))
        resp.headers["Location"] = url_for("api.get_request", request_id=created[0].id)
    else:
        resp = jsonify({"items": [request_json(r) for r in created], "order_number": created[0].order_number})
    resp.status_code = 201
    return resp


@bp.post("/requests/<int:request_id>/submit")
@need(Action.ORDER)
def submit_request(request_id: int) -> ResponseReturnValue:
    req = _get_request(request_id)
    workflow.submit(req, api_user())
    db.session.commit()
    return jsonify(request_detail(req))


@bp.post("/requests/<int:request_id>/cancel")
@need(Action.ORDER)
def cancel_request(request_id: int) -> ResponseReturnValue:
    req = _get_request(request_id)
    reason = _str(body(), "reason")
    workflow.cancel(req, api_user(), reason)
    db.session.commit()
    return jsonify(request_detail(req))


@bp.post("/requests/<int:request_id>/result")
@need(Action.REPORT)
def create_result(request_id: int) -> ResponseReturnValue:
    """Write the result; with ``final`` it is finalised in the same
    transaction (a failure of either step leaves nothing)."""
    req = _get_request(request_id)
    data = body()
    user = api_user()
    report = _str(data, "report")
    result_date = checks.parse_result_date(_str(data, "date"))
    radiologist = people.or_self(people.by_name(_str(data, "radiologist"), "radiologist"), user, Role.RADIOLOGIST)
    style = _str(data, "report_style", "with_images")
    reporting.create_result(req, user, radiologist=radiologist, result_date=result_date, report=report,
                            report_style=style, final=_bool(data, "final"))
    db.session.commit()
    return jsonify(request_detail(req)), 201


@bp.get("/requests/<int:request_id>/worklist")
def request_worklist(request_id: int) -> ResponseReturnValue:
    """The rendered worklist text of a request, whether its file is live,
    and the truth about the file (``file``: written / missing and why)."""
    from ..worklists import UnencodableError, build_file, file_status, writer
    from ..worklists.dicomfile import DumpError
    from ..worklists.errors import RenderError

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
