"""Clinic settings stored in the database and edited by admins; the caller
commits.

The letterhead (name, address, phone, logo), the report's footer and paper
size, and the clinic's locale: its time zone (every stored time is UTC and
shown in this zone, see ``clock.py``), its language (the print's, and the
UI's default) and its date format.
"""

from __future__ import annotations

import secrets
from io import BytesIO
from pathlib import Path

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from ..clock import DATE_FORMATS, DEFAULT_DATE_FORMAT, DEFAULT_ZONE
from ..exceptions import Invalid
from ..extensions import db
from ..models import Setting


class SettingsError(Invalid):
    """A value that cannot be stored (its field and why)."""


CLINIC_KEYS = {
    "clinic_name": (_l("Clinic name"), 200, "Radiology"),
    "clinic_address": (_l("Address"), 1000, ""),
    "clinic_phone": (_l("Phone"), 100, ""),
    "report_footer": (_l("Report footer"), 1000, ""),
}

LANGUAGES = {"en": "English", "es": "Español", "de": "Deutsch"}
PAPER_SIZES = {"A4": _l("A4 (210 × 297 mm)"), "Letter": _l("Letter (8.5 × 11 in)")}  # lazy: the form's choices

#: Locale keys and their defaults; each checked by :func:`_check_locale`.
LOCALE_KEYS = {"time_zone": DEFAULT_ZONE, "language": "en", "date_format": DEFAULT_DATE_FORMAT,
               "paper_size": "A4"}

#: PUID allocation for a clinic without an external register (off unless
#: ``puid_auto`` is "1"): the pattern's run of # is a counter
#: (``imaging.numbers.new_puid``).
PUID_KEYS = {"puid_auto": "", "puid_pattern": "P-######"}

LOGO_KEY = "logo_file"
LOGO_DIR = "logo"
LOGO_MAX_BYTES = 2 * 1024 * 1024
LOGO_MAX_PIXELS = 4000 * 4000  # a small file may still decode to a huge picture
LOGO_FORMATS = {"PNG": ".png", "JPEG": ".jpg"}


def _stored() -> dict[str, str]:
    return dict(db.session.execute(select(Setting.key, Setting.value)).all())


def clinic_settings() -> dict[str, str]:
    """The letterhead, footer and locale settings (defaults where unset)."""
    stored = _stored()
    out = {k: stored.get(k, default) for k, (_label, _limit, default) in CLINIC_KEYS.items()}
    out.update({k: stored.get(k) or default for k, default in LOCALE_KEYS.items()})
    out.update({k: stored.get(k) or default for k, default in PUID_KEYS.items()})
    return out


def puid_pattern() -> str | None:
    """The pattern new PUIDs are made from, or None when the clinic types
    them (from its register): the default."""
    rows = dict(db.session.execute(select(Setting.key, Setting.value).where(Setting.key.in_(PUID_KEYS))).all())
    if rows.get("puid_auto") != "1":
        return None
    return rows.get("puid_pattern") or PUID_KEYS["puid_pattern"]


def locale_settings() -> dict[str, str]:
    """Time zone, language, date format and paper size (one query)."""
    rows = dict(db.session.execute(select(Setting.key, Setting.value).where(
        Setting.key.in_(LOCALE_KEYS))).all())
    return {k: rows.get(k) or default for k, default in LOCALE_KEYS.items()}


def _put(key: str, value: str) -> None:
    row = db.session.get(Setting, key)
    if row is None:
        db.session.add(Setting(key=key, value=value))
    else:
        row.value = value


def _check_locale(key: str, value: str) -> str:
    """The value, or SettingsError naming the field."""
    if key == "time_zone":
        from zoneinfo import available_timezones

        if value not in available_timezones():
            raise SettingsError({key: _("Unknown time zone \u201c%(zone)s\u201d: choose one from the list, "
                                        "such as Europe/Berlin or America/La_Paz.", zone=value)})
    elif key == "language" and value not in LANGUAGES:
        raise SettingsError({key: _("Choose English, Spanish or German.")})
    elif key == "date_format" and value not in DATE_FORMATS:
        raise SettingsError({key: _("Choose one of the date formats offered.")})
    elif key == "paper_size" and value not in PAPER_SIZES:
        raise SettingsError({key: _("Choose A4 or Letter.")})
    return value


