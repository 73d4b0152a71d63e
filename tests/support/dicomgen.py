"""Build real DICOM files with pydicom, for uploading to a test Orthanc.

Each instance carries a small 16-bit MONOCHROME2 image (a gradient with a
bright square) so Orthanc's ``/instances/{id}/preview`` can render it. No
numpy is needed: the pixel data is packed with :mod:`array`.

Text is encoded at write time with the dataset's SpecificCharacterSet. When
``charset`` is not given and any text value is outside ASCII, ``ISO_IR 192``
(UTF-8) is declared, so ``make_instance("P1", "Müller^Jürgen")`` just works.
"""

from __future__ import annotations

import io
import random
import sys
from array import array
from collections.abc import Iterator
from datetime import date, timedelta
from functools import lru_cache
from os import PathLike
from typing import Any

from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)

CR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")

_TEXT_KEYWORDS = (
    "PatientName", "PatientID", "AccessionNumber", "StudyDescription", "InstitutionName",
    "ReferringPhysicianName", "SeriesDescription",
)

_FAMILY = ("SMITH", "GARCIA", "NGUYEN", "DUBOIS", "ROSSI", "KOWALSKI", "OKAFOR", "TANAKA",
           "SILVA", "JOHANSSON", "MUELLER", "HASSAN", "PETROV", "MURPHY", "KIM", "LOPEZ")
_GIVEN = ("ANNA", "JOHN", "MARIA", "LUIS", "AMINA", "PIERRE", "YUKI", "OLGA", "DAVID",
          "FATIMA", "ERIK", "GRACE", "IVAN", "LIN", "SARA", "TOMAS")
_MODALITIES = ("CR", "CT", "MR", "US", "DX")
_DESCRIPTIONS = {
    "CR": ("CHEST PA", "KNEE AP", "HAND 2 VIEWS"),
    "CT": ("CT HEAD", "CT ABDOMEN", "CT CHEST"),
    "MR": ("MR BRAIN", "MR LUMBAR SPINE", "MR KNEE"),
    "US": ("US ABDOMEN", "US THYROID", "US PELVIS"),
    "DX": ("DX CHEST", "DX PELVIS", "DX FOOT"),
}


