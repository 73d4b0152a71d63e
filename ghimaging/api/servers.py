"""/api/v1 endpoint for one Orthanc server, with what its check found and
the warnings an administrator must act on (an encoding that damages names)."""

from __future__ import annotations

from flask import jsonify

from ..extensions import db
from ..models import OrthancServer, Role
from ..orthanc import servers
from .errors import not_found
from .routes import bp, need


@bp.get("/orthanc/servers/<int:server_id>")
@need(Role.ADMIN)
def get_server(server_id: int):
    server = db.session.get(OrthancServer, server_id)
    if server is None:
        raise not_found("Orthanc server")
    return jsonify(servers.server_json(server))
