"""What the printed report shows, built once for the print page and the PDF
(both render ``templates/imaging/print.html`` from this context).

Every value is made here as text a person reads: the clinic's time zone and
date format for stored instants, a DICOM date and time as the modality
wrote them, the clinic's language for the labels (``i18n.translator``), so
the template only lays out. The PDF is rendered by WeasyPrint, imported in
:func:`render_pdf` only (a Raspberry Pi should not carry it in every
process); it reads nothing from the network, only the files this module
names (:class:`LocalFiles`).
"""

from __future__ import annotations

import base64
import mimetypes
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from flask import current_app, url_for
from sqlalchemy import select

from .. import ui
from ..extensions import db
from ..i18n import Translator, supported, translator
from ..models import ImagingRequest, RequestEvent, Result, User

PAPER_SIZES = ("A4", "Letter")


@dataclass
class Signature:
    name: str
    credentials: str


@dataclass
class PrintContext:
    """Everything print.html shows, as text."""

    result: Result
    req: ImagingRequest
    clinic: dict[str, str]
    language: str
    paper_size: str
    logo_src: str  # a data: URL (the logo travels inside the page and the PDF) or ""
    patient_name: str
    puid: str
    birth_date: str
    sex: str
    accession: str
    examination: str
    exam_when: str
    ordering: str
    report_date: str
    final: bool
    finalised_by: str
    finalised_when: str
    signature: Signature | None
    pdf: bool = False

    def template_values(self) -> dict[str, Any]:
        return {"p": self, "result": self.result, "req": self.req, "clinic": self.clinic,
                "_": translator(self.language), "thumbnails": False}


def _day(value: date | None) -> str:
    """A calendar date in the clinic's date format."""
    return ui.day(value)


def _instant(value: datetime | None) -> str:
    """A stored instant (naive UTC) in the clinic's zone and date format."""
    return ui.local_time(value) if value else ""


def _dicom_when(study_date: str, study_time: str) -> str:
    """StudyDate and StudyTime as the modality wrote them (its wall clock,
    not converted), the date in the clinic's format."""
    return " ".join(p for p in (ui.dicom_date(study_date), ui.dicom_time(study_time)) if p)


def examination_time(req: ImagingRequest) -> str:
    """When the images were taken: the first linked study's date and time,
    else the time the request was marked done, else ""."""
    from ..orthanc.matching import studies_of

    for link in studies_of(req):
        if link.study.study_date:
            return _dicom_when(link.study.study_date, link.study.study_time or "")
    done_at = db.session.scalar(select(RequestEvent.at).where(
        RequestEvent.request_id == req.id, RequestEvent.action == "complete").order_by(RequestEvent.id.desc()))
    return _instant(done_at)


def _signature(user: User | None) -> Signature | None:
    return Signature(user.display_name, user.credentials or "") if user else None


def _logo_src() -> str:
    """The clinic's logo as a data: URL, or "" (none uploaded). Inline, so the print page needs no extra route and
    the PDF renderer fetches nothing."""
    from ..settings.service import logo_path

    path = logo_path()
    if path is None:
        return ""
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def page_setup(clinic: dict[str, str]) -> tuple[str, str]:
    """The print's language and paper size from the clinic's settings."""
    paper = clinic.get("paper_size", "A4")
    return supported(clinic.get("language")) or "en", paper if paper in PAPER_SIZES else "A4"


def page_css(language: str, paper: str) -> str:
    """The @page rule of the clinic's paper size and language: a stylesheet
    of its own, since the pages' Content-Security-Policy allows no inline
    style."""
    return f"@page {{ size: {paper}; @bottom-right {{ content: {page_counter_css(translator(language))}; }} }}\n"


def build(result: Result, *, pdf: bool = False) -> PrintContext:
    from ..settings.service import clinic_settings

    clinic = clinic_settings()
    req = result.request
    patient = req.patient
    language, paper = page_setup(clinic)
    signer = result.finalised_by if result.is_final and result.finalised_by else result.radiologist
    return PrintContext(
        result=result, req=req, clinic=clinic,
        language=language, paper_size=paper,
        logo_src=_logo_src(),
        patient_name=patient.full_name, puid=patient.puid, birth_date=_day(patient.birth_date),
        sex=patient.sex, accession=req.accession_number,
        examination=f"{req.test.name} ({req.test.modality.code})",
        exam_when=examination_time(req),
        ordering=req.requesting_physician.display_name if req.requesting_physician else "",
        report_date=_day(result.result_date),
        final=result.is_final,
        finalised_by=result.finalised_by.display_name if result.finalised_by else "",
        finalised_when=_instant(result.finalised_at),
        signature=_signature(signer),
        pdf=pdf,
    )


