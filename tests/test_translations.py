"""Every string a person reads is translatable, and translated (issue 13).

- Templates: text between tags and the human-readable attributes
  (placeholder, title, alt, aria-label, a submit button's value, a
  sentence in a ``data-*`` attribute that a script shows) must come from
  ``_('…')`` or a ``{% trans %}`` block, never be written literally; so must
  prose string literals inside ``{{ }}`` / ``{% %}`` (``{% set title = 'Orders' %}``).
  Walked with Jinja's own lexer, so ``{{ }}``, ``{% %}`` and ``{# #}`` are
  told apart from text exactly as Jinja does; the HTML between is read with
  the standard library's HTML parser.
- Python: a flash, a form error or an exception's message shown to people
  is a ``_()`` call, not an English literal.
- JavaScript: the .js files hold no English sentences for the page; the
  template hands them translated strings in ``data-*`` attributes.
- Catalogues: every string pybabel extracts (with ``babel.cfg``, as the
  release does) is in the Spanish and German catalogues, translated, not
  fuzzy, with the same placeholders; the committed ``.mo`` is the compiled
  ``.po`` (a Pi installs them as they are: see ghimaging/i18n.py).
- The login page answers a Spanish or German browser in its language.

The failure messages list file:line and the text, so they double as the
to-do list for whoever marks the strings.
"""

from __future__ import annotations

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir, extract_from_file
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from jinja2 import Environment

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
CATALOGUES = ROOT / "ghimaging" / "translations"
BABEL_CFG = CATALOGUES / "babel.cfg"
LANGS = ["es", "de"]

#: The gettext functions as pybabel is told to find them (babel.cfg's
#: comment gives the same ``-k``): the defaults plus Flask-Babel's lazy ones,
#: under the names the code imports them as.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None, "lazy_ngettext": (1, 2),
            "lazy_pgettext": ((1, "c"), 2)}
GETTEXT_NAMES = {"_", "gettext", "ngettext", "pgettext", "npgettext", "_l", "lazy_gettext", "lazy_ngettext",
                 "lazy_pgettext"}

#: Words that stay as they are in every language, each with why. A chunk of
#: text is allowed when nothing but these (and symbols/digits) is left.
ALLOWED_WORDS = {
    "ghimaging": "the product's name",
    "GNU Health": "a product's name",
    "Orthanc": "a product's name",
    "DICOM": "the standard's name",
    "DICOMweb": "the standard's name",
    "PUID": "GNU Health's name for the patient's ID, as its own screens spell it",
    "PatientID": "the DICOM attribute's keyword, as Orthanc and modalities show it",
    "StudyInstanceUID": "the DICOM attribute's keyword",
    "HL7": "the standard's name",
    "XML-RPC": "a protocol's name",
    "PDF": "a file format's name",
    "CSV": "a file format's name",
    "JSON": "a file format's name",
    "API": "the same abbreviation in Spanish and German",
    "URL": "the same abbreviation in Spanish and German",
    "UTC": "a time standard's name",
    "OK": "understood in Spanish and German",
}
#: Attributes a person reads (or hears, through a screen reader).
READ_ATTRIBUTES = {"placeholder", "title", "alt", "aria-label", "aria-description", "aria-roledescription",
                   "aria-valuetext", "aria-placeholder", "label"}
#: ``<input type=…>`` whose value is the button's caption.
BUTTON_INPUTS = {"submit", "button", "reset"}
#: Stands for a Jinja expression, statement or comment inside the text.
HOLE = "\x01"

_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*|\S+@\S+\.\S+|/[\w./-]*\w")
_LETTER = re.compile(r"[^\W\d_]")
_ALLOWED = re.compile("|".join(rf"(?<!\w){re.escape(w)}(?!\w)" for w in sorted(ALLOWED_WORDS, key=len,
                                                                                       reverse=True)))


