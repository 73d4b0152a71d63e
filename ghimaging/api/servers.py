"""/api/v1 endpoints for one Orthanc server: what its check found, with the
warnings an administrator must act on (an encoding that damages names), and
changing its connection details."""

from __future__ import annotations

from flask import jsonify, request
from flask.typing import ResponseReturnValue

from ..extensions import db
from ..models import OrthancServer
from ..orthanc import background, servers
from ..permissions import Action
from .errors import invalid, not_found
from .routes import _str, body, bp, need

PATCHABLE = ("label", "url", "browser_url", "username", "password")


def _server(server_id: int) -> OrthancServer:
    server = db.session.get(OrthancServer, server_id)
    if server is None:
        raise not_found("Orthanc server")
    return server


# One rule for both methods: with two, werkzeug answered a PATCH to an id
# past the URL's bound (2**31-1) with 405 (the GET rule matched the path
# first) instead of the 404 a GET gets.
@bp.route("/orthanc/servers/<int:server_id>", methods=["GET", "PATCH"])
@need(Action.CONFIGURE)
def one_server(server_id: int) -> ResponseReturnValue:
    if request.method == "PATCH":
        return _patch_server(server_id)
    return jsonify(servers.server_json(_server(server_id)))


def _patch_server(server_id: int) -> ResponseReturnValue:
    """Change any of the fields; absent (or null) ones stay as they are. The
    rules are the edit page's (servers.update_server): a new scheme, host or
    port without the password answers 422, since the stored password belongs
    to the old address. New connection details are re-checked in the
    background, as on the page; GET the server for the outcome."""
    server = _server(server_id)
    data = body()
    unknown = sorted(set(data) - set(PATCHABLE))
    if unknown:
        raise invalid({key: f"Unknown field; send any of {', '.join(PATCHABLE)}." for key in unknown})
    values = {key: _str(data, key, getattr(server, key)) for key in ("label", "url", "browser_url", "username")}
    password = _str(data, "password")
    changed = servers.update_server(server, **values, password=password or None)
    db.session.commit()
    if changed:
        background.recheck_in_background(server.id)
    return jsonify(servers.server_json(server))