@lru_cache(maxsize=64)
def _pixels(rows: int, cols: int, seed: int) -> bytes:
    """A 12-bit gradient with a bright square whose place depends on ``seed``."""
    px = array("H", bytes(2 * rows * cols))
    sq = max(1, min(rows, cols) // 4)
    top, left = seed % max(1, rows - sq), (seed * 7) % max(1, cols - sq)
    for r in range(rows):
        base = r * cols
        for c in range(cols):
            value = ((r + c) * 4095) // max(1, rows + cols - 2)
            if top <= r < top + sq and left <= c < left + sq:
                value = 4095
            px[base + c] = value
    if sys.byteorder == "big":
        px.byteswap()
    return px.tobytes()


def _needs_unicode(values: list[Any]) -> bool:
    return any(isinstance(v, str) and not v.isascii() for v in values)


def make_instance(
    patient_id: str,
    patient_name: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    accession: str = "",
    modality: str = "CR",
    study_date: str = "20261123",
    study_description: str = "",
    institution: str = "",
    referring: str = "",
    series_number: int = 1,
    instance_number: int = 1,
    rows: int = 64,
    cols: int = 64,
    charset: str | None = None,
    extra: dict[str, Any] | None = None,
    *,
    study_time: str = "101500",
    patient_birth_date: str = "",
    patient_sex: str = "",
    series_description: str = "",
) -> Dataset:
    """One image instance with proper file meta (explicit VR little endian).

    ``modality`` CR gives CR Image Storage; anything else gives Secondary
    Capture with that Modality. ``extra`` maps DICOM keywords to values set
    last (``None`` removes the element). ``charset`` is the
    SpecificCharacterSet to declare (None: ``ISO_IR 192`` if any text is
    non-ASCII, else none).
    """
    sop_class = CR_IMAGE_STORAGE if modality == "CR" else SecondaryCaptureImageStorage
    sop_uid = sop_uid or generate_uid()

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    extra = dict(extra or {})
    texts = [patient_id, patient_name, accession, study_description, institution, referring,
             series_description, *extra.values()]
    if charset is None and _needs_unicode(texts):
        charset = "ISO_IR 192"
    if charset:
        ds.SpecificCharacterSet = charset

    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyDate = study_date
    ds.SeriesDate = study_date
    ds.ContentDate = study_date
    ds.StudyTime = study_time
    ds.SeriesTime = study_time
    ds.ContentTime = study_time
    ds.AccessionNumber = accession
    ds.Modality = modality
    if sop_class == SecondaryCaptureImageStorage:
        ds.ConversionType = "WSD"
    ds.InstitutionName = institution
    ds.ReferringPhysicianName = referring
    ds.StudyDescription = study_description
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = 2048
    ds.WindowWidth = 4096
    ds.PixelData = _pixels(rows, cols, (instance_number + series_number) % 16)
    ds["PixelData"].VR = "OW"

    for keyword, value in extra.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """The DICOM Part 10 file (preamble, DICM, file meta) as bytes."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def write(ds: Dataset, path: str | PathLike) -> None:
    dcmwrite(path, ds, enforce_file_format=True)


def generate_studies(
    n_patients: int,
    studies_per_patient: int,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    seed: int = 0,
    **kwargs: Any,
) -> Iterator[Dataset]:
    """Yield instances patient by patient, study by study, deterministically.

    The same arguments give the same UIDs, names and dates every time;
    different seeds give disjoint patients and UIDs. PatientID is
    ``G{seed}-{p:05d}`` and AccessionNumber ``A{seed}-{p:05d}-{s:02d}``
    (p, s counted from 0). ``kwargs`` go to :func:`make_instance` (for
    example ``rows=16, cols=16`` for smaller files).
    """
    rng = random.Random(seed)
    base = date(2026, 1, 1)
    for p in range(n_patients):
        patient_id = f"G{seed}-{p:05d}"
        name = f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}"
        birth = (date(1940, 1, 1) + timedelta(days=rng.randrange(30000))).strftime("%Y%m%d")
        sex = rng.choice("MF")
        for s in range(studies_per_patient):
            modality = rng.choice(_MODALITIES)
            description = rng.choice(_DESCRIPTIONS[modality])
            study_date = (base + timedelta(days=rng.randrange(365))).strftime("%Y%m%d")
            study_time = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}00"
            key = f"{seed}/{p}/{s}"
            study_uid = generate_uid(entropy_srcs=["ghimaging-gen", key])
            for se in range(series_per_study):
                series_uid = generate_uid(entropy_srcs=["ghimaging-gen", key, str(se)])
                for i in range(instances_per_series):
                    sop_uid = generate_uid(entropy_srcs=["ghimaging-gen", key, str(se), str(i)])
                    options = {
                        "accession": f"A{seed}-{p:05d}-{s:02d}",
                        "modality": modality,
                        "study_date": study_date,
                        "study_description": description,
                        "institution": "GHIMAGING TEST CLINIC",
                        "referring": "HOUSE^GREGORY",
                        "series_number": se + 1,
                        "instance_number": i + 1,
                        "study_time": study_time,
                        "patient_birth_date": birth,
                        "patient_sex": sex,
                        "series_description": f"{description} S{se + 1}",
                        **kwargs,
                    }
                    yield make_instance(patient_id, name, study_uid, series_uid, sop_uid, **options)


# -- instances that are hard to show --------------------------------------------------------

ENCAPSULATED_PDF_STORAGE = UID("1.2.840.10008.5.1.4.1.1.104.1")
BASIC_TEXT_SR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.88.11")


def make_unwindowed(patient_id: str, patient_name: str, study_uid: str | None = None, **kw: Any) -> Dataset:
    """An image with no stored window whose values (0-4095) use a sixteenth
    of its 16 stored bits. Orthanc 1.10.1's ``/rendered`` maps the whole
    16-bit range for it and gives an (almost) black picture; a preview with
    a computed window shows the gradient and the square."""
    extra = {"BitsStored": 16, "HighBit": 15, "WindowCenter": None, "WindowWidth": None, **kw.pop("extra", {})}
    return make_instance(patient_id, patient_name, study_uid, extra=extra, **kw)


def from_testdata(name: str, patient_id: str, patient_name: str, study_uid: str | None = None, *,
                  accession: str = "", study_date: str = "20261123", series_number: int = 1) -> Dataset:
    """One of pydicom's bundled files (``"JPEG2000.dcm"``, ``"MR_small_jp2klossless.dcm"``…)
    moved to the given patient and study with new series and SOP UIDs; the
    pixel data (compressed or not) is left exactly as it is."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        raise FileNotFoundError(f"pydicom does not bundle {name}")
    ds = dcmread(path, force=True)  # some (rtstruct.dcm) lack the Part 10 header
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    sop_uid = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    if _needs_unicode([patient_id, patient_name, accession]):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.AccessionNumber = accession
    ds.StudyDate = study_date
    ds.SeriesNumber = series_number
    return ds


def minimal_pdf(text: str = "ghimaging test document") -> bytes:
    """A one-page PDF that shows ``text`` (ASCII), with a correct xref table,
    so PDF readers and ``pdftotext`` accept it."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 18 Tf 72 720 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _non_image(sop_class: UID, patient_id: str, patient_name: str, study_uid: str | None, modality: str,
               accession: str, study_date: str, series_number: int, series_description: str) -> Dataset:
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    if _needs_unicode([patient_id, patient_name, accession, series_description]):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.ReferringPhysicianName = ""
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = 1
    ds.Manufacturer = "ghimaging tests"
    return ds


def make_pdf_instance(patient_id: str, patient_name: str, study_uid: str | None = None, *,
                      pdf: bytes | None = None, modality: str = "DOC", accession: str = "",
                      study_date: str = "20261123", series_number: int = 90,
                      series_description: str = "REQUEST FORM") -> Dataset:
    """An Encapsulated PDF instance (PS3.3 A.45.1); ``modality`` "OT" gives
    the kind a scanner files without saying "DOC"."""
    ds = _non_image(ENCAPSULATED_PDF_STORAGE, patient_id, patient_name, study_uid, modality, accession,
                    study_date, series_number, series_description)
    data = pdf if pdf is not None else minimal_pdf()
    ds.ConversionType = "SD"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = series_description
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = data + (b"\0" if len(data) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(data)
    return ds


def make_sr_instance(patient_id: str, patient_name: str, study_uid: str | None = None, *,
                     text: str = "No acute findings.", accession: str = "", study_date: str = "20261123",
                     series_number: int = 91, series_description: str = "DOSE REPORT") -> Dataset:
    """A Basic Text SR with one TEXT item (what a modality's dose or
    measurement report looks like to a PACS: no pixel data at all)."""
    ds = _non_image(BASIC_TEXT_SR_STORAGE, patient_id, patient_name, study_uid, "SR", accession,
                    study_date, series_number, series_description)
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "121070", "DCM", "Findings"
    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = [code]
    item.TextValue = text
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = "18748-4", "LN", "Diagnostic Imaging Report"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.ConceptNameCodeSequence = [title]
    ds.ContentSequence = [item]
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    return ds
