"""Worklist templates rendered to dump2dcm text: values made safe for their
line and VR, the variables a template sees, both Genshi syntaxes, errors
with their line, and character sets (ghimaging.worklists)."""

from __future__ import annotations

import time
from datetime import date, datetime

import pytest

from ghimaging.extensions import db
from ghimaging.models import WorklistTemplate
from ghimaging.worklists import (
    build_file,
    charsets,
    dicomfile,
    render_text,
    templates,
    values,
    variables,
)
from ghimaging.worklists.render import RenderError, render
from ghimaging.worklists.values import SafeProxy

# Everything that could end a dump2dcm line, close its value or add a value.
HOSTILE = ["]", "[", "\n", "\r", "\r\n", "\\", "\x00", "\x01", "\x0b", "\x0c", "\x1b", "\x1c", "\x7f",
           "\x85", "\u2028", "\u2029"]


def body_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def general_body() -> str:
    return next(e["body"] for e in templates.shipped() if e["name"] == "general")


def template(charset="ISO_IR 192", encoding="utf-8", body=None, name="t") -> WorklistTemplate:
    return WorklistTemplate(name=name, body=body or general_body(), charset=charset, encoding=encoding)


def element(text: str, tag: str) -> str:
    """The raw value between [ and ] on the line of ``tag`` (e.g. '0010,0010')."""
    lines = [ln for ln in text.splitlines() if ln.startswith(f"({tag})")]
    assert len(lines) == 1, (tag, lines)
    return lines[0].split("[", 1)[1].rsplit("]", 1)[0]


@pytest.fixture
def doc(make_user):
    return make_user("doc", "physician", full_name="Gregory House")


# -- values.clean -----------------------------------------------------------

@pytest.mark.parametrize("bad", HOSTILE, ids=[f"U+{ord(c[0]):04X}{'x2' if len(c) > 1 else ''}" for c in HOSTILE])
def test_clean_removes_what_could_break_a_line_or_add_a_value(bad):
    for vr in ("LO", "SH", "PN", "LT", "CS", "AE"):
        out = values.clean(f"left{bad}right{bad}", vr)
        assert not set(out) & set("][\\") and out.isprintable(), (vr, out)
        assert len(out.splitlines()) == 1, (vr, out)


def test_clean_keeps_ordinary_text_and_non_ascii():
    assert values.clean("  Müller  Jürgen ", "LO") == "Müller Jürgen"
    assert values.clean("王小明", "LO") == "王小明"
    assert values.clean(None) == ""


@pytest.mark.parametrize("vr, limit", [("AE", 16), ("CS", 16), ("SH", 16), ("LO", 64), ("PN", 64),
                                       ("UI", 64), ("DA", 8), ("TM", 16), ("AS", 4), ("LT", 10240)])
def test_clean_cuts_a_value_to_its_vr_maximum_length(vr, limit):
    source = {"UI": "1." * 60, "DA": "2" * 40, "TM": "1" * 40, "AS": "0" * 40, "CS": "A" * 40,
              "AE": "A" * 40}.get(vr, "x" * (limit + 50))
    out = values.clean(source, vr)
    assert len(out) == limit or (vr == "UI" and len(out) <= limit)
    assert values.clean("short", "LO") == "short"


def test_clean_makes_codes_fit_their_vr():
    assert values.clean("cr", "CS") == "CR"
    assert values.clean("1.2.840\n.10008]", "UI") == "1.2.840.10008"
    assert values.clean("XRAY1é", "AE") == "XRAY1"


def test_person_name_from_parts_cannot_add_components_or_groups():
    pn = values.person_name("Müller^Evil=Group", "Jür^gen\\x]", "")
    assert pn.count("^") == 1 and "=" not in pn and "\\" not in pn and "]" not in pn
    family, given = pn.split("^")
    assert family.split() == ["Müller", "Evil", "Group"]
    assert given.split() == ["Jür", "gen", "x"]
    assert values.person_name("Solo") == "Solo"
    assert values.person_name("A", "", "") == "A"
    assert len(values.person_name("F" * 100, "G" * 100)) <= 64


