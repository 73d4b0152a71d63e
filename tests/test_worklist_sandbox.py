"""Worklist templates run in a sandbox (issue 9, finding 12): an admin's
template could run any Python (``${__import__('subprocess')...}`` ran as the
server's user, read ``secret_key`` and ``credentials.key``, and ran again on
every submit and view of an order). Known Python sandbox escapes are
refused when a template is saved (with the line), refused again before
every render of a template stored some other way, and never run; the
template language that the shipped templates and GNU Health's use still
works (ghimaging.worklists.sandbox)."""

from __future__ import annotations

from datetime import datetime
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import select

from ghimaging.extensions import db
from ghimaging.imaging import workflow
from ghimaging.models import ImagingRequest, WorklistTemplate
from ghimaging.worklists import build_file, checker, file_status, sandbox, templates, variables, writer
from ghimaging.worklists.render import RenderError, render


@pytest.fixture
def app_config(tmp_path):
    return {"WORKLIST_DIR": str(tmp_path / "worklists")}


@pytest.fixture
def folder(app) -> Path:
    return Path(app.config["WORKLIST_DIR"])


@pytest.fixture
def canary(tmp_path) -> Path:
    """A path the escapes try to create: it must never exist."""
    return tmp_path / "escaped"


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


@pytest.fixture
def admin(make_user, login):
    make_user("boss", "admin")
    return login("boss")


