"""The desk's "Studies without a request": a study carrying the patient's
PUID is shown with the name and birth date it carries, and one whose name
or birth date differs from the register is marked "check before using",
never listed as a plain prior (the matching holds such studies in the
Inbox precisely because the name differs)."""

from __future__ import annotations

import html

import pytest
from pydicom.uid import generate_uid

from ghimaging.orthanc import sync
from tests.support import dicomgen


@pytest.fixture
def rad(make_user):
    return make_user("rad", "radiologist", full_name="Dr Rita Rad")


def unlinked(body: str) -> dict[str, str]:
    """Study description -> its list item on the desk."""
    part = body[body.index("Studies without a request"):]
    part = part[:part.index("</ul>")]
    out = {}
    for li in part.split("<li")[1:]:
        desc = li.split('">', 1)[1].split("</a>", 1)[0] if "</a>" in li else ""
        out[desc.split(">")[-1]] = li
    return out


def test_a_same_puid_study_with_another_name_or_birth_date_is_flagged(app, orthanc, orthanc_row, rad, login,
                                                                        create_patient, create_request):
    from datetime import date

    patient = create_patient(family_name="Nakamura", given_name="Ken", sex="M", birth_date=date(1980, 4, 5))
    req = create_request(patient, submit=True)
    studies = [("Same person", "NAKAMURA^KEN", "19800405"),
               ("Other name", "Nakamura^Kenji", "19800405"),         # one letter-group more: another person
               ("Other birth", "Nakamura^Ken", "19800504"),          # day and month swapped
               ("Other family", "Tanaka^Ken", "")]                   # no birth date to save it
    for desc, name, born in studies:
        ds = dicomgen.make_instance(patient.puid, name, generate_uid(), generate_uid(), modality="CT",
                                    study_description=desc, patient_birth_date=born)
        orthanc.upload(dicomgen.to_bytes(ds))
    assert sync.run(orthanc_row.id, mode="full").error == ""

    body = html.unescape(login("rad").get(f"/requests/{req.id}/result").get_data(as_text=True))
    items = unlinked(body)
    assert set(items) == {d for d, _, _ in studies}
    same = items["Same person"]
    assert "data-identity-check" not in same and "check before using" not in same.lower()
    assert "In the study: NAKAMURA" in same, "the study's own name is shown"
    assert "1980" in same, "the study's own birth date is shown"
    for desc in ("Other name", "Other birth", "Other family"):
        li = items[desc]
        assert "data-identity-check" in li and "Check before using" in li, desc
    assert "Kenji" in items["Other name"] and "differs from the register" in items["Other name"]
    assert "birth date in the study" in items["Other birth"]
    assert "Tanaka" in items["Other family"] and "not given" in items["Other family"]