def test_person_name_from_a_full_name():
    assert values.person_name_from_full("House, Gregory") == "House^Gregory"
    assert values.person_name_from_full("Gregory House") == "House^Gregory"
    assert values.person_name_from_full("Dr^Evil=X") == "Dr Evil X"
    assert values.person_name_from_full("") == ""


# -- PatientAge and TimezoneOffsetFromUTC -----------------------------------

@pytest.mark.parametrize("birth, on, expected", [
    (date(1980, 6, 15), date(2024, 6, 15), "044Y"),
    (date(1980, 6, 15), date(2024, 6, 14), "043Y"),
    (date(2023, 6, 15), date(2024, 6, 15), "001Y"),
    (date(2023, 6, 16), date(2024, 6, 15), "011M"),
    (date(2024, 1, 31), date(2024, 3, 1), "001M"),
    (date(2024, 5, 20), date(2024, 6, 15), "026D"),
    (date(2024, 6, 15), date(2024, 6, 15), "000D"),
    (date(1000, 1, 1), date(2024, 1, 1), "999Y"),
])
def test_patient_age_is_nnnY_nnnM_or_nnnD(birth, on, expected):
    assert values.age(birth, on) == expected


def test_patient_age_is_empty_without_a_birth_date_or_for_a_future_one():
    assert values.age(None, date(2024, 1, 1)) == ""
    assert values.age(date(2025, 1, 1), date(2024, 1, 1)) == ""


@pytest.fixture
def berlin(monkeypatch):
    """The machine's zone is Europe/Berlin for the test (TZ + tzset), and
    whatever it was afterwards."""
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _clinic_zone(name: str) -> None:
    from ghimaging.settings.service import save_clinic_settings

    save_clinic_settings({"time_zone": name})
    db.session.commit()


def test_timezone_offset_is_the_clinics_offset_at_that_instant_with_dst(app, berlin):
    from ghimaging import clock

    _clinic_zone("Europe/Berlin")
    assert clock.utc_offset(datetime(2024, 1, 15, 8, 30)) == "+0100"
    assert clock.utc_offset(datetime(2024, 7, 15, 7, 30)) == "+0200"
    assert clock.utc_offset(datetime(2024, 10, 27, 0, 59)) == "+0200"  # the night DST ends: still summer
    assert clock.utc_offset(datetime(2024, 10, 27, 1, 0)) == "+0100"


def test_timezone_offset_is_the_clinics_not_the_machines(app, berlin):
    """The machine runs on Berlin time; the clinic is in Sao Paulo. One
    offset function (clock's), fed by the clinic's setting only."""
    from ghimaging import clock

    _clinic_zone("America/Sao_Paulo")
    assert clock.utc_offset(datetime(2024, 7, 1, 15, 0)) == "-0300"
    assert not hasattr(values, "utc_offset"), "a second offset function, falling back to the machine's zone"


def test_rendered_file_carries_the_scheduled_times_own_offset(berlin, create_request):
    from ghimaging.settings.service import save_clinic_settings

    save_clinic_settings({"time_zone": "Europe/Berlin"})  # the offset is the clinic's zone's, not the machine's
    db.session.commit()
    winter = create_request(submit=True, scheduled_at=datetime(2025, 1, 20, 8, 15))
    summer = create_request(submit=True, scheduled_at=datetime(2025, 7, 20, 8, 15))
    _, text_w = render_text(winter)
    _, text_s = render_text(summer)
    assert element(text_w, "0008,0201") == "+0100"
    assert element(text_s, "0008,0201") == "+0200"
    # Stored instants are UTC: 08:15 UTC is 09:15 in Berlin in January, 10:15 in July.
    assert element(text_w, "0040,0003") == "091500"
    assert element(text_s, "0040,0002") == "20250720"
    assert element(text_s, "0040,0003") == "101500"


