"""A link to check says what differs in the reader's language: the sync
stores its warning in the clinic's language (no reader then), and the
pages say the same check again for the person reading."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.i18n import translator
from ghimaging.models import StudyLink
from ghimaging.orthanc import sync
from tests.support import dicomgen


def test_a_link_warning_is_shown_in_the_readers_language(app, make_user, login, create_patient, create_request,
                                                         orthanc_row, upload):
    doc = make_user("doc", "physician")
    p = create_patient(puid="LW-1", family_name="Quispe", given_name="Rosa", birth_date=date(1980, 2, 3))
    req = create_request(p, submit=True, user=doc, physician=doc)
    upload([dicomgen.make_instance("LW-1", "QUISPA^ROSAURA", accession=req.accession_number,
                                   patient_birth_date="19800203")])
    assert sync.run(orthanc_row.id).error == ""
    db.session.expire_all()
    link = db.session.scalar(select(StudyLink).where(StudyLink.request_id == req.id))
    assert link is not None and link.needs_review
    english = "The name in the study"
    assert link.warning.startswith(english)  # stored by the sync in the clinic's language (English)
    spanish = translator("es")("The name in the study (%(study)s) differs from the register (%(register)s).",
                               study="X", register="Y").split("(")[0].strip()
    assert spanish and spanish != english
    client = login("doc")
    body = client.client.get(f"/requests/{req.id}", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert spanish in body and english not in body
    # The study page's warnings too (its link history keeps the note stored when the link was made).
    body = client.client.get(f"/orthanc/studies/{link.study_id}", headers={"Accept-Language": "es"}).get_data(
        as_text=True)
    warnings = body[:body.index("<section")] if "<section" in body else body
    assert spanish in warnings and english not in warnings