#: A code shown as an example or a value: "CR", "GH00000123", "AE_TITLE".
_CODE = re.compile(r"(?<!\w)(?:[A-Z]{1,4}|[A-Z0-9_]*\d[A-Z0-9_]*|[A-Z]+_[A-Z0-9_]+)(?!\w)")


def readable(text: str) -> str | None:
    """The words of ``text`` a person would read and a translator must see,
    or None when there are none (symbols, digits, URLs, codes, allowed names)."""
    text = " ".join(text.replace(HOLE, " ").split())
    rest = _CODE.sub(" ", _ALLOWED.sub(" ", _URL.sub(" ", text)))
    return text if _LETTER.search(rest) else None


def _prose(value: str) -> bool:
    """A string literal in an expression that looks like words for people:
    a capital then small letters ('Active', 'Sign in'), or several words."""
    if not _LETTER.search(value) or readable(value) is None:
        return False
    if re.fullmatch(r"[\w.:/-]*", value) and not re.match(r"[A-Z][a-z]+\b", value):
        return False  # an endpoint, a field name, a CSS class, a key
    if re.fullmatch(r"(%[-#0 +]?\w|[\W\d_])*", value):
        return False  # a date format
    return bool(re.match(r"[A-Z][a-z]", value) or re.search(r"[a-zA-Z]{2,} [a-zA-Z]{2,}", value))


def _env() -> Environment:
    return Environment(extensions=["jinja2.ext.i18n", "jinja2.ext.do", "jinja2.ext.loopcontrols"])


def template_files() -> list[Path]:
    return sorted(TEMPLATES.rglob("*.html"))


def masked_source(source: str, name: str) -> tuple[str, list[tuple[int, str]]]:
    """The template's text with every ``{{ }}``/``{% %}``/``{# #}`` (and every
    ``{% trans %}`` block, marked by definition) replaced by HOLE, lines kept
    where they were; and the prose string literals found inside expressions
    that are not a gettext call's argument, as (line, text)."""
    out: list[str] = []
    line = 1
    literals: list[tuple[int, str]] = []
    # Jinja's own tokens (strings unquoted, operators named: lparen, assign…)
    tokens = [(t.lineno, t.type, t.value) for t in _env().lexer.tokenize(source, name)]
    in_trans = False
    in_class = False  # {% block body_class %}login-page{% endblock %}: a CSS class, not words
    for i, (lineno, kind, value) in enumerate(tokens):
        if lineno > line:
            out.append(HOLE + "\n" * (lineno - line))
            line = lineno
        if kind == "name" and i and tokens[i - 1][1] == "block_begin":
            if value == "trans":
                in_trans = True
            elif value == "endtrans":
                in_trans = False
            elif value == "endblock":
                in_class = False
        if kind == "name" and i > 1 and tokens[i - 1][2] == "block" and tokens[i - 2][1] == "block_begin":
            in_class = value.endswith("class")
        if kind == "data" and not in_trans and not in_class:
            out.append(value)
            line += value.count("\n")
            continue
        out.append(HOLE)
        if kind == "data":
            line += value.count("\n")
        elif kind == "string" and not in_trans and _prose(value):
            before = [t[1] if t[1] != "name" else t[2] for t in tokens[max(0, i - 4):i]]
            is_msgid = (before[-2:] and before[-1] == "lparen" and before[-2] in GETTEXT_NAMES) or (
                len(before) >= 4 and before[-1] == "comma" and before[-3] == "lparen" and before[-4] in GETTEXT_NAMES)
            # a keyword argument's name, a dict's key: not shown
            is_key = i + 1 < len(tokens) and tokens[i + 1][1] in ("assign", "colon")
            if not is_msgid and not is_key:
                literals.append((lineno, value))
    return "".join(out), literals