# -- the variables of a real request ----------------------------------------

def test_variables_of_a_request(app, create_request, create_patient, doc):
    patient = create_patient(puid="PUID-77", family_name="Müller", given_name="Jürgen",
                             birth_date=date(1970, 3, 4), sex="M")
    req = create_request(patient, physician=doc, submit=True, scheduled_at=datetime(2025, 3, 4, 10, 5, 6))
    tpl = template()
    v = variables.build(req, tpl, "Clinic [North]")
    assert set(variables.sample_names()) <= set(v)
    assert v["PatientName"] == "Müller^Jürgen"
    assert v["PatientID"] == "PUID-77"
    assert v["PatientAge"] == "055Y"
    assert v["PatientBirthDate"] == "19700304"
    assert v["PatientSex"] == "M"
    assert v["AccessionNumber"] == v["RequestedProcedureID"] == v["ScheduledProcedureStepID"] == req.accession_number
    assert v["StudyInstanceUID"] == req.study_instance_uid
    assert v["RequestingPhysician"] == v["ReferringPhysicianName"] == "House^Gregory"
    assert v["InstitutionName"] == "Clinic North"
    assert v["Modality"] == "CR" and v["ScheduledStationAETitle"] == "XRAY1"
    assert v["RequestedProcedureDescription"] == "Chest X-ray PA"
    assert (v["ScheduledProcedureStepStartDate"], v["ScheduledProcedureStepStartTime"]) == ("20250304", "100506")
    assert v["SpecificCharacterSet"] == "ISO_IR 192"
    assert v["MergeID"] == req.study_instance_uid  # no ORG_ROOT configured


def test_hostile_request_text_cannot_add_an_element(app, create_request, create_patient, catalog):
    """Patient names may contain brackets; test names and comments anything.
    Whatever they hold, the file keeps exactly the template's elements."""
    # The catalogue pages refuse control characters in names, but data also
    # arrives by other roads (imports, the database itself): set it directly.
    catalog["chest"].name = "Chest]\n(0010,0020) LO [EVIL\\X\r\x1b"
    db.session.commit()
    patient = create_patient(family_name="O]Brien[", given_name="Jo]\u2028(0008,0050) SH [X")
    body = general_body() + "(0040,2400) LT [${my.comment}]\n(0040,1002) LO [${my.patient.given_name}]\n"
    req = create_request(patient, submit=True, comment="ok]\n(0010,0020) LO [EVIL")
    data = build_file(req, template(body=body))
    plain = build_file(create_request(submit=True), template(body=body))
    assert len(body_lines(data.text)) == len(body_lines(plain.text))
    assert "EVIL" not in element(data.text, "0010,0020")
    rows = dicomfile.describe(data.data)
    assert [r[1] for r in rows] == [r[1] for r in dicomfile.describe(plain.data)]
    pn = element(data.text, "0010,0010")
    assert pn.count("^") == 1 and pn.startswith("O Brien")


def test_my_is_read_only_and_hides_methods(app, create_request):
    req = create_request(submit=True, comment="a]b")
    my = SafeProxy(req)
    assert my.comment == "a b"
    assert my.patient.family_name == req.patient.family_name
    with pytest.raises(AttributeError):
        my.comment = "x"
    with pytest.raises(AttributeError):
        my._sa_instance_state  # noqa: B018
    assert render("${my.test.name}", {"my": my}) == "Chest X-ray PA"


# -- both Genshi syntaxes ---------------------------------------------------

GNUHEALTH_4 = """\
(0008,0005) CS [$SpecificCharacterSet]
(0008,0050) SH [$AccessionNumber]
(0010,0010) PN [$PatientName]
(0010,0020) LO [$PatientID]
#if my.urgent
(0040,1003) SH [STAT]
#end
#if not my.urgent
(0040,1003) SH [ROUTINE]
#end
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS [$Modality]
(0040,0001) AE [${ScheduledStationAETitle}]
(fffe,e00d) -
(fffe,e0dd) -
"""

