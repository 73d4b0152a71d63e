"""A person's own language (issue 13): chosen on the account page, stored
in ``users.language``; "Automatic" (None) follows the browser's
Accept-Language. The catalogues here are made by the test (the shipped
ones are the translators' and may not hold these words yet), so what is
checked is the choice of language, through the real pages and Flask-Babel."""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.models import User

WORDS = {"es": "Tu cuenta", "de": "Ihr Konto"}


@pytest.fixture
def app_config(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("translations")
    for lang, title in WORDS.items():
        catalog = Catalog(locale=lang)
        catalog.add("Your account", title)
        out = folder / lang / "LC_MESSAGES"
        out.mkdir(parents=True)
        with open(out / "messages.mo", "wb") as fh:
            write_mo(fh, catalog)
    return {"BABEL_TRANSLATION_DIRECTORIES": str(folder)}


def heading(client, accept: str | None) -> str:
    headers = {"Accept-Language": accept} if accept else {}
    r = client.get("/account", headers=headers)
    assert r.status_code == 200
    return re.search(r"<h1>(.*?)</h1>", r.get_data(as_text=True)).group(1)


def stored(username: str) -> str | None:
    db.session.expire_all()
    return db.session.scalar(select(User.language).where(User.username == username))


@pytest.fixture
def alice(make_user, login):
    make_user("alice", "physician")
    return login("alice")


@pytest.mark.parametrize("accept", ["en", "de", "de-DE,en;q=0.5", None])
def test_a_user_who_chose_spanish_gets_spanish_whatever_the_browser_says(alice, accept):
    r = alice.post("/account/language", {"language": "es"})
    assert r.status_code == 302
    assert stored("alice") == "es"
    assert heading(alice, accept) == "Tu cuenta"


@pytest.mark.parametrize(("accept", "title"), [("es", "Tu cuenta"), ("de-AT,de;q=0.9", "Ihr Konto"),
                                               ("en-GB", "Your account"), ("fr", "Your account")])
def test_automatic_follows_accept_language(alice, accept, title):
    alice.post("/account/language", {"language": "de"})
    r = alice.post("/account/language", {"language": ""})
    assert r.status_code == 302
    assert stored("alice") is None
    assert heading(alice, accept) == title


def test_the_choice_offers_automatic_and_each_language_in_its_own_name(alice):
    page = alice.get("/account").get_data(as_text=True)
    select_html = re.search(r'<select[^>]*name="language".*?</select>', page, re.S).group(0)
    options = re.findall(r'<option(?: selected)? value="([^"]*)">([^<]*)</option>', select_html)
    assert [v for v, _ in options] == ["", "en", "es", "de"]
    assert dict(options)["es"] == "Español" and dict(options)["de"] == "Deutsch"
    assert dict(options)["en"] == "English" and "Automatic" in dict(options)[""]


def test_an_unknown_language_is_a_form_error_and_changes_nothing(alice):
    alice.post("/account/language", {"language": "de"})
    r = alice.post("/account/language", {"language": "fr"})
    assert r.status_code == 400
    assert re.search(r'name="language".*?<p class="error">', r.get_data(as_text=True), re.S)
    assert stored("alice") == "de"


def test_the_language_needs_a_sign_in_and_a_csrf_token(app, alice):
    anonymous = app.test_client()
    r = anonymous.post("/account/language", data={"language": "es"})
    assert r.status_code in (302, 400)
    assert alice.client.post("/account/language", data={"language": "es"}).status_code == 400
    assert stored("alice") is None
