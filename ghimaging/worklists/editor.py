"""The worklist template editor's work: the requests to preview with, and
a draft rendered against one of them (nothing stored). Saving is
:func:`.templates.save`."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from ..extensions import db
from ..models import ImagingRequest, WorklistTemplate
from . import build_file, dicomfile
from .errors import RenderError


@dataclass
class DraftPreview:
    """The draft's worklist text and its decoded attributes, or why not;
    ``refused`` when the draft itself does not work (the page answers 400)."""

    text: str | None = None
    rows: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    error: str | None = None
    refused: bool = False


def preview_requests(limit: int = 30) -> list[ImagingRequest]:
    """The latest requests, to preview a draft with."""
    return list(db.session.scalars(select(ImagingRequest).order_by(ImagingRequest.id.desc()).limit(limit)))


def request_choices(reqs: list[ImagingRequest]) -> list[tuple[int, str]]:
    return [(0, "— choose a request —")] + [
        (r.id, f"{r.accession_number} · {r.patient.full_name} · {r.test.name}") for r in reqs]


def draft(*, name: str, body: str, charset: str, encoding: str, utf8_fallback: bool) -> WorklistTemplate:
    """A template as typed in the editor, not stored."""
    return WorklistTemplate(name=name, body=body, charset=charset, encoding=encoding, utf8_fallback=utf8_fallback)


def preview(template: WorklistTemplate, request_id: int | None, latest: list[ImagingRequest]) -> DraftPreview:
    """``template`` rendered for the request ``request_id`` (else the latest
    one): the text, or the error a submit with it would meet."""
    req = db.session.get(ImagingRequest, request_id) if request_id else (latest[0] if latest else None)
    if req is None:
        return DraftPreview(error="There is no request to preview with yet.")
    try:
        data = build_file(req, template)
    except RenderError as exc:
        return DraftPreview(error=f"Template error: {exc}", refused=True)
    except dicomfile.DumpError as exc:
        return DraftPreview(error=f"The rendered text is not valid dump2dcm syntax: {exc}", refused=True)
    except ValueError as exc:  # a value the character set cannot hold, an unknown encoding
        return DraftPreview(error=str(exc), refused=True)
    return DraftPreview(text=data.text, rows=dicomfile.describe(data.data))
