"""Error pages for people and JSON errors for the API: never a bare 500
page for bad input, never a stack trace to the browser.

The pages' one mapping of the typed errors (:mod:`ghimaging.exceptions`)
lives here; the API's is :mod:`ghimaging.api.errors`. A view that can say
more (a form with field errors) catches the error itself; whatever it does
not catch becomes an error page with the right status and the message."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .exceptions import Conflict, DomainError, Invalid, NotFound, UpstreamFailure


def _wants_json() -> bool:
    """The API, the upload page's script (it asks for JSON), and the
    endpoints of the light sign-in (the viewer's frames: the widget reads
    the message, and a page would be drawn for a light user)."""
    from .auth.light import is_light

    return (request.path.startswith("/api/") or request.args.get("format") == "json"
            or request.accept_mimetypes.best == "application/json" or is_light())


_PAGE_STATUS: dict[type[DomainError], tuple[int, str]] = {
    NotFound: (404, _l("Not found")),
    Conflict: (409, _l("Not possible now")),
    Invalid: (422, _l("Not accepted")),
    UpstreamFailure: (502, _l("Not reachable")),
}


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> ResponseReturnValue:
        message = _("The form expired or was sent from another page. Go back, reload and try again.")
        if _wants_json():
            return jsonify(error="csrf", message=message), 400
        return render_template("error.html", code=400, title=_("Form expired"), message=message), 400

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> ResponseReturnValue:
        from .imaging.images import human_size

        limit = request.max_content_length or app.config.get("MAX_CONTENT_LENGTH") or 0
        if request.content_length is not None and request.content_length <= limit:
            parts = request.max_form_parts or 0
            message = _("Too many files in one upload; the limit is %(max)s files. Upload in parts.", max=max(parts - 100, 0))
        else:
            message = _("The upload is too large; the limit is %(limit)s.", limit=human_size(limit))
        if _wants_json():
            return jsonify(error="too_large", message=message), 413
        return render_template("error.html", code=413, title=_("Too large"), message=message), 413

    @app.errorhandler(DomainError)
    def domain_error(exc: DomainError) -> ResponseReturnValue:
        from .extensions import db

        db.session.rollback()
        status, title = 400, _("Not possible")
        for kind, (code, name) in _PAGE_STATUS.items():
            if isinstance(exc, kind):
                status, title = code, name
                break
        if isinstance(exc, UpstreamFailure) and exc.timeout:
            status = 504
        if _wants_json():
            fields = exc.fields if isinstance(exc, Invalid) else {}
            return jsonify(error=exc.code, message=exc.message, **({"fields": fields} if fields else {})), status
        return render_template("error.html", code=status, title=title, message=exc.message), status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        # Werkzeug's own headers (Allow on a 405, Retry-After, ...) stay.
        headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
        code = exc.code or 500
        if _wants_json():
            return jsonify(error=exc.name.lower().replace(" ", "_"), message=exc.description), code, headers
        titles = {403: _("Not allowed"), 404: _("Not found"), 405: _("Not allowed here")}
        messages = {
            403: _("Your role does not allow this. Ask an administrator if you need it."),
            404: _("There is nothing here. It may have been removed, or the address is mistyped."),
        }
        return render_template("error.html", code=code, title=titles.get(code, exc.name),
                               message=messages.get(code, exc.description or "")), code, headers

    @app.errorhandler(Exception)
    def server_error(exc: Exception) -> ResponseReturnValue:
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        from .extensions import db

        db.session.rollback()
        if _wants_json():
            return jsonify(error="internal", message=_("An internal error occurred; it has been logged.")), 500
        return render_template("error.html", code=500, title=_("Something went wrong"),
                               message=_("An internal error occurred; it has been logged.")), 500
