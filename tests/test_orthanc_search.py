"""The Orthanc study and patient search finds names as the local register
does: case- and accent-insensitively, in every PN group, whatever the
script. SQL's lower() folds only ASCII on SQLite (and under PostgreSQL's C
locale), so "Äneas" was not found even typed exactly."""

from __future__ import annotations

import re

import pytest

from ghimaging.orthanc import sync
from tests.support import dicomgen

NAMES = {
    "AE-1": "Äneas^Ülrich",
    "GR-1": "Διονυσιος^Νικος",
    "KO-1": "Hong^Gildong=洪^吉洞=홍^길동",
    "DE-1": "MÜLLER^ANNA",
    "EN-1": "Smith^John",
}


@pytest.fixture
def mirrored(app, orthanc, orthanc_row):
    orthanc.upload_many([dicomgen.make_instance(pid, name, rows=8, cols=8, charset="ISO_IR 192")
                         for pid, name in NAMES.items()])
    assert sync.run(orthanc_row.id, mode="full").error == ""
    return orthanc_row


@pytest.fixture
def viewer(make_user, login):
    make_user("rad", "radiologist")
    return login("rad")


def found_ids(html: str) -> set[str]:
    return set(re.findall(r'<small class="muted">([A-Z]{2}-1)</small>', html)) | \
        set(re.findall(r"<code>([A-Z]{2}-1)</code>", html))


@pytest.mark.parametrize("typed, expected", [
    ("Äneas", {"AE-1"}), ("äneas", {"AE-1"}), ("ANEAS", {"AE-1"}), ("aneas ulrich", {"AE-1"}),
    ("Διονυσιος", {"GR-1"}), ("διονυσιος", {"GR-1"}), ("ΔΙΟΝΥΣΙΟΣ", {"GR-1"}),
    ("洪", {"KO-1"}), ("홍", {"KO-1"}), ("gildong", {"KO-1"}),
    ("Müller, Anna", {"DE-1"}), ("muller", {"DE-1"}),
    ("smith^john", {"EN-1"}),
])
def test_the_study_search_finds_names_in_any_script_case_and_accent(mirrored, viewer, typed, expected):
    page = viewer.get("/orthanc/studies", query_string={"q": typed}).get_data(as_text=True)
    assert found_ids(page) == expected


@pytest.mark.parametrize("typed, expected", [("Äneas", {"AE-1"}), ("διονυσιος", {"GR-1"}), ("길동", {"KO-1"})])
def test_the_orthanc_patient_search_finds_them_too(mirrored, viewer, typed, expected):
    page = viewer.get("/orthanc/patients", query_string={"q": typed}).get_data(as_text=True)
    assert found_ids(page) == expected
