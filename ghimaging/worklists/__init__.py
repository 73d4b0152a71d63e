"""Modality worklists: Genshi templates rendered into .wl files."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask

from ..models import ImagingRequest, WorklistTemplate

log = logging.getLogger(__name__)


@dataclass
class WorklistFileData:
    template: WorklistTemplate
    text: str
    data: bytes


def render_text(req: ImagingRequest, template: WorklistTemplate | None = None) -> tuple[WorklistTemplate, str]:
    from ..settings.service import clinic_settings
    from . import templates, variables
    from .render import render

    template = template or templates.for_test(req.test)
    values = variables.build(req, template, clinic_settings()["clinic_name"])
    return template, render(template.body, values)


def build_file(req: ImagingRequest, template: WorklistTemplate | None = None) -> WorklistFileData:
    from . import dicomfile
    from .charsets import codec_for, known_terms

    template, text = render_text(req, template)
    # Refuse characters the character set cannot carry, rather than letting
    # pydicom replace them silently; the body's own (0008,0005) is what
    # pydicom encodes with.
    declared = dicomfile.parse(text).dataset.get("SpecificCharacterSet") or template.charset
    if not isinstance(declared, str):
        declared = declared[0] if len(declared) == 1 else "ISO_IR 192"
    try:
        text.encode(codec_for(declared) if declared in known_terms() else "utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end]
        raise ValueError(f"{bad!r} cannot be written in {template.charset}; "
                         f"use a template with ISO_IR 192 (UTF-8)") from None
    return WorklistFileData(template, text, dicomfile.to_bytes(text))


@dataclass
class Preview:
    text: str = ""
    rows: list | None = None
    error: str = ""
    filename: str = ""
    live: bool = False
    on_disk: bool = False
    template: str = ""


def preview(req: ImagingRequest) -> Preview:
    """What the request page shows: the worklist text, its decoded DICOM
    attributes, and whether the file is in the folder."""
    from . import dicomfile, writer

    out = Preview(filename=writer.filename(req), live=writer.is_live(req))
    try:
        out.on_disk = (writer.folder() / out.filename).exists()
        data = build_file(req)
        out.text, out.template = data.text, data.template.name
        out.rows = dicomfile.describe(data.data)
    except Exception as exc:  # shown on the page; never a 500 for a broken template
        out.error = str(exc)
    return out


def _on_request_changed(sender, request: ImagingRequest, action: str, **_) -> None:
    """Keep the request's .wl file in step with its state. A failure is
    logged and shown on the request page; it never undoes the state change."""
    from . import writer

    try:
        if writer.is_live(request):
            writer.write(request)
        else:
            writer.remove(request)
    except Exception:
        log.exception("worklist file for request %s could not be updated", request.accession_number)


def init_app(app: Flask) -> None:
    from ..imaging.workflow import request_changed
    from .routes import bp

    request_changed.connect(_on_request_changed)
    app.register_blueprint(bp)
