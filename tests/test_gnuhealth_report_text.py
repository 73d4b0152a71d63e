"""The report text pushed to GNU Health as the result's comment dates each
addendum by the clinic's clock and names the zone (it said UTC, a time
nobody at the clinic reads). No GNU Health needed: the text is built here."""

from __future__ import annotations

import re
from datetime import date, datetime

from ghimaging.extensions import db
from ghimaging.gnuhealth.push import report_text
from ghimaging.imaging import workflow
from ghimaging.settings import service as settings


def test_an_addendum_is_dated_in_the_clinics_zone_and_format(app, make_user, create_request):
    settings.save_clinic_settings({"time_zone": "America/La_Paz", "date_format": "dd.mm.yyyy"})
    rad = make_user("rad", "radiologist", full_name="Dr Rita Rad")
    req = create_request(submit=True)
    result = workflow.create_result(req, rad, radiologist=rad, result_date=date(2025, 3, 4), report="Normal.",
                                    final=True)
    add = workflow.add_addendum(result, rad, "Comparison: unchanged.")
    add.created_at = datetime(2025, 3, 4, 13, 5)  # stored UTC: 09:05 in La Paz
    db.session.commit()
    text = report_text(result)
    assert re.search(r"Addendum 04\.03\.2025 09:05 \(America/La_Paz\) — Dr Rita Rad:\nComparison: unchanged\.", text), text
    assert "UTC" not in text
