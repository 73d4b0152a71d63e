"""The printed report and its PDF: one template (imaging/print.html) from
one context (:mod:`.printing`), so what is printed in the browser and what
is emailed or attached in GNU Health say the same thing."""

from __future__ import annotations

import re

from flask import Response, render_template, request
from flask.typing import ResponseReturnValue

from ..auth.decorators import requires
from ..extensions import db
from ..models import Result
from ..permissions import Action
from . import printing
from .routes import bp


@bp.route("/results/<int:result_id>/print")
@requires(Action.VIEW)
def print_result(result_id: int) -> ResponseReturnValue:
    result = db.get_or_404(Result, result_id)
    return render_template("imaging/print.html", **printing.build(result).template_values())


@bp.route("/results/print-page.css")
@requires(Action.VIEW)
def print_page_css() -> ResponseReturnValue:
    """The clinic's paper size and "Page x of y" in its language (the
    pages' CSP allows no inline style)."""
    from ..settings.service import clinic_settings

    css = printing.page_css(*printing.page_setup(clinic_settings()))
    return Response(css, mimetype="text/css", headers={"Cache-Control": "private, no-cache"})


@bp.route("/results/<int:result_id>/report.pdf")
@requires(Action.VIEW)
def print_pdf(result_id: int) -> ResponseReturnValue:
    """The same page rendered on the server (WeasyPrint); a download named
    for the accession number, never kept by a shared cache. Where WeasyPrint
    is not installed (the ``pdf`` extra) or cannot load its libraries, a
    page saying so and pointing to Print (503), never a 500."""
    result = db.get_or_404(Result, result_id)
    context = printing.build(result, pdf=True)
    html = render_template("imaging/print.html", **context.template_values())
    base_url = request.host_url
    try:
        pdf = printing.render_pdf(html, base_url, printing.LocalFiles(base_url, context))
    except printing.PdfUnavailable:
        # An optional part of this installation, not a fault: said as such
        # (503: this server, not the request), with the way that works.
        return render_template("imaging/pdf_unavailable.html", result=result), 503, {
            "Cache-Control": "no-store", "Retry-After": "86400"}
    name = re.sub(r"[^A-Za-z0-9._-]", "_", result.request.accession_number) or str(result.id)
    return Response(pdf, mimetype="application/pdf", headers={
        "Content-Disposition": f'attachment; filename="report-{name}.pdf"',
        "Cache-Control": "private, no-store",
    })
