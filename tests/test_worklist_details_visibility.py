"""The request page's worklist section in plain words (issue 12, part 4).

Everyone who sees a request reads whether the modality finds it and the
warnings about what it will show; the file name, the character set codes,
the decoded attributes and the dump2dcm text are for the people who manage
worklist templates (``Action.CONFIGURE`` in ghimaging/permissions.py), who
are the only ones who can act on them.
"""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest

from ghimaging.catalog import service as catalog_service
from ghimaging.permissions import Action, roles_for
from tests.test_worklist_safety import latin1_chest, set_fallback  # noqa: F401  (a fixture)

# Marks of the technical details, each as the page writes it.
TECHNICAL = ("Attributes a modality sees", "Worklist text (dump2dcm)", 'id="worklist-details"',
             "<code>ISO_IR 192</code>", "(0008,0050) SH [")


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


@pytest.fixture
def people(make_user, doc):
    make_user("rad", "radiologist")
    make_user("boss", "admin")


@pytest.fixture
def long_request(app, catalog, create_patient, create_request, doc):
    """A submitted request whose procedure description the worklist cuts to 64 characters."""
    long_name = "Chest X-ray PA and lateral with inspiration and expiration views, both sides"
    test = catalog_service.save_test(None, code="XR-CHEST-LONG", name=long_name, modality=catalog["chest"].modality,
                                     ae_title="XRAY1")
    req = create_request(create_patient(family_name="Meyer", given_name="Ann"), test, physician=doc, submit=True)
    assert (Path(app.config["WORKLIST_DIR"]) / f"{req.accession_number}.wl").exists()
    return req


def page(login, username: str, req) -> str:
    r = login(username).get(f"/requests/{req.id}")
    assert r.status_code == 200
    return unescape(r.get_data(as_text=True))


def test_the_map_keeps_worklist_details_to_administrators():
    """The rule the page follows; a role added to CONFIGURE would see the details."""
    assert {r.value for r in roles_for(Action.CONFIGURE)} == {"admin"}


@pytest.mark.parametrize("username", ["doc", "rad"])
def test_clinical_staff_see_the_warning_but_no_technical_details(people, long_request, login, username):
    html = page(login, username, long_request)
    assert 'id="worklist-warnings"' in html
    assert "RequestedProcedureDescription is cut to 64 characters (LO)" in html
    assert "in the worklist" in html and "Offered to the modality since" in html
    assert f"{long_request.accession_number}.wl" not in html
    for mark in TECHNICAL:
        assert mark not in html, mark


def test_an_administrator_sees_the_file_charset_attributes_and_dump(people, long_request, login):
    html = page(login, "boss", long_request)
    assert 'id="worklist-warnings"' in html
    assert "RequestedProcedureDescription is cut to 64 characters (LO)" in html
    assert f"<code>{long_request.accession_number}.wl</code> written" in html
    for mark in TECHNICAL:
        assert mark in html, mark
    assert "Offered to the modality since" not in html


def test_the_utf8_fallback_is_said_in_plain_words_to_everyone(people, latin1_chest, create_patient,  # noqa: F811
                                                              create_request, doc, login):
    set_fallback(True)
    patient = create_patient(puid="PID-LS", family_name="Łukasiewicz", given_name="Şule")
    req = create_request(patient, latin1_chest, physician=doc, submit=True)
    plain = "a modality that does not read Unicode may show the name wrongly"
    for username in ("doc", "rad"):
        html = page(login, username, req)
        assert 'id="worklist-fallback"' in html and plain in html
        assert "<code>ISO_IR 192</code>" not in html and 'id="worklist-details"' not in html
    html = page(login, "boss", req)
    assert plain in html and "Written in <code>ISO_IR 192</code> (UTF-8)" in html
    assert 'id="worklist-details"' in html
