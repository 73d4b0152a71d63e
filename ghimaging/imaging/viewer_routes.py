"""The built-in viewer's endpoints: a series' frames rendered by Orthanc
and passed through the application, and "add as key image" of what the
viewer shows.

The browser never talks to Orthanc (no Orthanc address or password in a
page). A frame is served only for a series mirrored here (its row id is in
the URL) and an instance Orthanc places in that series; the window is
applied by Orthanc (``/frames/{n}/rendered`` with ``window-center`` and
``window-width``, checked on 1.10.1), so the key image taken from the view
is the same rendering. Frames are cached by the browser alone
(``Cache-Control: private``) and revalidated by ETag without asking Orthanc.
Failures answer JSON with a sentence for people (the widget shows it over
the image), never a 500.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from flask import Response, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_login import current_user
from sqlalchemy import Select, bindparam, select

from .. import crypto
from ..auth.decorators import requires
from ..auth.light import light
from ..extensions import db
from ..models import ImagingRequest, OrthancSeries, OrthancServer, OrthancStudy, Result
from ..orthanc import instances, rendering
from ..orthanc.client import NotFound, OrthancError, TimedOut, deadline
from ..permissions import Action
from . import reporting, workflow
from .routes import bp

MAX_FRAME = 100_000
CACHE = "private, max-age=86400"


def _error(status: int, code: str, message: str) -> Response:
    resp = jsonify(error=code, message=message)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _orthanc_failed(server: instances.Server, what: str, exc: Exception) -> Response:
    current_app.logger.warning("viewer: %s on %s: %s", what, server.label, exc)
    if isinstance(exc, rendering.CannotDecode):
        return _error(415, "cannot_decode", str(exc))
    return _error(504 if isinstance(exc, TimedOut) else 502, "orthanc", instances.failure_message(server, exc))


def _series(series_id: int) -> OrthancSeries | None:
    return db.session.get(OrthancSeries, series_id)


def _frame_source_statement() -> Select[Any]:
    se, st, sv = OrthancSeries.__table__.c, OrthancStudy.__table__.c, OrthancServer.__table__.c
    return (select(se.orthanc_id, sv.id, sv.url, sv.username, sv.password_enc, sv.label)
            .select_from(OrthancSeries.__table__.join(OrthancStudy.__table__, st.id == se.study_id)
                         .join(OrthancServer.__table__, sv.id == st.server_id))
            .where(se.id == bindparam("series_id")))


# Built once: building the statement cost as much as running it.
_FRAME_SOURCE = _frame_source_statement()


def _frame_source(series_id: int) -> tuple[str, instances.ServerRef] | None:
    """(the series' Orthanc id, its server's columns) for a mirrored series,
    in one query that loads no rows: a frame is asked for at every scroll
    step, and loading the study with its patient costs more than the rest
    of the request."""
    row = db.session.execute(_FRAME_SOURCE, {"series_id": series_id}).first()
    return None if row is None else (row[0], instances.ServerRef(*row[1:]))


@bp.app_template_global("viewer_studies")
def viewer_studies(req: ImagingRequest) -> list[tuple[OrthancStudy, list[tuple[OrthancSeries, rendering.Kind]]]]:
    """The request's linked studies (``matching.studies_of``) with their
    series, for the widget's series picker."""
    from ..orthanc.matching import studies_of

    return [(link.study, [(se, rendering.series_kind(se)) for se in link.study.series]) for link in studies_of(req)]


def _number(tags: dict[str, Any], name: str, default: int) -> int:
    try:
        return int(str(tags.get(name, "")).strip() or default)
    except ValueError:
        return default


@bp.route("/viewer/series/<int:series_id>")
@requires(Action.VIEW)
def viewer_series(series_id: int) -> ResponseReturnValue:
    """The series' instances in InstanceNumber order, their frame counts,
    the window the images bring and the presets of the modality."""
    series = _series(series_id)
    if series is None:
        return _error(404, "not_found", _("This series is not in ghimaging (deleted, or not synchronised yet)."))
    try:
        with instances.viewing(series.study.server, instances.setting("ORTHANC_PAGE_DEADLINE")) as client:
            items = client.series_instances(series.orthanc_id)
            listed: list[dict[str, Any]] = []
            for it in items if isinstance(items, list) else []:
                tags = it.get("MainDicomTags") or {}
                listed.append({"id": str(it.get("ID", "")), "number": _number(tags, "InstanceNumber", 0),
                               "frames": max(1, _number(tags, "NumberOfFrames", 1))})
            listed.sort(key=lambda x: (x["number"], x["id"]))
            window = rendering.default_window(client, listed[0]["id"]) if listed else None
    except NotFound:
        return _error(404, "not_found", _("Orthanc no longer has this series."))
    except (OrthancError, crypto.CredentialError) as exc:
        return _orthanc_failed(series.study.server, f"series {series.orthanc_id}", exc)
    instances.remember_members(series.orthanc_id, [i["id"] for i in listed])
    presets = [{"label": label, "center": c, "width": w}
               for label, c, w in rendering.PRESETS.get(series.modality.strip().upper(), ())]
    return jsonify(id=series.id, modality=series.modality, description=series.description, number=series.number,
                   instances=listed, window=list(window) if window else None, presets=presets,
                   base=url_for("imaging.viewer_series", series_id=series.id) + "/instances/")