class _Unmarked(HTMLParser):
    """Collects literal text and readable attribute values, skipping what is
    inside <script> and <style> (code, not words; the .js check covers
    scripts)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        values = dict(attrs)
        line = self.getpos()[0]
        for attr, value in attrs:
            if not value:
                continue
            shown = (attr in READ_ATTRIBUTES
                     or (attr == "value" and tag == "input" and (values.get("type") or "") in BUTTON_INPUTS)
                     or (attr.startswith("data-") and re.search(r"[^\W\d_]{2,}\s+[^\W\d_]{2,}", value.replace(HOLE, ""))))
            text = readable(value) if shown else None
            if text:
                self.found.append((line, f'{attr}="{text}"'))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        text = None if self._skip else readable(data)
        if text:  # the line where the words start, not the chunk's leading newlines
            leading = data[:len(data) - len(data.lstrip(HOLE + " \t\r\n"))]
            self.found.append((self.getpos()[0] + leading.count("\n"), text))


def unmarked_in_template(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string in the template a person reads that does
    not come through gettext."""
    source = path.read_text(encoding="utf-8")
    masked, literals = masked_source(source, str(path))
    parser = _Unmarked()
    parser.feed(masked)
    parser.close()
    return sorted(parser.found + [(line, f"'{text}' (string in an expression)") for line, text in literals])


