"""The worklist template editor's work: the requests to preview with, and
a draft rendered against one of them (nothing stored). Saving is
:func:`.templates.save`."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select

from ..extensions import db
from ..models import ImagingRequest, WorklistTemplate
from . import build_file, dicomfile
from .errors import RenderError
from .names import UnknownVariables


@dataclass
class DraftPreview:
    """The draft's worklist text and its decoded attributes, or why not;
    ``refused`` when the draft itself does not work (the page answers 400);
    ``unknown``: the names it uses that no request provides."""

    text: str | None = None
    rows: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    error: str | None = None
    refused: bool = False
    unknown: list[str] = field(default_factory=list)


def unknown_message(names: list[str], line: int | None) -> str:
    """What the editor says of a template using names no request provides,
    at save and in the preview (it is refused: see
    :class:`.names.UnknownVariables`); ``line``: the first one's."""
    listed = ", ".join(names)
    if line:
        return str(_("Unknown variables: %(names)s (the first on line %(line)s). A template may use the variables "
                     "listed beside the editor, my (the request) and the names its own for/with define; correct "
                     "these to save it.", names=listed, line=line))
    return str(_("Unknown variables: %(names)s. A template may use the variables listed beside the editor, my (the "
                 "request) and the names its own for/with define; correct these to save it.", names=listed))


def preview_requests(limit: int = 30) -> list[ImagingRequest]:
    """The latest requests, to preview a draft with."""
    return list(db.session.scalars(select(ImagingRequest).order_by(ImagingRequest.id.desc()).limit(limit)))


def request_choices(reqs: list[ImagingRequest]) -> list[tuple[int, str]]:
    return [(0, _("— choose a request —"))] + [
        (r.id, f"{r.accession_number} · {r.patient.full_name} · {r.test.name}") for r in reqs]


def draft(*, name: str, body: str, charset: str, encoding: str, utf8_fallback: bool) -> WorklistTemplate:
    """A template as typed in the editor, not stored."""
    return WorklistTemplate(name=name, body=body, charset=charset, encoding=encoding, utf8_fallback=utf8_fallback)


def preview(template: WorklistTemplate, request_id: int | None, latest: list[ImagingRequest]) -> DraftPreview:
    """``template`` rendered for the request ``request_id`` (else the latest
    one): the text, or the error a submit with it would meet."""
    req = db.session.get(ImagingRequest, request_id) if request_id else (latest[0] if latest else None)
    if req is None:
        from .render import compile_template

        try:  # unknown names are known without a request to render with
            compile_template(template.body or "")
        except UnknownVariables as exc:
            return DraftPreview(error=unknown_message(exc.names, exc.line), refused=True, unknown=exc.names)
        except RenderError:
            pass  # the save says it, with its line
        return DraftPreview(error=_("There is no request to preview with yet."))
    try:
        data = build_file(req, template)
    except UnknownVariables as exc:
        return DraftPreview(error=unknown_message(exc.names, exc.line), refused=True, unknown=exc.names)
    except RenderError as exc:
        return DraftPreview(error=_("Template error: %(error)s", error=str(exc)), refused=True)
    except dicomfile.DumpError as exc:
        return DraftPreview(error=_("The rendered text is not valid dump2dcm syntax: %(error)s", error=str(exc)),
                            refused=True)
    except ValueError as exc:  # a value the character set cannot hold, an unknown encoding
        return DraftPreview(error=str(exc), refused=True)
    return DraftPreview(text=data.text, rows=dicomfile.describe(data.data))
