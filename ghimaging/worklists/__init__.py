"""Modality worklists: Genshi templates rendered into .wl files.

The typed errors of a file that cannot be made (:class:`UnencodableError`,
:class:`~.errors.RenderError`, :class:`~.dicomfile.DumpError`) are
:class:`~ghimaging.exceptions.Invalid`; they stay ``ValueError`` too, for the
callers that catch every one of them at once."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..exceptions import Invalid
from ..models import ImagingRequest, WorklistTemplate

log = logging.getLogger(__name__)


UTF8 = "ISO_IR 192"


@dataclass
class WorklistFileData:
    template: WorklistTemplate
    text: str
    data: bytes
    charset: str = ""  # the SpecificCharacterSet the file declares
    fallback: bool = False  # written in ISO_IR 192 because the template's set could not hold a value
    warnings: list[str] = field(default_factory=list)


class UnencodableError(Invalid, ValueError):
    """A value the template's character set cannot hold (the template does
    not fall back to ISO_IR 192): the message names the characters, where
    they are and the template, for the person who submits."""

    code = "worklist_charset"

    def __init__(self, message: str, *, characters: list[str], template: str, charset: str,
                 elements: list[str]) -> None:
        super().__init__(message)
        self.characters, self.template, self.charset, self.elements = characters, template, charset, elements


def render_text(req: ImagingRequest, template: WorklistTemplate | None = None,
                charset: str | None = None) -> tuple[WorklistTemplate, str]:
    template, text, _warnings = _render(req, template, charset)
    return template, text


def _render(req: ImagingRequest, template: WorklistTemplate | None, charset: str | None
            ) -> tuple[WorklistTemplate, str, list[str]]:
    from ..settings.service import clinic_settings
    from . import templates, variables
    from .render import render

    template = template or templates.for_test(req.test)
    values, warnings = variables.build_checked(req, template, clinic_settings()["clinic_name"], charset)
    return template, render(template.body, values), warnings


def _declared(text: str, template: WorklistTemplate) -> str:
    """The character set the text declares in (0008,0005): what pydicom
    encodes with, whatever the template row says."""
    from . import dicomfile

    declared = dicomfile.parse(text).dataset.get("SpecificCharacterSet") or template.charset
    if not isinstance(declared, str):
        declared = declared[0] if len(declared) == 1 else UTF8
    return declared


def _unencodable(text: str, declared: str) -> list[str]:
    from .charsets import known_terms, unencodable

    if declared not in known_terms() and declared != "":
        return []  # several terms (ISO 2022): pydicom switches codecs itself
    values = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return unencodable(values, declared)  # comments never reach the file


def _elements_with(text: str, chars: list[str]) -> list[str]:
    """Keywords of the elements whose values hold ``chars`` (for the message)."""
    import re

    from pydicom.datadict import keyword_for_tag

    out: list[str] = []
    for line in text.splitlines():
        if not any(c in line for c in chars):
            continue
        m = re.match(r"\s*\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)", line)
        name = (keyword_for_tag(int(m[1] + m[2], 16)) or f"({m[1]},{m[2]})") if m else "a comment"
        if name not in out:
            out.append(name)
    return out


def build_file(req: ImagingRequest, template: WorklistTemplate | None = None) -> WorklistFileData:
    """Render and encode the request's worklist file. A value its character
    set cannot hold is never replaced silently: either the template falls
    back to ISO_IR 192 (its administrator's choice) and the file says so in
    ``warnings``, or :class:`UnencodableError` names the characters."""
    from . import dicomfile
    from .charsets import COMMON, describe_chars

    template, text, warnings = _render(req, template, None)
    declared = _declared(text, template)
    bad = _unencodable(text, declared)
    fallback = False
    if bad:
        where = _elements_with(text, bad)
        # One whole sentence per message (the translator sees it all); the
        # character set's label is a name ("Latin-1 (Western Europe)").
        facts = {"template": template.name, "charset": declared, "chars": describe_chars(bad),
                 "elements": ", ".join(where), "utf8": UTF8,
                 "label": f" ({COMMON[declared]})" if declared in COMMON else ""}
        if not template.utf8_fallback:
            raise UnencodableError(
                _("Template \u2018%(template)s\u2019 writes %(charset)s%(label)s, which cannot hold %(chars)s in "
                  "%(elements)s. Use a template with %(utf8)s (UTF-8) for this test, or let the template fall "
                  "back to %(utf8)s (Worklists \u203a template).", **facts),
                characters=bad, template=template.name, charset=declared, elements=where)
        template, text, warnings = _render(req, template, UTF8)
        declared = _declared(text, template)
        if declared != UTF8:
            raise UnencodableError(
                _("Template \u2018%(template)s\u2019 writes %(charset)s%(label)s, which cannot hold %(chars)s in "
                  "%(elements)s. The template is set to fall back to %(utf8)s, but it writes its character set "
                  "as fixed text instead of ${SpecificCharacterSet}, so it cannot.", **facts),
                characters=bad, template=template.name, charset=declared, elements=where)
        fallback = True
        warnings = [_("Written in %(utf8)s (UTF-8), not %(own)s: template \u2018%(template)s\u2019 writes "
                      "%(charset)s%(label)s, which cannot hold %(chars)s in %(elements)s, and the template is set "
                      "to fall back to %(utf8)s. The modality must understand UTF-8 to show these names.",
                      own=template.charset, **facts), *warnings]
    if not (req.test.ae_title or "").strip():
        warnings.append(_("Test %(code)s has no scheduled station AE title (a Type 1 key): a modality that asks "
                          "for its own AE title will not find this item.", code=req.test.code))
    return WorklistFileData(template, text, dicomfile.to_bytes(text), declared, fallback, warnings)


@dataclass
class FileStatus:
    """The truth about a request's worklist file, for the page and the API."""

    state: str  # "written", "missing" or "not_offered"
    filename: str
    reason: str = ""
    written_at: datetime | None = None
    charset: str = ""

    def as_json(self) -> dict[str, str | None]:
        return {"state": self.state, "filename": self.filename, "reason": self.reason or None,
                "written_at": self.written_at.isoformat() + "Z" if self.written_at else None,
                "charset": self.charset or None}


def _not_offered_reason(req: ImagingRequest) -> str:
    from ..models import RequestState

    state = req.state
    if state == RequestState.DRAFT.value:
        return str(_("A draft is not offered to the modality; submitting it writes the file."))
    if state == RequestState.CANCELLED.value:
        return str(_("The request is cancelled: its item was withdrawn from the worklist."))
    if state == RequestState.DONE.value:
        return str(_("The request is done: its item was withdrawn from the worklist."))
    return str(_("Images have arrived for this request: its item was withdrawn from the worklist."))


def file_status(req: ImagingRequest) -> FileStatus:
    """Written (when, in which character set), missing (and why), or not
    offered (and why): read from the folder and the database, never assumed."""
    from sqlalchemy import select

    from ..extensions import db
    from ..models import WorklistFile
    from . import writer

    name = writer.filename(req)
    if not writer.is_live(req):
        return FileStatus("not_offered", name, _not_offered_reason(req))
    row = db.session.scalar(select(WorklistFile).where(WorklistFile.filename == name))
    try:
        on_disk = (writer.folder() / name).exists()
    except OSError as exc:
        return FileStatus("missing", name, _("The worklist folder cannot be used (%(error)s).",
                                             error=exc.strerror or exc))
    if row is not None and on_disk:
        return FileStatus("written", name, written_at=row.written_at, charset=req.worklist_charset)
    if row is not None:
        return FileStatus("missing", name, _("The file is gone from the worklist folder (removed outside "
                                             "ghimaging?); \u2018Rebuild folder\u2019 on the Worklists page writes "
                                             "it again."))
    return FileStatus("missing", name, req.worklist_problem or (
        _("The file was never written for this request; \u2018Rebuild folder\u2019 on the Worklists page "
          "writes it.")))


@dataclass
class Preview:
    text: str = ""
    rows: list[tuple[int, str, str, str, str]] | None = None
    error: str = ""
    filename: str = ""
    live: bool = False
    on_disk: bool = False
    template: str = ""
    charset: str = ""
    fallback: bool = False
    warnings: list[str] = field(default_factory=list)
    status: FileStatus | None = None


def preview(req: ImagingRequest) -> Preview:
    """What the request page shows: the file's status, the worklist text,
    its decoded DICOM attributes and the warnings about its values."""
    from . import dicomfile, writer

    out = Preview(filename=writer.filename(req), live=writer.is_live(req))
    try:
        out.status = file_status(req)
        out.on_disk = (writer.folder() / out.filename).exists()
        data = build_file(req)
        out.text, out.template, out.charset = data.text, data.template.name, data.charset
        out.fallback, out.warnings = data.fallback, data.warnings
        out.rows = dicomfile.describe(data.data)
    except Exception as exc:  # shown on the page; never a 500 for a broken template
        out.error = str(exc)
    return out


def _on_request_changed(sender: object, request: ImagingRequest, action: str, **_: object) -> None:
    """Keep the request's .wl file in step with its state, inside the
    transaction that changed it (the caller commits; a rollback puts the
    folder back). A failure is recorded on the request (the page and the API
    say why the file is missing); it never undoes the state change."""
    from . import writer

    writer.sync(request)


def init_app(app: Flask) -> None:
    from ..imaging.workflow import request_changed
    from ..orthanc.servers import encoding_warnings
    from .routes import bp

    request_changed.connect(_on_request_changed)
    app.register_blueprint(bp)
    # The server pages (another area's views) show these through the template.
    app.add_template_global(encoding_warnings, "orthanc_warnings")