def _window() -> tuple[float | None, float | None] | None:
    """(center, width) from ``c`` and ``w``; (None, None) when neither is
    given; None when they are not a usable window."""
    raw_c, raw_w = request.args.get("c"), request.args.get("w")
    if raw_c is None and raw_w is None:
        return None, None
    try:
        center, width = float(raw_c or ""), float(raw_w or "")
    except ValueError:
        return None
    if not (math.isfinite(center) and math.isfinite(width)) or width <= 0 or max(abs(center), width) > 1e7:
        return None
    return round(center, 2), round(width, 2)


@bp.route("/viewer/series/<int:series_id>/instances/<orthanc_id>/frames/<int:frame>")
@light  # asked at every scroll step: the signed-in person is read in one light statement
@requires(Action.VIEW)
def viewer_frame(series_id: int, orthanc_id: str, frame: int) -> ResponseReturnValue:
    """One frame as a PNG under the window ``c``/``w`` (rescaled units)."""
    source = _frame_source(series_id)
    if source is None or not instances.valid_id(orthanc_id) or frame >= MAX_FRAME:
        return _error(404, "not_found", _("This image is not in ghimaging."))
    series_orthanc_id, server = source
    window = _window()
    if window is None:
        return _error(400, "bad_window", _("The window must be two numbers, the width above zero."))
    view = rendering.View(orthanc_id, frame, *window)
    etag = hashlib.sha256(repr(("v1", series_orthanc_id, view)).encode()).hexdigest()[:32]
    if request.if_none_match.contains(etag):
        resp = Response(status=304)
    else:
        try:
            with instances.viewing(server, instances.setting("ORTHANC_PREVIEW_DEADLINE")) as client:
                if not instances.in_series(client, series_orthanc_id, orthanc_id):
                    return _error(404, "not_found", _("This image is not in this series."))
                data = rendering.frame_png(client, view)
        except NotFound:
            return _error(404, "not_found", _("Orthanc does not have this image (any more)."))
        except (OrthancError, crypto.CredentialError) as exc:
            return _orthanc_failed(server, f"frame {frame} of {orthanc_id}", exc)
        resp = Response(data, mimetype="image/png")
    resp.set_etag(etag)
    resp.headers["Cache-Control"] = CACHE
    return resp


def _row_id(value: object) -> int | None:
    """A row id from JSON: an integer or ASCII digits (``"²"`` passes
    ``str.isdigit`` but not ``int``), within a database integer; else None."""
    if isinstance(value, bool):
        return None
    text = str(value) if isinstance(value, (int, str)) else ""
    return int(text) if re.fullmatch(r"[0-9]{1,9}", text) else None


def _level(value: object) -> float | bool | None:
    """A window center or width from JSON: None when absent, False when not
    a finite number within the range ``_window`` accepts for frames."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return False
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return False
    return number if math.isfinite(number) and abs(number) <= 1e7 else False


@bp.route("/viewer/results/<int:result_id>/key-images", methods=["POST"])
@requires(Action.REPORT)
def viewer_key_image(result_id: int) -> ResponseReturnValue:
    """Store the view (instance, frame, window) as a key image of the
    result, through the key image service; answers the image's URLs."""
    result = db.session.get(Result, result_id)
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return _error(400, "bad_view", _("The request must be a JSON object naming the series, image and window."))
    series_id = _row_id(data.get("series_id"))
    series = _series(series_id) if series_id is not None else None
    orthanc_id = str(data.get("instance_id", ""))
    if result is None or series is None or not instances.valid_id(orthanc_id):
        return _error(404, "not_found", _("This result or image is not in ghimaging."))
    frame, center, width = _row_id(data.get("frame", 0)), _level(data.get("center")), _level(data.get("width"))
    caption = "" if data.get("caption") is None else data["caption"]
    if (frame is None or frame >= MAX_FRAME or center is False or width is False
            or (center is None) != (width is None) or (width is not None and width <= 0)):
        return _error(400, "bad_view", _("The frame and window must be numbers, the width above zero."))
    if not isinstance(caption, str):
        return _error(400, "bad_view", _("The caption must be text."))
    view = rendering.View(orthanc_id, frame, center, width)
    server = series.study.server
    try:
        with instances.viewing(server, instances.setting("ORTHANC_PAGE_DEADLINE")) as client:
            if not instances.in_series(client, series.orthanc_id, orthanc_id):
                return _error(404, "not_found", _("This image is not in this series."))
        with deadline(instances.setting("ORTHANC_PAGE_DEADLINE")):
            image = reporting.add_key_image(result, current_user, server, orthanc_id, caption, view=view)
    except workflow.ValidationError as exc:
        db.session.rollback()
        return _error(422, "invalid", " ".join(exc.errors.values()))
    except workflow.WorkflowError as exc:
        db.session.rollback()
        return _error(409, "conflict", exc.message)
    except (OrthancError, crypto.CredentialError) as exc:
        db.session.rollback()
        return _orthanc_failed(server, f"key image {orthanc_id}", exc)
    db.session.commit()
    thumb = image.stored_name.rsplit(".", 1)[0] + ".thumb.jpg"
    return jsonify(id=image.id, caption=image.caption, url=url_for("imaging.result_image", name=image.stored_name),
                   thumb=url_for("imaging.result_image", name=thumb)), 201
