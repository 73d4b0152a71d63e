"""The printed report (and, later, its PDF): one page of its own so the
print layout can grow without touching the reporting desk's views."""

from __future__ import annotations

from flask import render_template
from flask.typing import ResponseReturnValue

from ..auth.decorators import requires
from ..extensions import db
from ..models import Result
from ..permissions import Action
from .routes import bp


@bp.route("/results/<int:result_id>/print")
@requires(Action.VIEW)
def print_result(result_id: int) -> ResponseReturnValue:
    from ..settings.service import clinic_settings

    result = db.get_or_404(Result, result_id)
    return render_template("imaging/print.html", result=result, req=result.request, clinic=clinic_settings())