# Each escape: (the template text, the line of that text the refusal names).
# CANARY is replaced by the path of a file the payload would create if it
# ran. The text goes on line 3 of a template (see body()).
ESCAPES: dict[str, tuple[str, int]] = {
    # Python's built-ins, straight or through a back door.
    "import": ("(0010,0010) PN [${__import__('os').mkdir(CANARY)}]", 1),
    "import-subprocess-id": ("(0010,0010) PN [${__import__('subprocess').check_output(['touch', CANARY])}]", 1),
    "builtins-dict": ("(0010,0010) PN [${__builtins__['open'](CANARY, 'w')}]", 1),
    "open": ("(0010,0010) PN [${open(CANARY, 'w').write('x')}]", 1),
    "open-read-passwd": ("(0010,0010) PN [${open('/etc/passwd').read()}]", 1),
    "open-unicode-lookalike": ("(0010,0010) PN [${\U0001d5c8pen(CANARY, 'w')}]", 1),  # NFKC makes it 'open'
    "eval": ("(0010,0010) PN [${eval(\"open(CANARY, 'w')\")}]", 1),
    "exec": ("(0010,0010) PN [${exec(\"open(CANARY, 'w')\")}]", 1),
    "compile": ("(0010,0010) PN [${eval(compile(\"open(CANARY, 'w')\", 'x', 'eval'))}]", 1),
    "getattr-split-name": ("(0010,0010) PN [${getattr(my, '_' + '_dict__')}]", 1),
    "getattr-os": ("(0010,0010) PN [${getattr(__import__('os'), 'mkdir')(CANARY)}]", 1),
    "globals": ("(0010,0010) PN [${globals()}]", 1),
    "locals": ("(0010,0010) PN [${locals()}]", 1),
    "vars": ("(0010,0010) PN [${vars()}]", 1),
    "type": ("(0010,0010) PN [${type(my)}]", 1),
    "type-new-class": ("(0010,0010) PN [${type('X', (), {})}]", 1),
    "object": ("(0010,0010) PN [${object.__subclasses__()}]", 1),
    "genshi-context-helpers": ("(0010,0010) PN [${value_of('my')}${defined('my')}]", 1),
    # Walking from a value to a class, its subclasses and a module's globals.
    "tuple-subclasses": ("(0010,0010) PN [${().__class__.__bases__[0].__subclasses__()}]", 1),
    "subclasses-to-os-system": (
        "(0010,0010) PN [${[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close']"
        "[0].__init__.__globals__['system']('touch ' + CANARY)}]", 1),
    "str-class": ("(0010,0010) PN [${''.__class__}]", 1),
    "variable-class": ("(0010,0010) PN [${PatientName.__class__}]", 1),
    "variable-item-to-attribute": ("(0010,0010) PN [${PatientName['__class__']}]", 1),
    "my-class": ("(0010,0010) PN [${my.__class__}]", 1),
    "my-dict": ("(0010,0010) PN [${my.__dict__}]", 1),
    "my-private": ("(0010,0010) PN [${my._obj}]", 1),
    "my-item-private": ("(0010,0010) PN [${my['_obj']}]", 1),
    "my-sqlalchemy-state": ("(0010,0010) PN [${my._sa_instance_state}]", 1),
    "my-to-the-database-session": ("(0010,0010) PN [${my.patient.query.session}]", 1),
    "my-password-hash": ("(0010,0010) PN [${my.requesting_physician.password_hash}]", 1),
    "mro-comprehension": ("(0010,0010) PN [${[c for c in ().__class__.__mro__]}]", 1),
    "generator-frame": ("(0010,0010) PN [${(c for c in PatientName).gi_frame.f_globals}]", 1),
    "lambda": ("(0010,0010) PN [${(lambda: __import__('os').mkdir(CANARY))()}]", 1),
    "lambda-harmless": ("(0010,0010) PN [${(lambda: 1)()}]", 1),
    "walrus": ("(0010,0010) PN [${(o := PatientName)}]", 1),
    "dict-literal": ("(0010,0010) PN [${ {}.keys() }]", 1),
    # Format strings read attributes.
    "format-attribute": ("(0010,0010) PN [${'{0.__class__}'.format(my)}]", 1),
    "format-map": ("(0010,0010) PN [${'{m.__class__}'.format_map(my)}]", 1),
    "str-format-map": ("(0010,0010) PN [${str.format_map}]", 1),
    "percent-huge-width": ("(0010,0010) PN [${'%999999999s' % PatientName}]", 1),
    # Directives that run code, define functions or read files.
    "python-block": ("{% python\nimport os\nos.mkdir(CANARY)\n%}\n(0010,0010) PN [x]", 1),
    "python-block-old-syntax": ("#python\nimport os\nos.mkdir(CANARY)\n#end\n(0010,0010) PN [x]", 1),
    "def": ("{% def f() %}${__import__('os').mkdir(CANARY)}{% end %}\n(0010,0010) PN [${f()}]", 1),
    "include": ("{% include /etc/passwd %}\n(0010,0010) PN [x]", 1),
    "include-old-syntax": ("#if True\n#end\n#include /etc/passwd\n(0010,0010) PN [x]", 3),
    "with-import": ("{% with o = __import__('os') %}\n(0010,0010) PN [${o.mkdir(CANARY)}]\n{% end %}", 1),
    "with-private-name": ("{% with _x = PatientName %}\n(0010,0010) PN [${_x}]\n{% end %}", 1),
    "for-over-subclasses": ("{% for c in ().__class__.__base__.__subclasses__() %}\n(0010,0010) PN [x]\n{% end %}", 1),
    # Genshi compiles 'iter(<values>)': values that close the call.
    "for-closing-iter": ("{% for x in PatientName), __import__('os').mkdir(CANARY), (1 %}\n(0010,0010) PN [${x}]\n"
                         "{% end %}", 1),
    "for-rebinds-a-function": ("{% for len in PatientName %}\n(0010,0010) PN [${len}]\n{% end %}", 1),
    "if-directive": ("{% if __import__('os').mkdir(CANARY) %}\n(0010,0010) PN [x]\n{% end %}", 1),
    "old-syntax-dollar-name": ("#if True\n#end\n(0010,0010) PN [$my.__class__]", 3),
    "old-syntax-if": ("#if __import__('os').mkdir(CANARY)\n(0010,0010) PN [x]\n#end", 1),
}

HEAD = "(0008,0005) CS [${SpecificCharacterSet}]\n(0008,0050) SH [${AccessionNumber}]\n"
TAIL = "\n(0010,0020) LO [${PatientID}]\n"


def body(case: str, canary: Path) -> tuple[str, int]:
    """The template holding the escape on line 3, and the line to be named."""
    text, line = ESCAPES[case]
    return HEAD + text.replace("CANARY", repr(str(canary))) + TAIL, 2 + line


def store(name: str, text: str) -> WorklistTemplate:
    """Straight into the database, past every check (a row written by an
    older version, by hand or restored from a backup)."""
    row = WorklistTemplate(name=name, body=text, charset="ISO_IR 192", encoding="utf-8")
    db.session.add(row)
    db.session.commit()
    return row