GNUHEALTH_5 = """\
(0008,0005) CS [${SpecificCharacterSet}]
(0008,0050) SH [${AccessionNumber}]
(0010,0010) PN [${PatientName}]
(0010,0020) LO [${PatientID}]
{% if my.urgent %}\\
(0040,1003) SH [STAT]
{% end %}\\
{% if not my.urgent %}\\
(0040,1003) SH [ROUTINE]
{% end %}\\
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS [${Modality}]
(0040,0001) AE [${ScheduledStationAETitle}]
(fffe,e00d) -
(fffe,e0dd) -
"""


@pytest.mark.parametrize("body", [GNUHEALTH_4, GNUHEALTH_5], ids=["gnuhealth-4-old-syntax", "gnuhealth-5-new-syntax"])
def test_gnu_health_templates_render(app, create_request, create_patient, body):
    patient = create_patient(puid="P-1", family_name="Müller", given_name="Jürgen")
    urgent = create_request(patient, submit=True, urgent=True)
    routine = create_request(submit=True)
    for req, flag in ((urgent, "STAT"), (routine, "ROUTINE")):
        data = build_file(req, template(body=body))
        assert element(data.text, "0040,1003") == flag
        assert "$" not in data.text and "#if" not in data.text and "{%" not in data.text
        assert element(data.text, "0008,0060") == "CR"
        assert element(data.text, "0040,0001") == "XRAY1"
    text = build_file(urgent, template(body=body)).text
    assert element(text, "0010,0010") == "Müller^Jürgen"
    assert element(text, "0008,0050") == urgent.accession_number


def test_syntax_is_detected_from_the_body():
    from ghimaging.worklists.render import syntax_of

    assert syntax_of(GNUHEALTH_4) == "old"
    assert syntax_of(GNUHEALTH_5) == "new"
    assert syntax_of("(0010,0010) PN [${PatientName}]\n") == "new"


def test_shipped_gnuhealth_legacy_template_renders(app, create_request):
    """The shipped example of a pasted GNU Health 4.x template."""
    entry = next(e for e in templates.shipped() if e["name"] == "gnuhealth-legacy")
    req = create_request(submit=True, urgent=True)
    data = build_file(req, template(body=entry["body"]))
    assert element(data.text, "0040,0007") == "URGENT Chest X-ray PA"


# -- errors with their line -------------------------------------------------

def with_line(body: str, number: int, line: str) -> str:
    lines = body.splitlines()
    lines[number - 1] = line
    return "\n".join(lines) + "\n"