def page_counter_css(_: Translator) -> str:
    """The CSS ``content`` of the "Page x of y" margin box in the clinic's
    language: the translated sentence with its two numbers as counters."""
    marker_page, marker_pages = "\x00P\x00", "\x00N\x00"
    text = _("Page %(page)s of %(pages)s", page=marker_page, pages=marker_pages)
    out: list[str] = []
    for i, part in enumerate(text.split(marker_page)):
        if i:
            out.append("counter(page)")
        for j, piece in enumerate(part.split(marker_pages)):
            if j:
                out.append("counter(pages)")
            if piece:
                out.append('"' + piece.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
                           .replace("<", "\\3c ") + '"')
    return " ".join(out)


# -- the PDF -------------------------------------------------------------------

class LocalFiles:
    """The only things the PDF renderer may read: the print stylesheets and
    the report's key images, by the URLs the page gives them; anything else
    (another host, another path, file:) is refused. Inline data: URLs (the
    logo) need no fetch."""

    def __init__(self, base_url: str, context: PrintContext) -> None:
        root = base_url.rstrip("/")
        static = Path(current_app.static_folder or "")
        images = Path(current_app.config["RESULT_IMAGE_DIR"])
        self.made: dict[str, bytes] = {
            root + url_for("imaging.print_page_css"): page_css(context.language, context.paper_size).encode()}
        self.files: dict[str, Path] = {
            root + url_for("static", filename="css/print.css"): static / "css" / "print.css"}
        for img in context.result.images:
            self.files[root + url_for("imaging.result_image", name=img.stored_name)] = \
                images / Path(img.stored_name).name

    def read(self, url: str) -> tuple[bytes, str]:
        url = url.split("#", 1)[0]
        if url in self.made:
            return self.made[url], "text/css"
        path = self.files.get(url)
        if path is None:
            raise PermissionError(f"not fetched while rendering a report: {url}")
        return path.read_bytes(), mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class PdfUnavailable(Exception):
    """WeasyPrint cannot be loaded on this server: not installed (it is the
    optional extra ``pdf``) or its system libraries (Pango, HarfBuzz) are
    missing, which cffi reports as OSError. The print page still works; the
    browser's Save as PDF does what the server cannot."""


def _weasyprint() -> Any:
    """The ``weasyprint`` module, or PdfUnavailable saying why not."""
    try:
        import weasyprint  # type: ignore[import-untyped]  # WeasyPrint ships no types
        import weasyprint.urls  # type: ignore[import-untyped]
    except (ImportError, OSError) as exc:
        current_app.logger.warning("PDF report refused: WeasyPrint cannot be loaded (%s: %s)",
                                   type(exc).__name__, exc)
        raise PdfUnavailable(f"{type(exc).__name__}: {exc}") from exc
    return weasyprint


def render_pdf(html: str, base_url: str, files: LocalFiles) -> bytes:
    """The print page's HTML as PDF bytes (WeasyPrint, loaded here only);
    PdfUnavailable when it cannot be loaded on this server."""
    weasyprint = _weasyprint()
    URLFetcher, URLFetcherResponse = weasyprint.urls.URLFetcher, weasyprint.urls.URLFetcherResponse

    class Fetcher(URLFetcher):  # type: ignore[misc,valid-type]  # WeasyPrint ships no types
        def fetch(self, url: str, headers: Any = None) -> Any:
            if url.startswith("data:"):
                return super().fetch(url, headers)
            body, mime = files.read(url)
            return URLFetcherResponse(url, body, {"Content-Type": mime})

    document = weasyprint.HTML(string=html, base_url=base_url, url_fetcher=Fetcher(allowed_protocols=("data", "http",
                                                                                                      "https")))
    return bytes(document.write_pdf())