def use_for_chest(catalog, name: str) -> None:
    catalog["chest"].worklist_template = name
    db.session.commit()


# -- refused when saved ---------------------------------------------------------

@pytest.mark.parametrize("case", list(ESCAPES))
def test_an_escape_is_refused_when_saved_with_its_line(app, case, canary):
    text, line = body(case, canary)
    with pytest.raises(templates.TemplateError) as err:
        templates.save(None, name="evil", body=text, charset="ISO_IR 192", encoding="utf-8")
    assert err.value.field == "body" and err.value.line == line, str(err.value)
    assert str(err.value).startswith(f"line {line}: ")
    assert db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "evil")) is None
    assert not canary.exists()


EDITOR = "/admin/worklists/templates/new"


def form(text: str, action: str, request_id: int = 0) -> dict:
    return {"name": "evil", "charset": "ISO_IR 192", "encoding": "utf-8", "body": text, "comment": "",
            "action": action, "preview_request": str(request_id)}


@pytest.mark.parametrize("case", ["import-subprocess-id", "subclasses-to-os-system", "python-block", "include",
                                  "format-attribute", "my-dict", "for-closing-iter", "old-syntax-dollar-name"])
@pytest.mark.parametrize("action", ["save", "preview"])
def test_the_editor_refuses_an_escape_with_400_naming_the_line(app, admin, create_request, case, action, canary):
    text, line = body(case, canary)
    req = create_request(submit=True)
    r = admin.post(EDITOR, form(text, action, req.id), token_from=EDITOR)
    assert r.status_code == 400
    html = unescape(r.get_data(as_text=True))
    assert f"line {line}: Not allowed in a worklist template" in html
    assert "root:" not in html and "uid=" not in html
    assert db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "evil")) is None
    assert not canary.exists()


def test_the_editor_page_lists_what_a_template_may_use(app, admin):
    html = unescape(admin.get(EDITOR).get_data(as_text=True))
    assert "What a template may use" in html
    assert "upper" in html and "len()" in html and "{% python %}" in html


# -- refused again before every render --------------------------------------------

@pytest.mark.parametrize("case", list(ESCAPES))
def test_a_stored_escape_refuses_the_submit_and_never_runs(app, folder, catalog, create_request, doc, case,
                                                          canary):
    text, line = body(case, canary)
    store("evil", text)
    use_for_chest(catalog, "evil")
    req = create_request(physician=doc)
    with pytest.raises(workflow.WorklistRefused) as err:
        workflow.submit(req, doc)
    assert err.value.code == "worklist_template"
    assert f"line {line}: " in err.value.message and "does not work" in err.value.message
    # Refused by the check, not by an error the payload ran into.
    assert "Not allowed in a worklist template" in err.value.message or (
        case == "walrus" and "cannot compile" in err.value.message)
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).state == "draft"
    assert not (folder / f"{req.accession_number}.wl").exists()
    assert not canary.exists()


@pytest.mark.parametrize("case", ["import", "subclasses-to-os-system", "python-block", "include-old-syntax",
                                  "my-password-hash", "with-import"])
def test_a_template_that_turns_bad_renders_nothing_and_the_request_says_why(app, folder, catalog, create_request,
                                                                            doc, case, canary):
    """A waiting item whose template is replaced in the database: the next
    write removes its file and records why, instead of running the code."""
    req = create_request(physician=doc, submit=True)
    path = folder / f"{req.accession_number}.wl"
    assert path.exists()
    text, line = body(case, canary)
    store("evil", text)
    use_for_chest(catalog, "evil")
    report = writer.rebuild()
    assert len(report.errors) == 1 and "Not allowed in a worklist template" in report.errors[0]
    assert not path.exists()
    db.session.expire_all()
    req = db.session.get(ImagingRequest, req.id)
    status = file_status(req)
    assert status.state == "missing"
    assert f"line {line}: Not allowed in a worklist template" in status.reason
    assert not canary.exists()


