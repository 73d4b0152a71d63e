"""Pictures and documents of instances, passed through the application.

The browser never talks to Orthanc: these views fetch from it with the
server's stored credentials and answer only to signed-in users, so no
Orthanc password or address reaches a page. Rendering rules live in
:mod:`.rendering`.
"""

from __future__ import annotations

import logging

from flask import Response, abort, current_app
from flask.typing import ResponseReturnValue

from .. import crypto
from ..auth.decorators import requires
from ..extensions import db
from ..models import OrthancServer
from ..permissions import Action
from . import instances, streaming
from .client import NotFound, OrthancError, TimedOut
from .instances import valid_id
from .rendering import CannotDecode, NotAnImage, display_png
from .routes import bp

log = logging.getLogger(__name__)


def _server_and_id(server_id: int, orthanc_id: str) -> OrthancServer:
    """404 for an id that is not an Orthanc id (never passed on to Orthanc's
    URL space) or an unknown server."""
    if not valid_id(orthanc_id):
        abort(404)
    return db.get_or_404(OrthancServer, server_id)


def _failed(what: str, server: OrthancServer, orthanc_id: str, exc: Exception) -> Response:
    """504 when Orthanc did not answer in time, else 502; a sentence in the
    body (the page's script shows a placeholder either way)."""
    current_app.logger.warning("%s %s from %s failed: %s", what, orthanc_id, server.label, exc)
    status = 504 if isinstance(exc, TimedOut) else 502
    return Response(instances.failure_message(server, exc), status=status, mimetype="text/plain")


@bp.route("/servers/<int:server_id>/instances/<orthanc_id>/preview")
@requires(Action.VIEW)
def preview(server_id: int, orthanc_id: str) -> ResponseReturnValue:
    """The instance as ghimaging shows it everywhere (see ``display_png``),
    within ``ORTHANC_PREVIEW_DEADLINE`` seconds for all its calls.
    Orthanc ids never change content, so the browser may keep it."""
    server = _server_and_id(server_id, orthanc_id)
    seconds = instances.setting("ORTHANC_PREVIEW_DEADLINE")
    try:
        with instances.calling(server, seconds=seconds) as client:
            data = display_png(client, orthanc_id)
    except NotFound:
        abort(404)
    except (NotAnImage, CannotDecode) as exc:
        # The page shows a placeholder for these (static/js/app.js).
        return Response(str(exc), status=415, mimetype="text/plain")
    except (OrthancError, crypto.CredentialError) as exc:
        return _failed("preview", server, orthanc_id, exc)
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return resp


@bp.route("/servers/<int:server_id>/instances/<orthanc_id>/pdf")
@requires(Action.VIEW)
def instance_pdf(server_id: int, orthanc_id: str) -> ResponseReturnValue:
    """The PDF of an encapsulated PDF instance, shown by the browser's own
    viewer (see ``streaming.instance_pdf``); anything else is 404, 502 or
    504 when Orthanc does not answer in time."""
    server = _server_and_id(server_id, orthanc_id)
    try:
        return streaming.instance_pdf(server, orthanc_id)
    except NotFound:
        abort(404)
    except streaming.DownloadFailed as exc:
        return Response(str(exc), status=504 if exc.timeout else 502, mimetype="text/plain")
