"""Issue 13: a worklist template using a variable no request provides is
not saved silently. Decision (ghimaging/worklists/names.UnknownVariables):
it is refused, every unknown name listed at once ("Unknown variables:
patient.nmae, foo"), rather than saved after a confirmation: templates
render strictly (an unknown name is an error, never an empty value), so
such a template would fail every submit that reaches the name. The preview
lists them too. Names in the control directives ({% if %}, {% for %},
{% with %}, {% when %}, GNU Health 4.x's #if) count like ${...}."""

from __future__ import annotations

import re
from html import unescape

import pytest
from sqlalchemy import func, select

from ghimaging.extensions import db
from ghimaging.models import WorklistTemplate

EDITOR = "/admin/worklists/templates/new"
HEAD = "(0008,0005) CS [ISO_IR 192]\n(0008,0050) SH [${AccessionNumber}]\n"


@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


def form(body: str, action: str = "save", request_id: int = 0, name: str = "mine") -> dict:
    return {"name": name, "charset": "ISO_IR 192", "encoding": "utf-8", "body": body, "comment": "",
            "action": action, "preview_request": str(request_id)}


def listed(resp) -> list[str]:
    """The names in the preview's list of unknown variables."""
    m = re.search(r'<ul class="unknown-variables" id="unknown-variables">(.*?)</ul>', resp.get_data(as_text=True),
                  re.S)
    return [unescape(n) for n in re.findall(r"<code>(.*?)</code>", m.group(1))] if m else []


def body_errors(resp) -> str:
    html = resp.get_data(as_text=True)
    chunk = re.search(r'<div class="field [^"]*has-error[^"]*">\s*<label for="body".*?</div>', html, re.S)
    errors = re.findall(r'<p class="error">(.*?)</p>', chunk.group(0), re.S) if chunk else []
    return unescape(" ".join(errors))


def saved(name: str = "mine") -> WorklistTemplate | None:
    db.session.expire_all()
    return db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == name))


def test_saving_lists_every_unknown_variable_and_saves_nothing(app, admin):
    before = db.session.scalar(select(func.count()).select_from(WorklistTemplate))
    body = HEAD + "(0010,0010) PN [${patient.nmae}]\n(0010,0020) LO [${foo}]\n(0010,0030) DA [${PatientBirthDate}]\n"
    r = admin.post(EDITOR, form(body), token_from=EDITOR)
    assert r.status_code == 400
    assert "Unknown variables: patient.nmae, foo" in body_errors(r)
    assert "line 3" in body_errors(r)
    assert listed(r) == ["patient.nmae", "foo"]
    assert saved() is None
    assert db.session.scalar(select(func.count()).select_from(WorklistTemplate)) == before


@pytest.mark.parametrize(("body", "names"), [
    ("{% if foo %}(0010,0010) PN [${PatientName}]{% end %}\n", ["foo"]),
    ("{% for x in bar %}(0010,0010) PN [${x}]{% end %}\n", ["bar"]),
    ("{% with y = baz.qux %}(0010,0010) PN [${y}]{% end %}\n", ["baz.qux"]),
    ("{% choose %}{% when Urgnt %}(0040,1003) SH [STAT]{% end %}{% otherwise %}{% end %}{% end %}\n", ["Urgnt"]),
    ("{% if my.urgnt %}(0040,1003) SH [STAT]{% end %}\n(0010,0010) PN [${PatientNme}]\n", ["my.urgnt", "PatientNme"]),
], ids=["if", "for", "with", "when", "if-on-my-and-text"])
def test_names_in_control_directives_count(app, admin, body, names):
    r = admin.post(EDITOR, form(HEAD + body), token_from=EDITOR)
    assert r.status_code == 400
    assert f"Unknown variables: {', '.join(names)}" in body_errors(r)
    assert saved() is None


def test_gnu_health_4_syntax_counts_too(app, admin):
    body = "(0008,0005) CS [ISO_IR 192]\n#if oldname\n(0010,0010) PN [$PatientName]\n#end\n(0010,0020) LO [$Pid]\n"
    r = admin.post(EDITOR, form(body), token_from=EDITOR)
    assert r.status_code == 400
    assert "Unknown variables: oldname, Pid" in body_errors(r)


def test_a_field_of_another_record_is_unknown_on_this_one(app, admin):
    """``name`` is a field of the test, not of the patient: the check that
    let any model's field through saved ``my.patient.name``, and every
    submit failed on it."""
    body = HEAD + "(0010,0010) PN [${my.patient.name}]\n(0032,1060) LO [${my.test.name}]\n"
    r = admin.post(EDITOR, form(body), token_from=EDITOR)
    assert r.status_code == 400
    assert "Unknown variables: my.patient.name" in body_errors(r)
    assert "my.test.name" not in body_errors(r)
    assert saved() is None


def test_hidden_attributes_are_still_refused_as_not_allowed(app, admin):
    r = admin.post(EDITOR, form(HEAD + "(0010,0010) PN [${my.patient.query}]\n"), token_from=EDITOR)
    assert r.status_code == 400
    assert "Not allowed in a worklist template" in body_errors(r)
    assert "Unknown variables" not in body_errors(r)


def test_names_the_template_defines_and_known_fields_save(app, admin):
    body = (HEAD + "{% with n = PatientName %}(0010,0010) PN [${n}]{% end %}\n"
            "{% for i, c in enumerate(AccessionNumber[:2]) %}(0020,0010) SH [${c}${i}]{% end %}\n"
            "(0010,0020) LO [${my.patient.puid}]\n(0008,0060) CS [${my.test.modality.code.upper()}]\n")
    r = admin.post(EDITOR, form(body), token_from=EDITOR)
    assert r.status_code == 302, body_errors(r)
    assert saved() is not None


def test_the_preview_lists_them_with_a_request_and_without_one(app, admin, create_request):
    body = HEAD + "(0010,0010) PN [${patient.nmae}]\n(0010,0020) LO [${foo}]\n"
    r = admin.post(EDITOR, form(body, action="preview"), token_from=EDITOR)  # no request yet
    assert r.status_code == 400
    assert listed(r) == ["patient.nmae", "foo"]
    req = create_request(submit=True)
    r = admin.post(EDITOR, form(body, action="preview", request_id=req.id), token_from=EDITOR)
    assert r.status_code == 400
    assert listed(r) == ["patient.nmae", "foo"]
    assert "Unknown variables: patient.nmae, foo" in unescape(r.get_data(as_text=True))
    assert saved() is None


def test_editing_a_stored_template_keeps_it_as_it_was(app, admin):
    r = admin.post(EDITOR, form(HEAD + "(0010,0010) PN [${PatientName}]\n"), token_from=EDITOR)
    assert r.status_code == 302
    tpl = saved()
    page = f"/admin/worklists/templates/{tpl.id}"
    r = admin.post(page, form(HEAD + "(0010,0010) PN [${PatientNmae}]\n"), token_from=page)
    assert r.status_code == 400
    assert "Unknown variables: PatientNmae" in body_errors(r)
    assert "${PatientName}" in saved().body and "PatientNmae" not in saved().body
