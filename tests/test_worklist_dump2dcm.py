"""ghimaging's dump2dcm text -> DICOM conversion (pydicom, no dcmtk at run
time) against dcmtk's own ``dump2dcm`` on the same text, element by element:
tag, VR, value bytes and sequence structure. Only the UIDs each tool makes
up (MediaStorageSOPInstanceUID, ImplementationClassUID/VersionName) and
group lengths are ignored."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from datetime import date, datetime
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element

from ghimaging.worklists import build_file, templates
from ghimaging.worklists.dicomfile import MWL_FIND, DumpError, parse, to_bytes

DUMP2DCM = shutil.which("dump2dcm")
@pytest.fixture(autouse=True)
def _requires_dump2dcm():
    """Missing parts fail, never skip: the test command installs them."""
    if DUMP2DCM is None:
        pytest.fail("dcmtk's dump2dcm is missing: `bash deploy/test.sh` installs Debian's dcmtk")

# What dump2dcm writes as MediaStorageSOPClassUID when the text has none
# (DCMTK's private "unknown" class); ghimaging writes the MWL FIND class, as
# issue 4 asks, so that value is compared separately.
DCMTK_DEFAULT_SOP_CLASS = "1.2.276.0.7230010.3.1.0.1"
IGNORED_META = {0x00020000, 0x00020003, 0x00020012, 0x00020013}


def dcmtk(text: str, encoding: str, tmp_path: Path) -> bytes:
    src, out = tmp_path / "in.txt", tmp_path / "out.dcm"
    src.write_bytes(text.encode(encoding))
    proc = subprocess.run([DUMP2DCM, str(src), str(out)], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


def _value_bytes(ds: Dataset, tag) -> bytes:
    """The element's value as stored in the file. pydicom reads lazily; the
    few elements it has already decoded are encoded back the same way."""
    raw = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        return raw.value or b""
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_data_element(fp, raw, ds._character_set)
    header = 12 if raw.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UC", "UR", "UT", "UN", "SV", "UV") else 8
    return fp.getvalue()[header:]


def canon(ds: Dataset) -> list:
    """[(tag, VR, value bytes | [items])] without group lengths."""
    out = []
    for tag in sorted(ds.keys()):
        if tag.element == 0x0000:
            continue
        vr = ds.get_item(tag).VR
        if vr == "SQ":
            out.append((f"{tag}", "SQ", [canon(item) for item in ds[tag].value]))
        else:
            out.append((f"{tag}", vr, _value_bytes(ds, tag)))
    return out


def meta(ds: Dataset) -> list:
    return [(f"{el.tag}", el.VR, el.value) for el in ds.file_meta if el.tag not in IGNORED_META]


def assert_equivalent(ours: bytes, theirs: bytes, *, sop_class_in_text: bool = False) -> Dataset:
    a = pydicom.dcmread(io.BytesIO(ours))
    b = pydicom.dcmread(io.BytesIO(theirs))
    assert ours[128:132] == theirs[128:132] == b"DICM"
    assert ours[:128] == b"\0" * 128
    assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    if sop_class_in_text:
        assert meta(a) == meta(b)
    else:
        assert a.file_meta.MediaStorageSOPClassUID == MWL_FIND
        assert b.file_meta.MediaStorageSOPClassUID == DCMTK_DEFAULT_SOP_CLASS
        def strip(rows: list) -> list:
            return [r for r in rows if r[0] != "(0002,0002)"]

        assert strip(meta(a)) == strip(meta(b))
    assert canon(a) == canon(b)
    return a


def compare(text: str, encoding: str, tmp_path: Path, **kw) -> Dataset:
    return assert_equivalent(to_bytes(text), dcmtk(text, encoding, tmp_path), **kw)


# -- every shipped template, rendered for a real request ---------------------

SHIPPED = [e["name"] for e in templates.shipped()]


@pytest.fixture
def real_request(create_request, create_patient, make_user):
    doc = make_user("doc", "physician", full_name="Grégoire Lefèvre")
    patient = create_patient(puid="PUID-ÄÖ-1", family_name="Müller", given_name="Jürgen Öle",
                             birth_date=date(1950, 2, 28), sex="M")
    return create_request(patient, physician=doc, submit=True, urgent=True,
                          scheduled_at=datetime(2025, 11, 3, 7, 45), comment="Knee [left]")


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_template_converts_like_dump2dcm(app, real_request, tmp_path, name):
    templates.load_shipped()
    tpl = next(t for t in templates.all_templates() if t.name == name)
    data = build_file(real_request, tpl)
    ds = assert_equivalent(data.data, dcmtk(data.text, tpl.encoding, tmp_path))
    assert ds.AccessionNumber == real_request.accession_number
    assert ds.StudyInstanceUID == real_request.study_instance_uid
    assert str(ds.PatientName) == "Müller^Jürgen Öle"
    assert ds.ScheduledProcedureStepSequence[0].Modality == "CR"


def test_the_shipped_list_is_what_the_folder_holds():
    folder = Path(__file__).resolve().parent.parent / "worklist_templates"
    files = {e["file"] for e in json.loads((folder / "index.json").read_text())["templates"]}
    assert files == {p.name for p in folder.glob("*.txt")}
    assert {"general", "latin1", "gnuhealth-legacy"} <= set(SHIPPED)


# -- edge cases --------------------------------------------------------------

EMPTY_VALUES = """\
(0008,0005) CS [ISO_IR 192]
(0008,0050) SH []
(0010,0010) PN []
(0010,1030) DS []
(0010,21c0) US []
(0020,000d) UI []
(0032,1060) LO (no value available)
(0040,1003) SH
"""

NESTED = """\
(0008,0005) CS [ISO_IR 192]
(0040,0100) SQ
(fffe,e000) -
(0008,0060) CS [CT]
(0040,0008) SQ
(fffe,e000) -
(0008,0100) SH [P1]
(0008,0102) SH [LOCAL]
(0008,0104) LO [Head without contrast]
(fffe,e00d) -
(fffe,e000) -
(0008,0100) SH [P2]
(fffe,e00d) -
(fffe,e0dd) -
(0040,0020) CS [SCHEDULED]
(fffe,e00d) -
(fffe,e000) -
(0008,0060) CS [MR]
(fffe,e00d) -
(fffe,e0dd) -
(0040,1001) SH [RP1]
(0032,1064) SQ
(fffe,e0dd) -
"""

MULTI_AND_NUMBERS = """\
(0008,0005) CS [ISO_IR 192]
(0008,0061) CS [CT\\MR\\US]
(0008,1030) LO [one\\two]
(0010,1000) LO [A\\B\\C]
(0010,1010) AS [045Y]
(0010,1020) DS [1.75]
(0010,1030) DS [72.5\\73]
(0020,0013) IS [12]
(0028,0010) US 512
(0028,0011) US [256]
(0028,0034) IS [1\\1]
(0010,21c0) US [4]
(0018,1164) DS [0.1\\0.2]
"""

COMMENTS_AND_SPACING = """\
# Dicom-File-Format
# a comment line

   (0008,0005)   CS   [ISO_IR 192]      # 10, 1 SpecificCharacterSet