@pytest.mark.parametrize("path", template_files(), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_no_unmarked_text_in_templates(path):
    found = unmarked_in_template(path)
    listing = "\n".join(f"  {path.relative_to(ROOT)}:{line}: {text}" for line, text in found)
    assert not found, f"{len(found)} unmarked string(s) in {path.relative_to(ROOT)}; mark with _('…'):\n{listing}"


def test_the_template_check_sees_text_attributes_and_literals_but_not_marked_strings(tmp_path):
    """The check itself, on a template with one of each case."""
    page = tmp_path / "page.html"
    page.write_text(
        "{% extends 'base.html' %}{% block title %}Orders{% endblock %}{% block body_class %}x-y{% endblock %}\n"
        "<p>{{ _('Marked') }} · {{ n }}</p><p>Not marked {{ n }}</p>\n"
        "<input placeholder=\"Search\" class=\"wide-box\"><input type=\"submit\" value=\"{{ _('Save') }}\">\n"
        "{% trans %}Block text{% endtrans %}<a href=\"/orthanc/servers\" title=\"Orthanc\">DICOM</a>\n"
        "{% set label = 'Active' if x else _('Inactive') %}<span data-hint=\"No patient found\"></span>\n"
        "<script>const words = 'not checked here';</script><!-- a comment --> &nbsp;&times;\n", encoding="utf-8")
    assert unmarked_in_template(page) == [
        (1, "Orders"), (2, "Not marked"), (3, 'placeholder="Search"'),
        (5, "'Active' (string in an expression)"), (5, 'data-hint="No patient found"')]


# -- Python ---------------------------------------------------------------

def _english_literal(node: ast.expr | None, *, words: int = 2) -> str | None:
    """The literal's text when it reads as English (at least ``words``
    words), else None (a call, a variable, a code)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        text = node.value
    elif isinstance(node, ast.JoinedStr):
        text = "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    else:
        return None
    enough = len(text.split()) >= words and (words > 1 or re.match(r"[A-Z][a-z]", text.strip()))
    return text if readable(text) and enough else None


def python_files() -> list[Path]:
    return sorted(p for p in (ROOT / "ghimaging").rglob("*.py") if "migrations" not in p.parts)


def shown_exceptions() -> set[str]:
    """Names of the exceptions whose message is "a sentence for people"
    (ghimaging/exceptions.py: every DomainError, which the pages flash and
    the API returns), found by walking the class definitions; plus WTForms'
    form errors."""
    bases: dict[str, set[str]] = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(
                    b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                    if isinstance(b, (ast.Name, ast.Attribute)))
    shown = {"DomainError", "ValidationError", "StopValidation"}
    while True:
        more = {name for name, parents in bases.items() if parents & shown} - shown
        if not more:
            return shown
        shown |= more


#: Calls whose first argument (or ``message=``) is shown to a person.
SHOWN_CALLS = {"flash", "DataRequired", "InputRequired"} | shown_exceptions()  # a validator's message


def unmarked_in_python(path: Path) -> list[tuple[int, str]]:
    """``flash("…")``, a form error and a DomainError built with an English
    literal instead of ``_()`` (what reaches a page or the API's message)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        shown: list[tuple[ast.expr, int]] = []
        if name in SHOWN_CALLS:
            shown += [(a, 2) for a in node.args[:1]]
        if name.endswith("Field"):  # a WTForms field's label, one word is enough
            shown += [(a, 1) for a in node.args[:1]]
        shown += [(k.value, 1 if k.arg == "label" else 2) for k in node.keywords
                  if k.arg in ("message", "description", "label")]
        for arg, words in shown:
            text = _english_literal(arg, words=words)
            if text:
                found.append((node.lineno, f"{name}({text!r})"))
    return sorted(set(found))


@pytest.mark.parametrize("path", python_files(), ids=lambda p: str(p.relative_to(ROOT / "ghimaging")))
def test_no_unmarked_english_shown_from_python(path):
    """Heuristic: a flash, a form error and a DomainError's message (a
    sentence for people, ghimaging/exceptions.py) are ``_()``."""
    found = unmarked_in_python(path)
    listing = "\n".join(f"  {path.relative_to(ROOT)}:{line}: {text}" for line, text in found)
    assert not found, f"{len(found)} English literal(s) shown to people; wrap in _() / _l():\n{listing}"


def test_the_python_check_sees_flashes_and_form_errors(tmp_path):
    source = tmp_path / "views.py"
    source.write_text(
        "from flask import flash\nfrom flask_babel import gettext as _\n"
        "flash('Request saved.')\nflash(_('Request saved.'))\nflash(f'Saved {n} items.')\n"
        "raise ValidationError('Too long.')\nraise ValueError('internal')\n"
        "name = StringField('Name', validators=[Length(max=9, message='Too long.')])\n"
        "age = IntegerField(_l('Age'), description=_l('In years.'))\n", encoding="utf-8")
    assert unmarked_in_python(source) == [
        (3, "flash('Request saved.')"), (5, "flash('Saved  items.')"),
        (6, "ValidationError('Too long.')"),
        (8, "Length('Too long.')"), (8, "StringField('Name')")]


# -- JavaScript -----------------------------------------------------------

#: What a script puts on the page as words.
_JS_SHOWN = re.compile(
    r"""(?:\.(?:textContent|innerText|innerHTML|title|placeholder|value|ariaLabel)\s*[+]?=\s*|"""
    r"""(?:alert|confirm|prompt)\(\s*|setAttribute\(\s*["'](?:title|aria-label|placeholder|alt)["']\s*,\s*|"""
    r"""\?\s*|:\s*|\|\|\s*|\+\s*)"""
    r"""(["'`])((?:(?!\1)[^\\\n]|\\.)*)\1""")
#: Literals that look like words but are not for people, each with why.
JS_ALLOWED: dict[str, str] = {}


def english_in_js(path: Path) -> list[tuple[int, str]]:
    """String literals a script shows that contain a space and letters
    (sentences), outside comments."""
    found = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        code = re.sub(r"^\s*(//|\*|/\*).*|\s//\s.*$", "", line)
        for match in _JS_SHOWN.finditer(code):
            text = re.sub(r"\$\{[^}]*\}", " ", match.group(2))
            if (re.search(r"[A-Za-z]{2,}\s+[A-Za-z]{2,}|^[A-Z][a-z]{2,}", text) and text not in JS_ALLOWED
                    and not re.search(r"[<>{};=]|^\w+(-\w+)+$", text)):
                found.append((number, match.group(2)))
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "static" / "js").glob("*.js")), ids=lambda p: p.name)
def test_no_english_sentences_in_javascript(path):
    found = english_in_js(path)
    listing = "\n".join(f"  {path.relative_to(ROOT)}:{line}: {text!r}" for line, text in found)
    assert not found, (f"{len(found)} English literal(s) a script shows; read them from a data-* attribute "
                       f"the template fills with _('…'):\n{listing}")


