"""Report templates per imaging test: administrators keep them in the
catalogue; the reporting desk offers the test's templates (and only its own)
for insertion at the cursor."""

from __future__ import annotations

import html
import re

import pytest
from sqlalchemy import select

from ghimaging.catalog import report_templates
from ghimaging.extensions import db
from ghimaging.models import ReportTemplate
from tests.support.web import CsrfClient

NORMAL_CHEST = "Lungs clear.\nHeart size normal.\nNo pleural effusion <or> pneumothorax."


@pytest.fixture
def as_admin(make_user, login) -> CsrfClient:
    make_user("root", "admin")
    return login("root")


def page(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def field_errors(resp, name: str) -> list[str]:
    """The error messages shown under the form field called ``name``."""
    for chunk in re.findall(r'<div class="field [^"]*has-error[^"]*">(.*?)</div>', resp.get_data(as_text=True), re.S):
        if f'name="{name}"' in chunk:
            return [html.unescape(m) for m in re.findall(r'<p class="error">(.*?)</p>', chunk)]
    return []


def templates_of(test) -> list[tuple[str, str]]:
    db.session.expire_all()
    return [(t.name, t.text) for t in report_templates.of_test(test)]


def add(client: CsrfClient, test, name: str, text: str):
    url = f"/catalog/tests/{test.id}/report-templates/new"
    return client.post(url, {"name": name, "text": text}, token_from=url)


def test_admin_adds_edits_and_deletes_templates_of_a_test(app, as_admin, catalog):
    chest = catalog["chest"]
    r = add(as_admin, chest, "Normal chest, PA", NORMAL_CHEST)
    assert r.status_code == 302 and r.location.endswith(f"/catalog/tests/{chest.id}/report-templates")
    assert add(as_admin, chest, "Normal chest, child", "Normal for age.").status_code == 302
    assert templates_of(chest) == [("Normal chest, PA", NORMAL_CHEST), ("Normal chest, child", "Normal for age.")]
    assert templates_of(catalog["abd"]) == []

    listing = page(as_admin.get(f"/catalog/tests/{chest.id}/report-templates"))
    assert "Normal chest, PA" in listing and "Normal chest, child" in listing
    assert f'href="/catalog/tests/{chest.id}/report-templates">2 templates</a>' in page(as_admin.get("/catalog/"))

    tpl = db.session.scalar(select(ReportTemplate).where(ReportTemplate.name == "Normal chest, child"))
    url = f"/catalog/tests/{chest.id}/report-templates/{tpl.id}"
    assert 'value="Normal chest, child"' in page(as_admin.get(url))
    r = as_admin.post(url, {"name": "Normal chest, infant", "text": "Normal for an infant."}, token_from=url)
    assert r.status_code == 302
    assert ("Normal chest, infant", "Normal for an infant.") in templates_of(chest)

    r = as_admin.post(f"/catalog/report-templates/{tpl.id}/delete", token_from=url)
    assert r.status_code == 302
    assert templates_of(chest) == [("Normal chest, PA", NORMAL_CHEST)]


@pytest.mark.parametrize("name, text, field, message", [
    ("", "Some text.", "name", "Give the template a name."),
    ("Normal", "", "text", "Write the text the template inserts."),
    ("Two\nlines", "Some text.", "name", "line breaks"),
    ("x" * 101, "Some text.", "name", "At most 100 characters."),
    ("Normal", "y" * 20_001, "text", "At most 20,000 characters."),
])
def test_a_bad_template_is_refused_at_its_field(app, as_admin, catalog, name, text, field, message):
    r = add(as_admin, catalog["chest"], name, text)
    assert r.status_code == 400
    assert any(message in e for e in field_errors(r, field)), field_errors(r, field)
    assert templates_of(catalog["chest"]) == []


def test_a_name_twice_for_one_test_is_refused_but_allowed_for_another(app, as_admin, catalog):
    assert add(as_admin, catalog["chest"], "Normal", "Chest normal.").status_code == 302
    r = add(as_admin, catalog["chest"], "Normal", "Again.")
    assert r.status_code == 400 and "already has a template named 'Normal'" in page(r)
    assert add(as_admin, catalog["abd"], "Normal", "Abdomen normal.").status_code == 302
    assert templates_of(catalog["chest"]) == [("Normal", "Chest normal.")]


@pytest.mark.parametrize("role", ["radiologist", "physician", "technologist"])
def test_only_administrators_manage_templates(app, make_user, login, catalog, role):
    chest = catalog["chest"]
    tpl = report_templates.save(None, chest, name="Normal", text="Chest normal.")
    db.session.commit()
    make_user("someone", role)
    c = login("someone")
    assert c.get(f"/catalog/tests/{chest.id}/report-templates").status_code == 403
    assert add(c, chest, "Mine", "Text.").status_code == 403
    assert c.post(f"/catalog/report-templates/{tpl.id}/delete").status_code == 403
    assert templates_of(chest) == [("Normal", "Chest normal.")]


def test_the_desk_offers_the_tests_templates_escaped_and_not_other_tests(app, make_user, login, catalog,
                                                                          create_request):
    report_templates.save(None, catalog["chest"], name="Normal chest, PA", text=NORMAL_CHEST)
    report_templates.save(None, catalog["abd"], name="Normal abdomen", text="Liver normal.")
    db.session.commit()
    req = create_request(test=catalog["chest"], submit=True)
    make_user("rad", "radiologist")
    raw = login("rad").get(f"/requests/{req.id}/result").get_data(as_text=True)
    assert '<option value="' in raw and "Normal chest, PA" in raw
    assert "Normal abdomen" not in raw and "Liver normal." not in raw
    # The text sits in an inert <template>, escaped: markup in it stays text.
    m = re.search(r'<template id="report-template-\d+">(.*?)</template>', raw, re.S)
    assert m and html.unescape(m.group(1)) == NORMAL_CHEST and "&lt;or&gt;" in m.group(1)


def test_without_templates_the_desk_says_so(app, make_user, login, create_request):
    req = create_request(submit=True)
    make_user("rad", "radiologist")
    body = page(login("rad").get(f"/requests/{req.id}/result"))
    assert "No report templates for Chest X-ray PA" in body
    assert "data-template-pick" not in body