(0008,0050) SH [A 1 ]   # trailing comment
(0010,0010) PN [Doe^Jane]
(0010,0020) LO [  leading spaces]
"""


@pytest.mark.parametrize("text", [EMPTY_VALUES, NESTED, MULTI_AND_NUMBERS, COMMENTS_AND_SPACING],
                         ids=["empty-values", "nested-sequences", "multi-valued-and-numbers", "comments-spacing"])
def test_edge_cases_convert_like_dump2dcm(tmp_path, text):
    compare(text, "utf-8", tmp_path)


def test_nested_sequences_keep_their_structure(tmp_path):
    ds = compare(NESTED, "utf-8", tmp_path)
    steps = ds.ScheduledProcedureStepSequence
    assert len(steps) == 2 and [s.Modality for s in steps] == ["CT", "MR"]
    assert [c.CodeValue for c in steps[0].ScheduledProtocolCodeSequence] == ["P1", "P2"]
    assert len(ds.RequestedProcedureCodeSequence) == 0


def test_file_meta_given_in_the_text_is_kept(tmp_path):
    text = f"(0002,0002) UI [{MWL_FIND}]\n(0008,0005) CS [ISO_IR 192]\n(0010,0010) PN [Doe^Jane]\n"
    compare(text, "utf-8", tmp_path, sop_class_in_text=True)


NAMES = {
    "ISO_IR 192": ("utf-8", "Müller^Jürgen=王^小明", "Ünïcödé ✓ 東京"),
    "ISO_IR 100": ("latin-1", "Müller^Jürgen", "Çà et là, Ørsted"),
    "GB18030": ("gb18030", "王^小明", "北京市 放射科"),
    "ISO_IR 101": ("iso8859-2", "Dvořák^Łukasz", "Žluťoučký kůň"),
}


@pytest.mark.parametrize("charset", list(NAMES))
def test_non_ascii_values_convert_like_dump2dcm(tmp_path, charset):
    encoding, name, words = NAMES[charset]
    text = (f"(0008,0005) CS [{charset}]\n(0008,0080) LO [{words}]\n(0010,0010) PN [{name}]\n"
            f"(0040,0100) SQ\n(fffe,e000) -\n(0040,0007) LO [{words}]\n(fffe,e00d) -\n(fffe,e0dd) -\n")
    ds = compare(text, encoding, tmp_path)
    assert str(ds.PatientName) == name
    assert ds.InstitutionName == words
    assert ds.ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription == words
    assert name.encode(encoding) in to_bytes(text)


def test_a_closing_bracket_inside_a_literal_value_reads_like_dump2dcm(tmp_path):
    """dump2dcm takes a bracketed value up to the last ']' on the line; a
    template may hold such a literal (values from the request never do)."""
    compare("(0008,0005) CS [ISO_IR 192]\n(0040,0007) LO [Knee [left] AP]\n", "utf-8", tmp_path)


def test_unbracketed_values_read_like_dump2dcm(tmp_path):
    """Without brackets dump2dcm takes the rest of the line up to '#'."""
    compare("(0008,0005) CS [ISO_IR 192]\n(0028,0010) US 512 # rows\n(0008,0050) SH  A1  \n"
            "(0008,0060) CS CR CT # two words\n", "utf-8", tmp_path)


# -- parse errors ------------------------------------------------------------

@pytest.mark.parametrize("text, line", [
    ("(0008,0005) CS [ISO_IR 192]\n(0010,0010) PN [Doe^Jane\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n\n# c\nthis is not an element\n", 4),
    ("(0008,0005) CS [ISO_IR 192]\n(0010,0010) [Doe]\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n(fffe,e000) -\n", 2),
    ("(0040,0100) SQ\n(0008,0060) CS [CR]\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n(fffe,e00d) -\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n(fffe,e0dd) -\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n(0028,0010) US [five]\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n(7fe0,0010) OB [zz]\n", 2),
    ("(0008,0005) CS [ISO_IR 192]\n(0010,001) PN [x]\n", 2),
], ids=["unclosed-bracket", "not-an-element", "no-vr", "item-outside-sequence", "element-in-sequence",
        "item-end-without-item", "sequence-end-without-sequence", "number-expected", "hex-expected", "short-tag"])
def test_parse_errors_name_their_line(text, line):
    with pytest.raises(DumpError) as err:
        parse(text)
    assert err.value.line == line
    assert str(err.value).startswith(f"line {line}: ")
