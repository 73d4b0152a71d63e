"""The print's strings are all translated in the shipped Spanish and German
catalogues, none fuzzy, each keeping its placeholders; and the committed
``.mo`` files are what their ``.po`` files compile to (a Pi installs them as
they are: see ghimaging/i18n.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = ROOT / "ghimaging" / "translations"
#: Where the printed report's strings live.
SOURCES = [("jinja2", ROOT / "templates" / "imaging" / "print.html"),
           ("jinja2", ROOT / "templates" / "imaging" / "_report_body.html"),
           ("python", ROOT / "ghimaging" / "imaging" / "printing.py")]


def print_strings() -> set[str]:
    found = set()
    for method, path in SOURCES:
        for _line, message, _comments, _context in extract_from_file(method, str(path)):
            found.add(message if isinstance(message, str) else message[0])
    return found


def catalogue(lang: str):
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale=lang)


def test_the_print_has_strings_to_translate():
    strings = print_strings()
    assert {"Imaging report", "Page %(page)s of %(pages)s", "Examination date", "Addendum"} <= strings


@pytest.mark.parametrize("lang", ["es", "de"])
def test_every_print_string_is_translated_and_not_fuzzy(lang):
    cat = catalogue(lang)
    missing = sorted(s for s in print_strings() if not (cat.get(s) and cat.get(s).string))
    assert missing == []
    fuzzy = sorted(m.id for m in cat if m.id and m.fuzzy)
    assert fuzzy == []
    for m in cat:
        if m.id:
            assert set(re.findall(r"%\(\w+\)s", m.id)) == set(re.findall(r"%\(\w+\)s", m.string)), m.id


@pytest.mark.parametrize("lang", ["es", "de"])
def test_the_committed_mo_is_the_compiled_po(lang):
    po = {m.id: m.string for m in catalogue(lang) if m.id}
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.mo", "rb") as f:
        mo = {m.id: m.string for m in read_mo(f) if m.id}
    assert mo == po, "run: pybabel compile -d ghimaging/translations"


def test_babel_follows_accept_language_for_pages_and_the_clinic_for_the_print(app, make_user, login, create_request):
    """i18n.init_app as the factory calls it: a page's language is the
    browser's; the print's stays the clinic's even with Babel's own ``_``
    installed in every template."""
    from datetime import date

    from flask_babel import gettext, refresh

    from ghimaging import i18n
    from ghimaging.extensions import db
    from ghimaging.imaging import workflow
    from ghimaging.models import Setting

    if "babel" not in app.extensions:
        i18n.init_app(app)
    with app.test_request_context("/", headers={"Accept-Language": "es-BO, en;q=0.5"}):
        refresh()  # the test's app context outlives each request context; a served request has its own
        assert i18n.select_locale() == "es" and gettext("Imaging report") == "Informe radiológico"
    with app.test_request_context("/", headers={"Accept-Language": "fr, de;q=0.8"}):
        refresh()  # the test's app context outlives each request context; a served request has its own
        assert gettext("Imaging report") == "Radiologischer Befund"
    with app.test_request_context("/", headers={"Accept-Language": "fr"}):
        refresh()  # the test's app context outlives each request context; a served request has its own
        assert gettext("Imaging report") == "Imaging report"
    rad = make_user("rad", "radiologist")
    result = workflow.create_result(create_request(submit=True), rad, radiologist=rad, result_date=date(2024, 5, 2),
                                    report="Normal.")
    db.session.merge(Setting(key="language", value="de"))
    db.session.commit()
    body = login("rad").get(f"/results/{result.id}/print", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "Radiologischer Befund" in body and "Informe" not in body