# -- Catalogues -----------------------------------------------------------

def _id(message: str | tuple[str, ...]) -> str:
    return message if isinstance(message, str) else message[0]


def extracted() -> dict[str, list[str]]:
    """msgid -> where, extracted from the checkout as ``pybabel extract -F
    babel.cfg`` does (a template Jinja cannot parse fails here rather than
    being skipped)."""
    with open(BABEL_CFG, encoding="utf-8") as f:
        method_map, options_map = parse_mapping_cfg(f)
    for pattern, method in method_map:
        if method == "jinja2":
            options_map[pattern] = {**options_map.get(pattern, {}), "silent": "false",
                                    "extensions": "jinja2.ext.do,jinja2.ext.loopcontrols"}
    found: dict[str, list[str]] = {}
    for filename, line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True):
        messages = (message,) if isinstance(message, str) else message
        for msg in messages:
            if msg:
                found.setdefault(msg, []).append(f"{filename}:{line}")
    return found


def catalogue(lang: str):
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f, locale=lang)


def _placeholders(text: str) -> list[str]:
    return sorted(re.findall(r"%\(\w+\)[sd]|%[sd]", text))


def test_extraction_finds_the_strings_of_python_and_templates():
    strings = extracted()
    assert {"Imaging report", "Page %(page)s of %(pages)s"} <= set(strings)
    assert any(where.startswith("ghimaging") for places in strings.values() for where in places)


@pytest.mark.parametrize("lang", LANGS)
def test_catalogue_complete(lang):
    cat = catalogue(lang)
    strings = extracted()
    plurals = {}
    for m in cat:
        if m.id and not isinstance(m.id, str):
            for part in m.id:
                plurals[part] = m
    problems = []
    for msgid, places in sorted(strings.items()):
        m = cat.get(msgid) or plurals.get(msgid)
        translations = ([m.string] if isinstance(m.string, str) else list(m.string)) if m else []
        if m is None:
            problems.append(f"missing   {msgid!r}  ({places[0]})")
        elif not all(translations):
            problems.append(f"empty     {msgid!r}  ({places[0]})")
        elif m.fuzzy:
            problems.append(f"fuzzy     {msgid!r}  ({places[0]})")
        elif any(_placeholders(_id(m.id)) != _placeholders(t) for t in translations[:1]):
            problems.append(f"placeholders differ  {msgid!r} -> {translations[0]!r}  ({places[0]})")
    fuzzy_elsewhere = sorted(_id(m.id) for m in cat if m.id and m.fuzzy and _id(m.id) not in strings)
    problems += [f"fuzzy     {msgid!r}  (no longer in the code)" for msgid in fuzzy_elsewhere]
    assert not problems, (f"{len(problems)} of {len(strings)} strings not ready in {lang} "
                          f"(pybabel extract/update, then translate):\n" + "\n".join(problems))


@pytest.mark.parametrize("lang", LANGS)
def test_the_committed_mo_is_the_compiled_po(lang):
    def key(value):  # a plural's id and strings come as lists or tuples
        return value if isinstance(value, str) else tuple(value)

    po = {key(m.id): key(m.string) for m in catalogue(lang) if m.id and not m.fuzzy}
    with open(CATALOGUES / lang / "LC_MESSAGES" / "messages.mo", "rb") as f:
        mo = {key(m.id): key(m.string) for m in read_mo(f) if m.id}
    assert mo == po, "run: pybabel compile -d ghimaging/translations"


# -- The print (kept from tests/test_print_catalogues.py) -----------------

#: Where the printed report's strings live.
PRINT_SOURCES = [("jinja2", ROOT / "templates" / "imaging" / "print.html"),
                 ("jinja2", ROOT / "templates" / "imaging" / "_report_body.html"),
                 ("python", ROOT / "ghimaging" / "imaging" / "printing.py")]


