"""Languages: Flask-Babel for the pages, and the clinic's own language for
what the clinic hands out (the printed report and its PDF).

A page follows the person reading it (their choice when one is stored on
the account, else the browser's ``Accept-Language``); a printed report
follows the clinic's language setting, whoever prints it, because a German
clinic's report goes to a German referrer even when the radiologist's
browser is set to English.

Catalogues live in ``ghimaging/translations/<lang>/LC_MESSAGES/`` as
``messages.po`` with the compiled ``messages.mo`` beside it, both committed:
a Raspberry Pi installs the checkout with pip and no build step, so the
``.mo`` must already be there; ``tests/test_translations.py`` fails when
a committed ``.mo`` no longer matches its ``.po``. Recompile after editing a
catalogue with ``pybabel compile -d ghimaging/translations``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask, request

if TYPE_CHECKING:
    from babel.support import NullTranslations

TRANSLATIONS = Path(__file__).resolve().parent / "translations"
#: Languages with a shipped catalogue (English is the source language).
LANGUAGES = ("en", "es", "de")
DEFAULT = "en"


def supported(code: str | None) -> str | None:
    """``code`` when it is a language we ship, else None ("de-AT" gives "de")."""
    if not code:
        return None
    base = code.replace("_", "-").split("-", 1)[0].lower()
    return base if base in LANGUAGES else None


def select_locale() -> str:
    """The language of a page: the person's own choice (``users.language``,
    chosen on the account page), else the browser's ``Accept-Language``,
    else the clinic's language (a browser that names none of ours).

    Outside a request (the CLI, the background worker) messages are in the
    clinic's language: there is no reader to ask, and without this a
    translated message raised by a service would fail there."""
    from flask import has_request_context

    if not has_request_context():
        return _clinic_language()
    from flask_login import current_user

    chosen = supported(getattr(current_user, "language", None)) if current_user else None
    if chosen:
        return chosen
    # In the browser's order of preference, a regional tag counting for its
    # language ("es-BO" is Spanish even before "en;q=0.5").
    for tag, _quality in request.accept_languages:
        found = supported(tag)
        if found:
            return found
    return _clinic_language()


def _clinic_language() -> str:
    """The clinic's language setting; English while the database cannot say
    (``ghimaging init`` before the settings table exists)."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import clock

    try:
        return supported(clock.clinic_locale().language) or DEFAULT
    except SQLAlchemyError:
        return DEFAULT


def init_app(app: Flask) -> None:
    from flask_babel import Babel  # type: ignore[import-untyped]  # Flask-Babel ships no types

    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    from flask_babel import get_locale

    Babel(app, locale_selector=select_locale, default_locale=DEFAULT)
    # <html lang> says the language the page is shown in (WCAG 3.1.1).
    app.jinja_env.globals["page_language"] = lambda: str(get_locale() or DEFAULT)


class Translator(Protocol):
    def __call__(self, message: str, **values: Any) -> str: ...


@lru_cache(maxsize=len(LANGUAGES))
def _catalogue(lang: str) -> NullTranslations:
    from babel.support import NullTranslations, Translations

    if lang == DEFAULT:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS), [lang], domain="messages")


def translator(lang: str | None) -> Translator:
    """A ``_`` for one fixed language, independent of the request's: the
    print passes it to its templates as ``_`` (extracted like any other
    ``_('…')``). Values are filled in with ``%(name)s`` after translating, so
    a translation may move them."""
    catalogue = _catalogue(supported(lang) or DEFAULT)

    def gettext(message: str, **values: Any) -> str:
        text = catalogue.gettext(message)
        return text % values if values else text

    return gettext