# (body, line number, what replaces that line). A directive comes with its
# {% end %}: Genshi silently drops a directive that is never closed.
ERRORS = {
    "new-undefined-name": (lambda: general_body(), 11, "(0010,0030) DA [${PatientBirthDat}]"),
    "new-undefined-name-prefix-of-an-earlier-one": (lambda: general_body(), 10, "(0010,0020) LO [${PatientNam}]"),
    "new-undefined-member-of-my": (lambda: general_body(), 30, "(0040,1003) SH [${'STAT' if my.urgnt else 'ROUTINE'}]"),
    "new-bad-expression": (lambda: general_body(), 9, "(0010,0010) PN [${PatientName.}]"),
    "new-unclosed-expression": (lambda: general_body(), 16, "(0032,1033) LO [${RequestingService]"),
    "new-expression-starting-a-line": (lambda: general_body(), 29, "${'(0040,1001) SH [X]' if my.urgent else }"),
    "new-bad-directive-expression": (lambda: general_body(), 26,
                                     "{% if (my.urgent %}\n(0040,0020) CS [SCHEDULED]\n{% end %}"),
    "new-unknown-directive": (lambda: general_body(), 26, "{% iff my.urgent %}\n(0040,0020) CS [SCHEDULED]\n{% end %}"),
    "old-undefined-name": (lambda: GNUHEALTH_4, 4, "(0010,0020) LO [$PatientIDD]"),
    "old-bad-directive-expression": (lambda: GNUHEALTH_4, 5, "#if my.urgent ("),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_render_error_names_the_right_line(app, create_request, case):
    make_body, number, line = ERRORS[case]
    body = with_line(make_body(), number, line)
    req = create_request(submit=True)
    with pytest.raises(RenderError) as err:
        build_file(req, template(body=body))
    assert err.value.line == number, f"{case}: reported line {err.value.line}: {err.value}"
    assert str(err.value).startswith(f"line {number}: ")


def test_a_broken_template_is_refused_on_save_with_its_line(app):
    body = with_line(general_body(), 9, "(0010,0010) PN [${PatientName.}]")
    with pytest.raises(templates.TemplateError) as err:
        templates.save(None, name="broken", body=body, charset="ISO_IR 192", encoding="utf-8")
    assert err.value.field == "body" and err.value.line == 9
    assert db.session.query(WorklistTemplate).filter_by(name="broken").count() == 0


# -- character sets ---------------------------------------------------------

@pytest.mark.parametrize("term, encoding", [
    ("ISO_IR 192", "utf-8"), ("ISO_IR 192", "UTF8"), ("ISO_IR 100", "latin-1"), ("ISO_IR 100", "iso-8859-1"),
    ("GB18030", "gb18030"), ("GBK", "gbk"), ("ISO_IR 101", "iso8859-2"), ("ISO_IR 144", "iso8859-5"),
])
def test_matching_charset_and_encoding_pairs_are_accepted(term, encoding):
    import codecs

    assert codecs.lookup(charsets.check_pair(term, encoding)).name == codecs.lookup(encoding).name


@pytest.mark.parametrize("term, encoding", [
    ("ISO_IR 192", "latin-1"), ("ISO_IR 100", "utf-8"), ("GB18030", "utf-8"), ("GB18030", "gbk"),
    ("GBK", "gb18030"), ("ISO_IR 192", "no-such-codec"), ("ISO_IR 999", "utf-8"), ("", "utf-8"),
])
def test_mismatched_or_unknown_pairs_are_refused(term, encoding):
    with pytest.raises(ValueError):
        charsets.check_pair(term, encoding)


def test_templates_save_refuses_a_mismatched_pair_on_the_encoding_field(app):
    with pytest.raises(templates.TemplateError) as err:
        templates.save(None, name="x", body=general_body(), charset="ISO_IR 100", encoding="utf-8")
    assert err.value.field == "encoding" and "ISO_IR 100" in str(err.value)


def test_charset_choices_offer_the_common_ones_first():
    terms = [t for t, _ in charsets.choices()]
    assert terms[:3] == ["ISO_IR 192", "ISO_IR 100", "ISO_IR 101"]
    assert {"GB18030", "GBK"} <= set(terms)
    assert not any(t.startswith("ISO 2022") for t in terms)


def test_a_name_the_charset_cannot_carry_is_refused_clearly(app, create_request, create_patient):
    patient = create_patient(family_name="王", given_name="小明")
    req = create_request(patient, submit=True)
    with pytest.raises(ValueError) as err:
        build_file(req, template("ISO_IR 100", "latin-1"))
    message = str(err.value)
    assert "王" in message and "ISO_IR 100" in message and "ISO_IR 192" in message
    data = build_file(req, template("GB18030", "gb18030"))
    assert element(data.text, "0010,0010") == "王^小明"


def test_latin1_names_render_in_iso_ir_100(app, create_request, create_patient):
    patient = create_patient(family_name="Müller", given_name="Jürgen")
    data = build_file(create_request(patient, submit=True), template("ISO_IR 100", "latin-1"))
    assert element(data.text, "0008,0005") == "ISO_IR 100"
    assert "Müller^Jürgen".encode("latin-1") in data.data
    assert "Müller".encode() not in data.data


# -- refusal, fallback, warnings ------------------------------------------------

def test_the_refusal_names_every_character_and_the_elements_that_hold_them(app, create_request, create_patient,
                                                                           make_user):
    from ghimaging.worklists import UnencodableError

    polish = make_user("lz", "physician", full_name="Łucja Żak")
    req = create_request(create_patient(family_name="Şahin", given_name="Ayşe"), physician=polish)
    with pytest.raises(UnencodableError) as err:
        build_file(req, template("ISO_IR 100", "latin-1", name="old-ct"))
    exc = err.value
    assert exc.characters == ["Ż", "Ł", "Ş", "ş"]  # in the order of the text
    assert exc.template == "old-ct" and exc.charset == "ISO_IR 100"
    assert set(exc.elements) == {"ReferringPhysicianName", "PatientName", "RequestingPhysician"}
    assert "‘Ş’ (U+015E)" in str(exc) and "‘old-ct’" in str(exc) and "fall back to ISO_IR 192" in str(exc)


def test_the_fallback_writes_iso_ir_192_and_says_so(app, create_request, create_patient):
    req = create_request(create_patient(family_name="Иванов", given_name="Иван"))
    tpl = template("ISO_IR 100", "latin-1")
    tpl.utf8_fallback = True
    data = build_file(req, tpl)
    assert data.fallback and data.charset == "ISO_IR 192"
    assert element(data.text, "0008,0005") == "ISO_IR 192"
    assert "Иванов^Иван".encode() in data.data
    assert data.warnings[0].startswith("Written in ISO_IR 192 (UTF-8), not ISO_IR 100")
    # A name that fits keeps the template's own character set.
    plain = build_file(create_request(create_patient(family_name="Müller")), tpl)
    assert not plain.fallback and plain.charset == "ISO_IR 100" and plain.warnings == []


def test_no_fallback_when_the_template_writes_its_character_set_as_fixed_text(app, create_request, create_patient):
    from ghimaging.worklists import UnencodableError

    tpl = template("ISO_IR 100", "latin-1", body="(0008,0005) CS [ISO_IR 100]\n(0010,0010) PN [${PatientName}]\n")
    tpl.utf8_fallback = True
    with pytest.raises(UnencodableError, match="fixed text"):
        build_file(create_request(create_patient(family_name="Иванов")), tpl)


def test_ascii_means_ascii_and_comments_never_count(app, create_request, create_patient):
    from ghimaging.worklists import UnencodableError

    req = create_request(create_patient(family_name="Müller"))
    with pytest.raises(UnencodableError, match="ü"):
        build_file(req, template("ISO_IR 6", "iso8859"))  # pydicom's codec for ISO_IR 6 would take ü
    commented = "# Модальность: рентген\n" + general_body()
    plain = create_request(create_patient(family_name="Meyer"))
    assert build_file(plain, template("ISO_IR 100", "latin-1", body=commented)).charset == "ISO_IR 100"


def test_the_procedure_code_is_the_tests_code_in_the_local_scheme(app, create_request):
    data = build_file(create_request())
    ds = dicomfile.parse(data.text).dataset
    for seq in (ds.RequestedProcedureCodeSequence, ds.ScheduledProcedureStepSequence[0].ScheduledProtocolCodeSequence):
        assert (seq[0].CodeValue, seq[0].CodingSchemeDesignator, seq[0].CodeMeaning) == (
            "XR-CHEST", variables.CODING_SCHEME, "Chest X-ray PA")


def test_only_cut_values_the_template_writes_are_warned_about(app, catalog, create_request, create_patient):
    long_family = "X" * 70
    req = create_request(create_patient(family_name=long_family))
    assert [w for w in build_file(req).warnings if w.startswith("PatientName is cut to 64")]
    quiet = template(body="(0008,0005) CS [${SpecificCharacterSet}]\n(0010,0020) LO [${PatientID}]\n")
    assert build_file(req, quiet).warnings == []