def save_clinic_settings(values: dict[str, str]) -> None:
    """Store the given keys (others stay); SettingsError for a bad value,
    before anything is changed. A new time zone rewrites the waiting
    worklist items in the same transaction: a modality reads their start
    time and offset in the clinic's zone."""
    checked: dict[str, str] = {}
    for key, (label, limit, _default) in CLINIC_KEYS.items():
        if key in values:
            value = (values[key] or "").strip()
            if len(value) > limit:
                raise SettingsError({key: _("%(label)s: at most %(n)d characters.", label=label, n=limit)})
            checked[key] = value
    for key in LOCALE_KEYS:
        if key in values:
            checked[key] = _check_locale(key, (values[key] or "").strip())
    if "puid_auto" in values:
        checked["puid_auto"] = "1" if values["puid_auto"] in (True, "1", "on", "true") else ""
    if "puid_pattern" in values:
        pattern = (values["puid_pattern"] or "").strip() or PUID_KEYS["puid_pattern"]
        from ..imaging.numbers import puid_pattern_problem

        problem = puid_pattern_problem(pattern)
        if problem:
            raise SettingsError({"puid_pattern": problem})
        checked["puid_pattern"] = pattern
    zone_before = clinic_settings()["time_zone"]
    for key, value in checked.items():
        _put(key, value)
    db.session.flush()
    from ..clock import forget

    forget()
    if "time_zone" in checked and (checked["time_zone"] or LOCALE_KEYS["time_zone"]) != zone_before:
        from sqlalchemy import true

        from ..imaging.workflow import announce_waiting

        announce_waiting(true())  # each live item rewritten (worklists.writer), in the new zone


# -- the logo -------------------------------------------------------------------

def _logo_dir() -> Path:
    from ..config import private_dir

    return private_dir(Path(current_app.instance_path) / LOGO_DIR)


def logo_path() -> Path | None:
    """The clinic's logo file, or None when there is none (or it is gone)."""
    row = db.session.get(Setting, LOGO_KEY)
    if row is None or not row.value:
        return None
    path = Path(current_app.instance_path) / LOGO_DIR / Path(row.value).name
    return path if path.is_file() else None


def logo_problem(data: bytes) -> tuple[str, str]:
    """(format, "") for a PNG or JPEG Pillow decodes whole, else ("", why).
    The picture is decoded, not trusted by its name or first bytes."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        return "", str(_("The file is empty."))
    if len(data) > LOGO_MAX_BYTES:
        return "", str(_("The logo must be at most %(n)d MB.", n=LOGO_MAX_BYTES // (1024 * 1024)))
    try:
        with Image.open(BytesIO(data)) as probe:
            kind = probe.format or ""
            if kind not in LOGO_FORMATS:
                return "", str(_("The logo must be a PNG or JPEG picture."))
            if probe.width * probe.height > LOGO_MAX_PIXELS:
                return "", str(_("The picture is too large (at most 4000 × 4000 pixels)."))
            probe.load()  # decodes every pixel: a truncated or corrupt file fails here
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "", str(_("The file is not a PNG or JPEG picture that can be read."))
    return kind, ""


def save_logo(data: bytes) -> Path | None:
    """Store a new logo (0600, a random name, in the instance folder) and
    point the setting at it. Returns the file it replaces, which the caller
    deletes with :func:`discard` once the change is committed."""
    kind, problem = logo_problem(data)
    if problem:
        raise SettingsError({"logo": problem})
    from ..config import write_private

    name = secrets.token_hex(16) + LOGO_FORMATS[kind]
    write_private(_logo_dir() / name, data, exclusive=True)
    old = logo_path()
    _put(LOGO_KEY, name)
    db.session.flush()
    return old


def remove_logo() -> Path | None:
    """No logo any more; returns the file to :func:`discard` after commit."""
    old = logo_path()
    _put(LOGO_KEY, "")
    db.session.flush()
    return old


def discard(path: Path | None) -> None:
    """Delete a logo file no setting points at any more."""
    if path is not None:
        path.unlink(missing_ok=True)


def logo_mimetype(path: Path) -> str:
    return "image/png" if path.suffix == ".png" else "image/jpeg"
