"""The catalogue of modality types and imaging tests, for the pages, the
API and ``ghimaging init``. Nothing here commits: the caller does, once."""

from __future__ import annotations

import re

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..exceptions import Conflict, Invalid
from ..extensions import db
from ..models import ImagingTest, ModalityType

SEED_MODALITIES = {
    "CR": "Computed Radiography",
    "CT": "Computed Tomography",
    "DX": "Digital Radiography",
    "MG": "Mammography",
    "MR": "Magnetic Resonance",
    "NM": "Nuclear Medicine",
    "PT": "Positron Emission Tomography",
    "RF": "Radio Fluoroscopy",
    "US": "Ultrasound",
    "XA": "X-Ray Angiography",
}

# DICOM CS: upper-case letters, digits, space and underscore, 16 characters.
CODE_RE = re.compile(r"^[A-Z0-9_ ]{1,16}$")
# DICOM AE: 16 characters, no backslash or control characters; no leading or
# trailing spaces are significant, so we refuse them to avoid confusion.
AE_RE = re.compile(r"^[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$")


class CatalogError(Invalid):
    """A catalogue change that cannot be made; the message is safe to show,
    ``field`` the form field it belongs to."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, fields={field or "code": message})
        self.field = field


class DuplicateCode(CatalogError, Conflict):
    """A code another modality type or test has (HTTP 409)."""

    code = "conflict"


def seed() -> int:
    """Add the standard modality types that are missing; returns how many."""
    have = set(db.session.scalars(select(ModalityType.code)))
    added = 0
    for code, name in SEED_MODALITIES.items():
        if code not in have:
            db.session.add(ModalityType(code=code, name=name))
            added += 1
    db.session.flush()
    return added


def modality_by_code(code: str) -> ModalityType | None:
    return db.session.scalar(select(ModalityType).where(ModalityType.code == code.strip().upper()))


def test_by_code(code: str) -> ImagingTest | None:
    from ..querytools import find_casefolded

    return find_casefolded(ImagingTest, ImagingTest.code, code)


def save_modality(mt: ModalityType | None, code: str, name: str) -> ModalityType:
    code = code.strip().upper()
    if not CODE_RE.match(code):
        raise CatalogError(_("The code is a DICOM Modality: up to 16 capitals, digits or underscores."), "code")
    other = modality_by_code(code)
    if other is not None and other is not mt:
        raise DuplicateCode(_("Modality type %(code)s already exists.", code=code), "code")
    if mt is None:
        mt = ModalityType(code=code, name=name.strip())
        db.session.add(mt)
    else:
        mt.code, mt.name = code, name.strip()
    db.session.flush()
    return mt


def save_test(test: ImagingTest | None, *, code: str, name: str, modality: ModalityType,
              ae_title: str = "", worklist_template: str = "", active: bool = True) -> ImagingTest:
    code = code.strip()
    ae_title = ae_title.strip()
    if not code or len(code) > 32:
        raise CatalogError(_("The code must be 1-32 characters."), "code")
    if not name.strip() or len(name.strip()) > 200:
        raise CatalogError(_("The name is required (at most %(max)d characters).", max=200), "name")
    if any(ord(c) < 32 and c not in "\t" for c in name):
        raise CatalogError(_("The name must not contain line breaks or control characters."), "name")
    if not ae_title:
        # ScheduledStationAETitle is a Type 1 worklist key: a modality asks
        # for the items of its own AE title, and an item without one is
        # found by no modality that filters (PS3.4 Table K.6-1).
        raise CatalogError(_("The scheduled station AE title is required: it is the AE title of the modality "
                             "that performs this test, and the worklist needs it to offer the test to that "
                             "modality."), "ae_title")
    if not AE_RE.match(ae_title):
        raise CatalogError(_("An AE title is 1-16 printable ASCII characters without backslash."), "ae_title")
    other = test_by_code(code)
    if other is not None and other is not test:
        raise DuplicateCode(_("A test with code %(code)s already exists.", code=code), "code")
    worklist_template = (worklist_template or "").strip()
    if worklist_template and (test is None or worklist_template != test.worklist_template):
        from ..models import WorklistTemplate

        if db.session.scalar(select(WorklistTemplate.id).where(WorklistTemplate.name == worklist_template)) is None:
            raise CatalogError(_("There is no worklist template named '%(name)s'.", name=worklist_template), "worklist_template")
    if test is None:
        test = ImagingTest(code=code)
        db.session.add(test)
    test.code = code
    test.name = name.strip()
    test.modality = modality
    test.ae_title = ae_title
    test.worklist_template = worklist_template.strip()
    test.active = active
    try:
        db.session.flush()
    except IntegrityError:
        # The unique index saw a code the lookup above missed (on SQLite,
        # lower() folds only ASCII: 'CT-Ä' twice), or a simultaneous insert.
        db.session.rollback()
        raise DuplicateCode(_("A test with code %(code)s already exists.", code=code), "code") from None
    from ..imaging.workflow import announce_waiting
    from ..models import ImagingRequest

    announce_waiting(ImagingRequest.test_id == test.id)  # station, modality or template may have changed
    return test


def active_tests() -> list[ImagingTest]:
    return list(db.session.scalars(
        select(ImagingTest).join(ImagingTest.modality).where(ImagingTest.active.is_(True))
        .order_by(ModalityType.code, ImagingTest.name)
    ))


def all_modalities() -> list[ModalityType]:
    return list(db.session.scalars(select(ModalityType).order_by(ModalityType.code)))
