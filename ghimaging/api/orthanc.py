"""/api/v1 endpoints for Orthanc servers and mirrored studies."""

from __future__ import annotations

from typing import Any

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from ..extensions import db
from ..models import ImagingRequest, OrthancServer, OrthancStudy
from ..orthanc import queries, servers, sync
from ..permissions import Action
from ..querytools import bounded_int
from .errors import ApiError, invalid, not_found
from .routes import _paged, _str, body, bp, need


@bp.get("/orthanc/servers")
@need(Action.CONFIGURE)
def list_servers() -> ResponseReturnValue:
    rows = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    return jsonify({"items": [servers.server_json(s) for s in rows]})


@bp.post("/orthanc/servers")
@need(Action.CONFIGURE)
def add_server() -> ResponseReturnValue:
    from ..orthanc import instances
    from ..orthanc.client import deadline

    """Check the server for real, then add it: 422 with ``fields`` when the
    input is refused (``error`` validation) or the check fails
    (``check_failed``), 409 when the label is taken."""
    data = body()
    with deadline(instances.setting("ORTHANC_PAGE_DEADLINE")):  # the caller waits for the check
        server = servers.add_server(label=_str(data, "label"), url=_str(data, "url"),
                                    username=_str(data, "username"), password=_str(data, "password"),
                                    browser_url=_str(data, "browser_url"))
    db.session.commit()
    return jsonify(servers.server_json(server)), 201


@bp.post("/orthanc/servers/<int:server_id>/sync")
@need(Action.PERFORM)
def sync_server(server_id: int) -> ResponseReturnValue:
    if db.session.get(OrthancServer, server_id) is None:
        raise not_found("Orthanc server")
    full = request.args.get("full") in ("1", "true", "yes")
    summary = sync.run(server_id, mode="full" if full else "auto", client_factory=servers.client_for_person)
    db.session.commit()
    status = 200 if not summary.error else 502
    if summary.skipped:
        status = 409
    return jsonify(summary.as_dict()), status


@bp.post("/orthanc/servers/<int:server_id>/wake")
@need(Action.WAKE_SYNC)
def wake_server(server_id: int) -> ResponseReturnValue:
    """Ask for a sync now (Orthanc's push calls this): recorded and answered
    at once, the sync runs in the background loop. Never calls Orthanc."""
    from ..orthanc import wake

    wanted = wake.want_sync(server_id)  # NotFound: 404
    db.session.commit()
    wake.nudge()
    return jsonify({"server_id": server_id, "wanted_at": wake.epoch_ms(wanted)}), 202


@bp.get("/studies")
def list_studies() -> ResponseReturnValue:
    stmt = select(OrthancStudy)
    for arg, col in (("study_instance_uid", OrthancStudy.study_uid),
                     ("accession_number", OrthancStudy.accession_number),
                     ("patient_id", OrthancStudy.patient_id)):
        value = request.args.get(arg)
        if value:
            stmt = stmt.where(col == value)
    server = request.args.get("server_id")
    if server:
        server_id = bounded_int(server)
        if server_id is None:
            raise ApiError(400, "bad_request", "server_id must be a whole number.")
        stmt = stmt.where(OrthancStudy.server_id == server_id)
    return jsonify(_paged(stmt.order_by(OrthancStudy.study_date.desc(), OrthancStudy.id.desc()),
                          queries.study_json))


@bp.get("/studies/<int:study_id>")
def get_study(study_id: int) -> ResponseReturnValue:
    study = db.session.get(OrthancStudy, study_id)
    if study is None:
        raise not_found("Study")
    out = queries.study_json(study)
    out["series"] = [{"series_instance_uid": s.series_uid, "orthanc_id": s.orthanc_id, "number": s.number,
                      "description": s.description, "modality": s.modality, "instance_count": s.instance_count}
                     for s in study.series]
    from ..orthanc import matching

    out["warnings"] = matching.warnings_of(study)
    return jsonify(out)


@bp.get("/studies/unmatched")
def unmatched_studies() -> ResponseReturnValue:
    from ..orthanc import matching

    def with_reasons(study: OrthancStudy) -> dict[str, Any]:
        out = queries.study_json(study)
        out["reasons"] = matching.assess(study).reasons
        out["suggestions"] = [{"request_id": sug.request.id, "accession_number": sug.request.accession_number,
                               "same_patient": sug.same_patient, "reasons": sug.reasons}
                              for sug in matching.suggestions(study, limit=3)]
        return out

    return jsonify(_paged(matching.unmatched(), with_reasons))


def _study_and_request(study_id: int) -> tuple[OrthancStudy, ImagingRequest, dict[str, Any]]:
    study = db.session.get(OrthancStudy, study_id)
    if study is None:
        raise not_found("Study")
    data = body()
    rid = data.get("request_id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise invalid({"request_id": "Must be the id of a request (a whole number)."})
    req = db.session.get(ImagingRequest, rid) if 0 < rid <= 2**31 - 1 else None
    if req is None:
        raise invalid({"request_id": f"No request with id {rid}."})
    return study, req, data


def _linked_json(study: OrthancStudy) -> dict[str, Any]:
    from ..orthanc import matching

    out = queries.study_json(study)
    links = matching.requests_of(study)
    out["requests"] = [link.request_id for link in links]
    out["links"] = [{"request_id": link.request_id, "method": link.method, "other_patient": link.other_patient,
                     "reason": link.reason or None, "warning": link.warning or None} for link in links]
    out["warnings"] = matching.warnings_of(study)
    out["warning"] = matching.patient_conflict(study) or None
    return out


@bp.post("/studies/<int:study_id>/link")
@need(Action.LINK_STUDIES)
def link_study(study_id: int) -> ResponseReturnValue:
    """Link by hand. A study of another patient answers 409 unless the body
    has ``"confirm_other_patient": true`` and a non-empty ``"reason"``."""
    from ..orthanc import matching

    study, req, data = _study_and_request(study_id)
    confirm = data.get("confirm_other_patient", False)
    reason = data.get("reason", "")
    if not isinstance(confirm, bool):
        raise invalid({"confirm_other_patient": "Must be true or false."})
    if not isinstance(reason, str):
        raise invalid({"reason": "Must be text."})
    matching.link(study, req, g.api_user, confirm_other_patient=confirm, reason=reason)  # LinkError: 409
    db.session.commit()
    return jsonify(_linked_json(study)), 201


@bp.post("/studies/<int:study_id>/unlink")
@need(Action.LINK_STUDIES)
def unlink_study(study_id: int) -> ResponseReturnValue:
    from ..orthanc import matching

    study, req, _ = _study_and_request(study_id)
    matching.unlink(study, req, g.api_user)  # LinkError: 409
    db.session.commit()
    return jsonify(_linked_json(study))