def test_the_order_page_and_the_submit_button_say_why(app, folder, catalog, create_request, doc, login, canary):
    text, _ = body("import-subprocess-id", canary)
    store("evil", text)
    use_for_chest(catalog, "evil")
    req = create_request(physician=doc)
    c = login("doc")
    page = c.get(f"/requests/{req.id}")
    assert page.status_code == 200
    assert "Not allowed in a worklist template" in unescape(page.get_data(as_text=True))
    r = c.post(f"/requests/{req.id}/submit", token_from=f"/requests/{req.id}")
    assert r.status_code == 302
    html = unescape(c.get(f"/requests/{req.id}").get_data(as_text=True))
    assert "Not submitted" in html and "line 3: Not allowed in a worklist template" in html
    db.session.expire_all()
    assert db.session.get(ImagingRequest, req.id).state == "draft"
    assert not canary.exists()


def test_the_worklists_page_names_a_stored_template_that_fails_the_check(app, admin, canary):
    templates.load_shipped()
    text, line = body("python-block", canary)
    store("evil", text)
    html = unescape(admin.get("/admin/worklists/").get_data(as_text=True))
    assert f"Renders nothing: line {line}: Not allowed in a worklist template: Python code blocks" in html
    assert html.count("Renders nothing") == 1  # the shipped ones pass
    assert not canary.exists()


def test_the_api_answers_422_for_a_stored_escape(app, catalog, create_request, api, canary):
    text, _ = body("import", canary)
    store("evil", text)
    use_for_chest(catalog, "evil")
    req = create_request()
    r = api("technologist").get(f"/api/v1/requests/{req.id}/worklist")
    assert r.status_code == 422
    assert "Not allowed in a worklist template" in r.get_data(as_text=True)
    assert not canary.exists()


# -- the second line of defence: the run-time lookups alone ---------------------------

RUNTIME = ["import", "import-subprocess-id", "builtins-dict", "open", "open-unicode-lookalike", "eval", "exec",
           "getattr-os", "subclasses-to-os-system", "lambda", "def", "with-import", "for-closing-iter",
           "if-directive", "old-syntax-if", "python-block", "include", "include-old-syntax", "my-password-hash",
           "my-to-the-database-session", "my-private", "my-item-private", "variable-item-to-attribute",
           "format-attribute", "generator-frame", "tuple-subclasses", "globals"]


@pytest.mark.parametrize("case", RUNTIME)
def test_with_the_check_switched_off_the_lookups_still_refuse(app, create_request, doc, monkeypatch, case,
                                                             canary):
    """The check of the parsed template is one line of defence; the render
    itself (no built-ins, attributes only on strings, dates and ``my``, no
    include loader, no Python blocks) is another, tested here alone."""
    monkeypatch.setattr(checker, "check_stream", lambda stream, body: None)
    req = create_request(physician=doc, submit=True)
    text, _ = body(case, canary)
    tpl = WorklistTemplate(name="evil", body=text, charset="ISO_IR 192", encoding="utf-8")
    with pytest.raises(RenderError) as err:
        render(text, variables.build(req, tpl))
    assert "root:" not in str(err.value)
    assert not canary.exists()


def test_the_check_is_what_refuses_first(app, create_request, canary):
    """Without the monkeypatch above, the same payload stops at the check
    (a SandboxError naming the line), before anything is evaluated."""
    req = create_request(submit=True)
    text, line = body("import", canary)
    tpl = WorklistTemplate(name="evil", body=text, charset="ISO_IR 192", encoding="utf-8")
    with pytest.raises(sandbox.SandboxError) as err:
        render(text, variables.build(req, tpl))
    assert err.value.line == line


# -- bounds: a template cannot hang a submit either ---------------------------------

def long_name_request(create_request, create_patient):
    return create_request(create_patient(family_name="X" * 60, given_name="Y" * 60), submit=True)


def test_loops_share_a_budget(app, create_request, create_patient):
    """Four nested loops over a 64-character name would take 16.7 million
    rounds; the budget stops them at 10,000."""
    req = long_name_request(create_request, create_patient)
    text = HEAD + ("{% for a in PatientName %}{% for b in PatientName %}{% for c in PatientName %}"
                   "{% for d in PatientName %}{% end %}{% end %}{% end %}{% end %}") + TAIL
    with pytest.raises(RenderError, match="more than 10000 items"):
        build_file(req, WorklistTemplate(name="t", body=text, charset="ISO_IR 192", encoding="utf-8"))