def print_strings() -> set[str]:
    found = set()
    for method, path in PRINT_SOURCES:
        for _line, message, _comments, _context in extract_from_file(method, str(path), keywords=KEYWORDS):
            found.add(_id(message))
    return found


def test_the_print_has_strings_to_translate():
    strings = print_strings()
    assert {"Imaging report", "Page %(page)s of %(pages)s", "Examination date", "Addendum"} <= strings


@pytest.mark.parametrize("lang", LANGS)
def test_every_print_string_is_translated_and_not_fuzzy(lang):
    """The print alone: it goes to patients and referrers in the clinic's
    language, so it must be complete even while the screens are not."""
    cat = catalogue(lang)
    missing = sorted(s for s in print_strings() if not (cat.get(s) and cat.get(s).string))
    assert missing == []
    fuzzy = sorted(s for s in print_strings() if cat.get(s) and cat.get(s).fuzzy)
    assert fuzzy == []


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
        refresh()
        assert gettext("Imaging report") == "Radiologischer Befund"
    with app.test_request_context("/", headers={"Accept-Language": "fr"}):
        refresh()
        assert gettext("Imaging report") == "Imaging report"
    rad = make_user("rad", "radiologist")
    result = workflow.create_result(create_request(submit=True), rad, radiologist=rad, result_date=date(2024, 5, 2),
                                    report="Normal.")
    db.session.merge(Setting(key="language", value="de"))
    db.session.commit()
    body = login("rad").get(f"/results/{result.id}/print", headers={"Accept-Language": "es"}).get_data(as_text=True)
    assert "Radiologischer Befund" in body and "Informe" not in body


# -- The login page in the browser's language -----------------------------

#: A word of the login page in each language that no translator would put
#: otherwise, and the English it replaces.
LOGIN_WORDS = {"es": "Contraseña", "de": "Passwort"}
LOGIN_MSGIDS = ["Sign in", "Username", "Password", "Keep me signed in on this device",
                "Radiology orders, worklists and results"]


def _login_page(client, lang: str) -> str:
    response = client.get("/login", headers={"Accept-Language": f"{lang}, en;q=0.5"})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def _check_login_page_in(client, lang: str) -> None:
    """Every string of the login page in the browser's language, from the
    shipped catalogue, the page saying which language it is in."""
    import html

    body = html.unescape(_login_page(client, lang))
    cat = catalogue(lang)
    assert f'<html lang="{lang}"' in body
    assert LOGIN_WORDS[lang] in body
    for msgid in LOGIN_MSGIDS:
        m = cat.get(msgid)
        assert m is not None and m.string, f"{msgid!r} not in the {lang} catalogue"
        assert m.string in body, f"{msgid!r} not shown as {m.string!r}"
    assert ">Sign in<" not in body and "Keep me signed in" not in body


def test_accept_language_es_gives_spanish_login(client):
    _check_login_page_in(client, "es")


def test_accept_language_de_gives_german_login(client):
    _check_login_page_in(client, "de")


def test_the_login_page_stays_english_for_a_language_not_shipped(client):
    body = _login_page(client, "fr")
    assert "Sign in" in body and "Password" in body


def test_a_message_made_outside_a_request_is_in_the_clinics_language(app):
    """A background loop or a command (an application context, no request)
    translates its messages into the clinic's language instead of failing
    with "Working outside of request context" (Flask-Babel asks the locale
    selector, which reads the request's Accept-Language)."""
    from flask_babel import gettext, refresh

    from ghimaging.extensions import db
    from ghimaging.models import Setting

    refresh()
    assert gettext("Imaging report") == "Imaging report"
    db.session.merge(Setting(key="language", value="de"))
    db.session.commit()
    refresh()  # Flask-Babel keeps the locale it chose for the rest of the context
    assert gettext("Imaging report") == "Radiologischer Befund"
