"""Markup put into a translated sentence's placeholder reaches the page as
markup, never as text.

Jinja joins with ``~`` under autoescape by escaping every plain part when
one part is markup: ``('<a href="' ~ url ~ '">' ~ (name|e) ~ '</a>')|safe``
showed "Add an <a href=…>Orthanc server</a> first." as text on the worklist
page (and the token page's ``<code>``). Markup is built as
``('<a href="%s">%s</a>'|safe) % (url, name)``: the values are escaped,
the tags kept."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.web import CsrfClient

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_no_template_joins_markup_with_tilde_and_then_marks_it_safe():
    offenders = [f"{path.relative_to(TEMPLATES)}:{number}"
                 for path in sorted(TEMPLATES.rglob("*.html"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"~[^{}]*\)\s*\|\s*safe", line)]
    assert not offenders, offenders


def test_the_worklist_page_links_to_the_orthanc_servers_in_every_language(app, make_user, login):
    make_user("adm", "admin")
    c: CsrfClient = login("adm")
    for language, name in (("en", "Orthanc server"), ("es", "servidor Orthanc"), ("de", "Orthanc-Server")):
        page = c.get("/admin/worklists/", headers={"Accept-Language": language}).get_data(as_text=True)
        assert f'<a href="/orthanc/servers">{name}</a>' in page, language
        assert "&lt;a href" not in page, language
