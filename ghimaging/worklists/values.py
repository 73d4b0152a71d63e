"""Values made safe for one line of dump2dcm text and for their VR.

A value reaches a template only through :func:`clean`: no ``]``, newline,
backslash or control character can break the file or add an element, and
each value is cut to its VR's maximum length.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime
from typing import Any

MAX_LEN = {"AE": 16, "AS": 4, "CS": 16, "DA": 8, "DS": 16, "DT": 26, "IS": 12, "LO": 64, "LT": 10240,
           "PN": 64, "SH": 16, "ST": 1024, "TM": 16, "UC": 10240, "UI": 64, "UT": 10240}
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\]\[\\]")
_PN_PART_UNSAFE = re.compile(r"[\^=]")


def clean(value: Any, vr: str = "LO", *, cut: bool = True) -> str:
    """The value made safe for one line and its VR; ``cut=False`` keeps its
    whole length (to tell whether cutting loses something)."""
    if value is None:
        return ""
    text = str(value)
    text = unicodedata.normalize("NFC", text)
    text = _UNSAFE.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    if vr == "CS":
        text = re.sub(r"[^A-Z0-9 _]", "", text.upper())
    elif vr == "AE":
        text = text.encode("ascii", "ignore").decode()
    elif vr == "UI":
        text = re.sub(r"[^0-9.]", "", text)
    elif vr in ("DA", "TM", "AS", "DS", "IS"):
        text = re.sub(r"[^0-9A-Z.+\-]", "", text)
    return text[: MAX_LEN.get(vr, 64)].strip() if cut else text


def person_name(family: str, given: str = "", middle: str = "", *, cut: bool = True) -> str:
    """DICOM PN ``Family^Given^Middle`` from parts; a part cannot add
    components or groups."""
    parts = [_PN_PART_UNSAFE.sub(" ", clean(p, "LO", cut=cut)).strip() for p in (family, given, middle)]
    while parts and not parts[-1]:
        parts.pop()
    name = "^".join(parts)
    return name[: MAX_LEN["PN"]] if cut else name


def person_name_from_full(full: str, *, cut: bool = True) -> str:
    """'Family, Given' or 'Given Family' as PN."""
    full = (full or "").strip()
    if not full:
        return ""
    if "," in full:
        family, given = full.split(",", 1)
        return person_name(family, given, cut=cut)
    words = full.split()
    return person_name(words[-1], " ".join(words[:-1]), cut=cut)


def da(value: date | datetime | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def tm(value: datetime | None) -> str:
    return value.strftime("%H%M%S") if value else ""


def age(birth: date | None, on: date) -> str:
    """DICOM AS: ``nnnD`` under a month, ``nnnM`` under a year, else ``nnnY``."""
    if not birth or birth > on:
        return ""
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    if years >= 1:
        return f"{min(years, 999):03d}Y"
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{(on - birth).days:03d}D"


def utc_offset(local_wall_time: datetime) -> str:
    """``+HHMM`` of the machine's time zone at that wall-clock time (DST
    included), as TimezoneOffsetFromUTC wants."""
    aware = local_wall_time.astimezone()
    offset = aware.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


class SafeProxy:
    """``my`` in templates: the request, with every string attribute cleaned
    (as LO) on the way out, so even ``${my.comment}`` cannot break a line."""

    def __init__(self, obj: Any):
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            value = getattr(self._obj, name)
        except AttributeError:
            raise AttributeError(f"the request has no attribute '{name}'") from None
        if isinstance(value, str):
            return clean(value, "LO")
        if value is None or isinstance(value, (int, float, bool, date, datetime)):
            return value
        if isinstance(value, (list, tuple)):
            return [clean(v, "LO") if isinstance(v, str) else v if isinstance(v, (int, float)) else SafeProxy(v)
                    for v in value]
        if callable(value):
            raise AttributeError(f"the request has no attribute '{name}' (it is a method)")
        return SafeProxy(value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")

    def __str__(self) -> str:
        return clean(str(self._obj), "LO")

    def __repr__(self) -> str:  # shown in template error messages
        return f"my ({type(self._obj).__name__})"
