"""Pictures and documents of instances, passed through the application.

The browser never talks to Orthanc: these views fetch from it with the
server's stored credentials and answer only to signed-in users, so no
Orthanc password or address reaches a page. Rendering rules live in
:mod:`.rendering`.
"""

from __future__ import annotations

from flask import Response, abort, current_app
from flask_login import login_required

from .. import crypto
from ..extensions import db
from ..models import OrthancServer
from . import servers
from .client import NotFound, OrthancError
from .instances import valid_id
from .rendering import CannotDecode, NotAnImage, display_png
from .routes import bp


def _server_and_id(server_id: int, orthanc_id: str) -> OrthancServer:
    """404 for an id that is not an Orthanc id (never passed on to Orthanc's
    URL space) or an unknown server."""
    if not valid_id(orthanc_id):
        abort(404)
    return db.get_or_404(OrthancServer, server_id)


@bp.route("/servers/<int:server_id>/instances/<orthanc_id>/preview")
@login_required
def preview(server_id: int, orthanc_id: str):
    """The instance as ghimaging shows it everywhere (see ``display_png``).
    Orthanc ids never change content, so the browser may keep it."""
    server = _server_and_id(server_id, orthanc_id)
    try:
        with servers.client_for(server, timeout=(3.05, 20)) as client:
            data = display_png(client, orthanc_id)
    except NotFound:
        abort(404)
    except (NotAnImage, CannotDecode) as exc:
        # The page shows a placeholder for these (static/js/app.js).
        return Response(str(exc), status=415, mimetype="text/plain")
    except (OrthancError, crypto.CredentialError) as exc:
        current_app.logger.warning("preview %s from %s failed: %s", orthanc_id, server.label, exc)
        return Response(status=502)
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "private, max-age=86400, immutable"
    return resp


@bp.route("/servers/<int:server_id>/instances/<orthanc_id>/pdf")
@login_required
def instance_pdf(server_id: int, orthanc_id: str):
    """The PDF of an encapsulated PDF instance, streamed in chunks and shown
    by the browser's own viewer. Anything else is 404: Orthanc's ``/pdf``
    answers only for instances that hold a PDF."""
    server = _server_and_id(server_id, orthanc_id)
    try:
        client = servers.client_for(server, timeout=(3.05, 60))
    except crypto.CredentialError as exc:
        current_app.logger.warning("PDF %s from %s failed: %s", orthanc_id, server.label, exc)
        return Response(status=502)
    try:
        upstream = client.pdf(orthanc_id)
        chunks = upstream.iter_content(256 * 1024)
        first = next(chunks, b"")
    except NotFound:
        client.close()
        abort(404)
    except (OrthancError, OSError) as exc:  # OSError: the stream broke (requests' errors are OSErrors)
        client.close()
        current_app.logger.warning("PDF %s from %s failed: %s", orthanc_id, server.label, exc)
        return Response(status=502)
    if not first.startswith(b"%PDF"):  # never pass on something else as a PDF
        upstream.close()
        client.close()
        return Response(status=502)

    def body():  # needs no request context: only the upstream answer
        try:
            yield first
            yield from chunks
        finally:
            upstream.close()
            client.close()

    resp = Response(body(), mimetype="application/pdf")
    resp.headers["Content-Disposition"] = f'inline; filename="document-{orthanc_id[:8]}.pdf"'
    if upstream.headers.get("Content-Length"):
        resp.headers["Content-Length"] = upstream.headers["Content-Length"]
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
