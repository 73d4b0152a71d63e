"""/api/v1 endpoints for the catalogue of imaging tests."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from ..catalog import service as catalog
from ..extensions import db
from ..permissions import Action
from .errors import invalid
from .routes import _bool, _str, body, bp, need
from .serializers import test_json


@bp.get("/tests")
def list_tests() -> ResponseReturnValue:
    include_inactive = request.args.get("all") == "1"
    rows = catalog.active_tests() if not include_inactive else [
        t for m in catalog.all_modalities() for t in m.tests]
    return jsonify({"items": [test_json(t) for t in rows]})


@bp.post("/tests")
@need(Action.MANAGE_CATALOG)
def create_test() -> ResponseReturnValue:
    """A code another test has is 409 (``conflict``), other bad fields 422."""
    data = body()
    mod_code = _str(data, "modality")
    modality = catalog.modality_by_code(mod_code) if mod_code else None
    if modality is None:
        raise invalid({"modality": f"Unknown modality type {mod_code!r}; known: "
                       + ", ".join(m.code for m in catalog.all_modalities())})
    active = _bool(data, "active") if "active" in data else True
    t = catalog.save_test(None, code=_str(data, "code"), name=_str(data, "name"), modality=modality,
                          ae_title=_str(data, "ae_title"), worklist_template=_str(data, "worklist_template"),
                          active=active)
    db.session.commit()
    return jsonify(test_json(t)), 201
