"""Clinic settings stored in the database and edited by admins; the caller
commits."""

from __future__ import annotations

from sqlalchemy import select

from ..exceptions import Invalid
from ..extensions import db
from ..models import Setting


class SettingsError(Invalid):
    """A value that cannot be stored (its field and why)."""


CLINIC_KEYS = {
    "clinic_name": ("Clinic name", 200, "Radiology"),
    "clinic_address": ("Address", 1000, ""),
    "clinic_phone": ("Phone", 100, ""),
    "report_footer": ("Report footer", 1000, ""),
}


def clinic_settings() -> dict[str, str]:
    stored = dict(db.session.execute(select(Setting.key, Setting.value)).all())
    return {k: stored.get(k, default) for k, (_, _, default) in CLINIC_KEYS.items()}


def save_clinic_settings(values: dict[str, str]) -> None:
    for key, (label, limit, _) in CLINIC_KEYS.items():
        if key not in values:
            continue
        value = (values[key] or "").strip()
        if len(value) > limit:
            raise SettingsError({key: f"{label}: at most {limit} characters."})
        row = db.session.get(Setting, key)
        if row is None:
            db.session.add(Setting(key=key, value=value))
        else:
            row.value = value
    db.session.flush()