@pytest.mark.parametrize("expression", [
    "PatientName.replace('', PatientName).replace('', PatientName)",
    "PatientName.ljust(999999999)",
    "PatientName.join(PatientName).join(PatientName.join(PatientName))",
])
def test_strings_cannot_grow_without_bound(app, create_request, create_patient, expression):
    req = long_name_request(create_request, create_patient)
    text = HEAD + "(0010,0010) PN [${" + expression + "}]" + TAIL
    with pytest.raises(RenderError, match="longer than 65536"):
        build_file(req, WorklistTemplate(name="t", body=text, charset="ISO_IR 192", encoding="utf-8"))


@pytest.mark.parametrize("expression", [
    " + ".join(["PatientName.ljust(60000)"] * 40),  # 2.4 MB in one expression
    "'" + "%s" * 40 + "' % (" + ", ".join(["PatientName.ljust(60000)"] * 40) + ")",
])
def test_one_expression_cannot_build_megabytes(app, expression):
    """Refused when saved: at most 16 operators and 32 '%' conversions in
    one expression, each value at most 65536 characters."""
    text = HEAD + "(0010,0010) PN [${" + expression + "}]" + TAIL
    with pytest.raises(templates.TemplateError, match="at most") as err:
        templates.save(None, name="big", body=text, charset="ISO_IR 192", encoding="utf-8")
    assert err.value.line == 3


def test_the_rendered_text_is_bounded(app, create_request):
    req = create_request(submit=True)
    text = HEAD + "".join("(0040,1004) LO [${AccessionNumber.ljust(60000)}]\n" for _ in range(20))
    with pytest.raises(RenderError, match="more than 1048576 characters"):
        render(text, variables.build(req, WorklistTemplate(name="t", body=text, charset="ISO_IR 192",
                                                            encoding="utf-8")))


# -- what a template may still do -----------------------------------------------------

ALLOWED = """\
(0008,0005) CS [${SpecificCharacterSet}]
(0008,0050) SH [${AccessionNumber}]
(0010,0010) PN [${PatientName.upper()}]
(0010,0020) LO [${PatientID.lower().replace('-', '')}]
(0010,1000) LO [${'%s/%s' % (Modality, len(ProcedureCode))}]
(0010,2000) LO [${my.patient.family_name + ', ' + my.patient.given_name.strip()}]
(0010,2110) LO [${ProcedureCode[:4]}${'!' if my.urgent else ''}${str(my.urgent)}]
{% for part in PatientName.split('^') %}\\
(0032,1060) LO [${part.title()}]
{% end %}\\
{% for i, part in enumerate(PatientName.split('^'), 1) %}\\
(0038,0010) LO [${i}:${part}]
{% end %}\\
{% with short = my.test.code[:2] %}\\
(0038,0050) LO [${short}-${my.test.modality.code}-${max(1, 2)}]
{% end %}\\
{% choose %}\\
{% when my.urgent %}\\
(0040,1003) SH [STAT]
{% end %}\\
{% otherwise %}\\
(0040,1003) SH [ROUTINE]
{% end %}\\
{% end %}\\
(0040,1004) LO [${my.scheduled_at.year if my.scheduled_at else ''}${'-yes' if 'AB' in PatientID.upper() else ''}]
"""


def element(text: str, tag: str) -> list[str]:
    return [ln.split("[", 1)[1].rsplit("]", 1)[0] for ln in text.splitlines() if ln.startswith(f"({tag})")]


