"""/api/v1 endpoints for the local patient registry."""

from __future__ import annotations

from flask import Response, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..extensions import db
from ..models import Patient
from ..patients import service as patients
from ..permissions import Action
from .errors import ApiError, invalid, not_found
from .routes import _page, _paged, body, bp, need

FIELDS = ("puid", "family_name", "given_name", "birth_date", "sex", "phone", "notes", "alerts")


@bp.get("/patients")
def list_patients() -> ResponseReturnValue:
    puid = request.args.get("puid")
    if puid is not None:
        _page()  # not used for one patient, but checked like everywhere else
        p = patients.by_puid(puid)
        return jsonify({"items": [patients.to_json(p)] if p else [], "page": 1, "per_page": 1,
                        "total": 1 if p else 0})
    return jsonify(_paged(patients.search_query(request.args.get("q", "")), patients.to_json))


@bp.get("/patients/<int:patient_id>")
def get_patient(patient_id: int) -> ResponseReturnValue:
    p = db.session.get(Patient, patient_id)
    if p is None:
        raise not_found("Patient")
    return jsonify(patients.to_json(p))


@bp.post("/patients")
@need(Action.EDIT_PATIENTS)
def create_patient() -> Response:
    """A PUID another patient has is 409 (``conflict``), other bad fields
    422. A patient born the same day with a similar name is 409
    ``probable_duplicate`` with the ``candidates``, unless the body says
    ``"confirm_new": true``. Without ``puid``, a clinic that allocates PUIDs
    gives the next one (else 422: it is required)."""
    data = body()
    wrong = {key: _("Must be a string.") for key in FIELDS
             if data.get(key) is not None and not isinstance(data.get(key), str)}
    confirm = data.get("confirm_new", False)
    if not isinstance(confirm, bool):
        wrong["confirm_new"] = _("Must be true or false.")
    if wrong:
        raise invalid(wrong)
    try:
        p = patients.create_patient({k: data.get(k) for k in FIELDS if k in data}, confirm_new=confirm)
    except patients.ProbableDuplicate as exc:
        db.session.rollback()
        raise ApiError(409, exc.code, exc.message,
                       candidates=[patients.to_json(c) for c in exc.candidates]) from None
    db.session.commit()
    resp = jsonify(patients.to_json(p))
    resp.status_code = 201
    resp.headers["Location"] = url_for("api.get_patient", patient_id=p.id)
    return resp
