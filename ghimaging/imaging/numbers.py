"""Accession numbers, order numbers, PUIDs (for a clinic that allocates
them itself) and StudyInstanceUIDs."""

from __future__ import annotations

import uuid

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import exists, or_, select

from ..exceptions import Conflict
from ..extensions import db
from ..models import Counter
from ..querytools import insert_for_upsert

ACCESSION_MAX = 16  # DICOM SH
UID_MAX = 64  # DICOM UI


def next_value(name: str) -> int:
    """The next value of a named counter, inside the caller's transaction.

    One INSERT ... ON CONFLICT DO UPDATE ... RETURNING: it takes the row lock
    on PostgreSQL and the write lock on SQLite, so two requests created at
    once (even the very first two) never get the same number; a rollback
    gives the number back.
    """
    stmt = insert_for_upsert(Counter).values(name=name, value=1)
    stmt = stmt.on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + 1})
    return int(db.session.execute(stmt.returning(Counter.value)).scalar_one())


def new_accession_number() -> str:
    prefix = current_app.config["ACCESSION_PREFIX"]
    n = next_value("accession")
    width = max(1, min(8, ACCESSION_MAX - len(prefix)))
    text = f"{prefix}{n:0{width}d}"
    if len(text) > ACCESSION_MAX:
        # A Conflict, not a crash: the person saving the order reads why.
        raise Conflict(_("Accession numbers are exhausted for this prefix; choose a shorter prefix."),
                       code="accession_numbers_exhausted")
    return text


def new_order_number() -> str:
    return f"{current_app.config['ORDER_PREFIX']}{next_value('order'):06d}"


PUID_MAX = 64  # DICOM LO: the PUID is the PatientID
#: A PUID pattern's counter: one run of ``#``, each a digit (zero-padded).
PUID_DIGIT = "#"


def puid_pattern_problem(pattern: str) -> str:
    """Why ``pattern`` cannot make PUIDs ("" when it can): exactly one run
    of 1 to 12 ``#`` for the counter (P-###### gives P-000001), the rest
    printable, without spaces or backslash, and room left under 64
    characters for the counter to grow."""
    digits = pattern.count(PUID_DIGIT)
    if digits == 0 or PUID_DIGIT * digits not in pattern:
        return str(_("The pattern needs one run of # for the number, such as P-######."))
    if digits > 12:
        return str(_("At most 12 # in the pattern."))
    if any(c == "\\" or c == "^" or c == "=" or ord(c) < 32 or c.isspace() for c in pattern):
        return str(_("The pattern may not hold spaces, \\, ^ or =."))
    if len(pattern) > PUID_MAX - 4:
        return str(_("The pattern is at most %(n)d characters.", n=PUID_MAX - 4))
    return ""


def format_puid(pattern: str, n: int) -> str:
    """The PUID of counter value ``n`` (the counter outgrows its ``#``)."""
    digits = pattern.count(PUID_DIGIT)
    return pattern.replace(PUID_DIGIT * digits, f"{n:0{digits}d}", 1)


def new_puid(pattern: str) -> str:
    """The next PUID of the clinic's pattern, inside the caller's
    transaction (the counter is :func:`next_value`'s, so two patients
    registered at once never get the same one, and a rollback gives the
    number back). A PUID already taken (typed by hand or imported before
    allocation was turned on) is skipped, and so is one that was another
    patient's before an administrator changed it, or that images mirrored
    from Orthanc carry as PatientID (a walk-in's, typed at the modality):
    the new patient would take those images over."""
    from ..models import OrthancPatient, OrthancStudy, Patient
    from ..models.patients import PuidChange

    for _attempt in range(10_000):
        text = format_puid(pattern, next_value("puid"))
        if len(text) > PUID_MAX:
            break
        used = or_(exists().where(Patient.puid == text),
                   exists().where(or_(PuidChange.old_puid == text, PuidChange.new_puid == text)),
                   exists().where(OrthancStudy.patient_id == text),
                   exists().where(OrthancPatient.patient_id == text))
        if not db.session.scalar(select(used)):
            return text
    raise Conflict(_("PUIDs are exhausted for this pattern; choose one with more # digits."), code="puids_exhausted")


def new_study_uid() -> str:
    """``2.25.<uuid as integer>`` (ISO/IEC 9834-8), or a UUID-derived suffix
    under the configured organisation root, cut to the 64-character limit."""
    root = current_app.config["ORG_ROOT"]
    value = uuid.uuid4().int
    if not root:
        return f"2.25.{value}"
    room = UID_MAX - len(root) - 1
    suffix = str(value % (10 ** room))
    return f"{root}.{suffix}"