def test_variables_my_functions_methods_conditions_and_loops_still_work(app, create_request, create_patient):
    templates.save(None, name="allowed", body=ALLOWED, charset="ISO_IR 192", encoding="utf-8")
    patient = create_patient(puid="ab-12", family_name="Müller", given_name=" Jürgen ")
    req = create_request(patient, submit=True, urgent=True, scheduled_at=datetime(2025, 3, 4, 10, 5))
    text = build_file(req, db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "allowed"))).text
    assert element(text, "0010,0010") == ["MÜLLER^JÜRGEN"]
    assert element(text, "0010,0020") == ["ab12"]
    assert element(text, "0010,1000") == ["CR/8"]
    assert element(text, "0010,2000") == ["Müller, Jürgen"]
    assert element(text, "0010,2110") == ["XR-C!True"]
    assert element(text, "0032,1060") == ["Müller", "Jürgen"]
    assert element(text, "0038,0010") == ["1:Müller", "2:Jürgen"]
    assert element(text, "0038,0050") == ["XR-CR-2"]
    assert element(text, "0040,1003") == ["STAT"]
    assert element(text, "0040,1004") == ["2025-yes"]
    routine = build_file(create_request(submit=True), WorklistTemplate(
        name="x", body=ALLOWED, charset="ISO_IR 192", encoding="utf-8")).text
    assert element(routine, "0040,1003") == ["ROUTINE"]


@pytest.mark.parametrize("name", [e["name"] for e in templates.shipped()])
def test_every_shipped_template_passes_the_check_and_renders(app, create_request, name):
    templates.load_shipped()
    row = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == name))
    req = create_request(submit=True, urgent=True)
    data = build_file(req, row)
    assert req.accession_number in data.text


def test_a_shipped_template_that_fails_the_check_is_not_loaded(app, monkeypatch):
    """``ghimaging init`` loads the shipped templates through the same check
    (a file in worklist_templates/ edited on disk)."""
    real = templates.shipped

    def tampered():
        out = real()
        out[0]["body"] += "(0040,3001) LO [${__import__('os').getcwd()}]\n"
        return out

    monkeypatch.setattr(templates, "shipped", tampered)
    with pytest.raises(templates.TemplateError) as err:
        templates.load_shipped()
    first = real()[0]
    assert f"'{first['name']}'" in str(err.value) and "Not allowed in a worklist template" in str(err.value)
    assert err.value.line == len(first["body"].splitlines()) + 1
    assert db.session.scalar(select(WorklistTemplate)) is None  # nothing loaded


# -- dates: strftime with the directives a worklist needs --------------------------

STRFTIME = """\
(0008,0050) SH [${AccessionNumber}]
(0040,0002) DA [${my.scheduled_at.strftime('%Y%m%d')}]
(0040,0003) TM [${my.scheduled_at.strftime('%H%M%S')}]
(0040,0007) LO [${my.scheduled_at.strftime('%d/%m/%y %H:%M, day %j, 100%%')}]
(0040,0009) SH [${my.patient.birth_date.strftime('%d.%m.%Y %H')}]
"""


def test_strftime_on_a_date_renders_with_the_listed_directives(app, create_request, create_patient):
    """``strftime`` is a date method templates may call, but Python's
    imports ``time`` through ``__import__`` (absent in the sandbox): every
    render failed with ``KeyError: '__import__'``. The sandbox formats
    itself, with a fixed list of directives."""
    templates.save(None, name="dates", body=STRFTIME, charset="ISO_IR 192", encoding="utf-8")
    patient = create_patient(birth_date=datetime(1969, 7, 20).date())
    req = create_request(patient, submit=True, scheduled_at=datetime(2025, 3, 4, 10, 5, 9))
    row = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == "dates"))
    text = build_file(req, row).text
    assert element(text, "0040,0002") == ["20250304"]
    assert element(text, "0040,0003") == ["100509"]
    assert element(text, "0040,0007") == ["04/03/25 10:05, day 063, 100%"]
    assert element(text, "0040,0009") == ["20.07.1969 00"]


@pytest.mark.parametrize("pattern", ["%c", "%A", "%Z %Y", "%", "%Y%"])
def test_strftime_refuses_other_directives_saying_which_it_takes(app, create_request, pattern):
    body = f"(0008,0050) SH [${{AccessionNumber}}]\n(0040,0002) DA [${{my.scheduled_at.strftime('{pattern}')}}]\n"
    req = create_request(submit=True, scheduled_at=datetime(2025, 3, 4, 10, 5))
    with pytest.raises(RenderError) as exc:
        build_file(req, WorklistTemplate(name="x", body=body, charset="ISO_IR 192", encoding="utf-8"))
    message = str(exc.value)
    assert "strftime" in message and "%Y %m %d %H %M %S" in message, message
    assert "__import__" not in message
