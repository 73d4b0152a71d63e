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

from ..clock import to_local

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


#: Names never shown to a template, whatever the model: secrets and the
#: handles of other people's sign-ins.
_SECRET = re.compile(r"password|passwd|hash|token|secret|session|credential|key|_enc$", re.I)


def _model_classes() -> tuple[type, ...]:
    """The models ``my`` may walk into: the request, its patient, test,
    modality and the people on it. Nothing else (no results, events,
    tokens, Orthanc servers, database sessions or engines)."""
    from ..models import ImagingRequest, ImagingTest, ModalityType, Patient, User

    return (ImagingRequest, Patient, ImagingTest, ModalityType, User)


_EXPOSED: dict[type, frozenset[str]] = {}


def exposed_names(cls: type) -> frozenset[str]:
    """What ``my`` shows of a model: its mapped columns, its relationships to
    the models above, and its read-only properties; never a name starting
    with ``_`` or one that looks like a secret."""
    names = _EXPOSED.get(cls)
    if names is None:
        from sqlalchemy import inspect
        from sqlalchemy.orm import Mapper

        mapper: Mapper[Any] = inspect(cls)
        allowed = _model_classes()
        found = {a.key for a in mapper.column_attrs}
        found |= {r.key for r in mapper.relationships if r.mapper.class_ in allowed}
        for klass in cls.__mro__:
            found |= {n for n, v in vars(klass).items() if isinstance(v, property)}
        names = frozenset(n for n in found if not n.startswith("_") and not _SECRET.search(n))
        _EXPOSED[cls] = names
    return names


def related_model(cls: type, name: str) -> type | None:
    """The model ``my.<...>.name`` leads to when ``name`` is a one-valued
    relationship of ``cls`` to a model templates may see (``my.patient`` is
    a Patient); None for a column, a list or anything else."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import Mapper

    mapper: Mapper[Any] = inspect(cls)
    rel = mapper.relationships.get(name)
    if rel is None or rel.uselist or rel.mapper.class_ not in _model_classes():
        return None
    target: type = rel.mapper.class_
    return target


def request_model() -> type:
    """The model ``my`` shows: the request."""
    return _model_classes()[0]


def all_exposed_names() -> frozenset[str]:
    """Every attribute name ``my`` can show, whatever the model (for the
    check made when a template is saved)."""
    out: set[str] = set()
    for cls in _model_classes():
        out |= exposed_names(cls)
    return frozenset(out)


class SafeProxy:
    """``my`` in templates: the request, read-only. Only the fields in
    :func:`exposed_names` are shown; every string is cleaned (as LO) on the
    way out, so even ``${my.comment}`` cannot break a line; a related model
    comes wrapped again; anything else (methods, sessions, classes, other
    objects) is refused, so a template cannot walk from the request to
    the database engine or a password hash."""

    def __init__(self, obj: Any):
        object.__setattr__(self, "_obj", obj)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        obj = object.__getattribute__(self, "_obj")
        kind = type(obj)
        if kind not in _model_classes() or name not in exposed_names(kind):
            raise AttributeError(f"the request has no attribute '{name}'" if kind.__name__ == "ImagingRequest"
                                 else f"{kind.__name__.lower()} has no attribute '{name}' for templates")
        return _safe(getattr(obj, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("read-only")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("read-only")

    def __str__(self) -> str:
        return clean(str(object.__getattribute__(self, "_obj")), "LO")

    def __repr__(self) -> str:  # shown in template error messages
        return f"my ({type(object.__getattribute__(self, '_obj')).__name__})"


def _safe(value: Any) -> Any:
    """A value as a template may hold it (see :class:`SafeProxy`)."""
    if isinstance(value, str):
        return clean(value, "LO")
    if isinstance(value, datetime):  # a stored instant (naive UTC): the modality reads the clinic's clock
        return to_local(value)
    if value is None or isinstance(value, (bool, int, float, date)):
        return value
    if isinstance(value, _model_classes()):
        return SafeProxy(value)
    if isinstance(value, (list, tuple)):
        return [v for v in (_safe_item(v) for v in value) if v is not _HIDDEN]
    raise AttributeError(f"a {type(value).__name__} is not available to templates")


_HIDDEN = object()


def _safe_item(value: Any) -> Any:
    try:
        return _safe(value)
    except AttributeError:
        return _HIDDEN
