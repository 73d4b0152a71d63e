"""Test data made through the real services (``create_x`` factories, as
Indico's tests have them), so a test's data obeys the same rules as the
clinic's. Each factory flushes and commits: a test is its own transaction
boundary, and pages or API calls made next by the test client see the data.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from itertools import count
from typing import Any

from ghimaging.extensions import db

PASSWORD = "s3cret-Passw0rd"


def make_user(username: str, *roles: str, password: str = PASSWORD, full_name: str = "") -> Any:
    """A user with ``roles`` (names: "admin", "physician", ...)."""
    from ghimaging.auth.service import create_user
    from ghimaging.models import Role

    user = create_user(username, password, [Role(r) for r in roles], full_name=full_name or username.title())
    db.session.commit()
    return user


def seed_catalog() -> dict[str, Any]:
    """The seeded modality types and two tests: "chest" (CR, XRAY1) and
    "abd" (US, US1)."""
    from ghimaging.catalog.service import modality_by_code, save_test, seed

    seed()
    chest = save_test(None, code="XR-CHEST", name="Chest X-ray PA", modality=modality_by_code("CR"), ae_title="XRAY1")
    abd = save_test(None, code="US-ABD", name="Abdominal ultrasound", modality=modality_by_code("US"), ae_title="US1")
    db.session.commit()
    return {"chest": chest, "abd": abd}


class PatientFactory:
    """``factory(**fields)``: a patient with the next PUID (PUID0001, ...)."""

    def __init__(self) -> None:
        self._numbers: Iterator[int] = count(1)

    def __call__(self, **fields: Any) -> Any:
        from ghimaging.patients.service import create_patient

        n = next(self._numbers)
        data: dict[str, Any] = {"puid": f"PUID{n:04d}", "family_name": f"Family{n}", "given_name": "Given",
                                "birth_date": date(1980, 1, n % 28 + 1), "sex": "F"}
        data.update(fields)
        patient = create_patient(data)
        db.session.commit()
        return patient


def create_request(patient: Any, test: Any, *, submit: bool = False, user: Any = None, **kw: Any) -> Any:
    """One request of ``test`` for ``patient`` (submitted when ``submit``)."""
    from ghimaging.imaging import workflow

    req = workflow.create_order(patient, [test], user=user, submit=submit, **kw)[0]
    db.session.commit()
    return req


def png_bytes(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30),
              fmt: str = "PNG") -> io.BytesIO:
    """A small image file as an upload would carry it."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    buf.seek(0)
    return buf
