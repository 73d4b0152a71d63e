"""DICOM SpecificCharacterSet terms and the Python codecs that match.

Only single-valued terms are offered: a worklist template declares one
character set and is encoded with one codec. The pairs come from pydicom's
own table (read when first needed: pydicom is not loaded with the
application), so whatever pydicom can write, we accept.
"""

from __future__ import annotations

import codecs

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l

# Friendly labels for the ones clinics use most (lazy: shown in the reader's language).
COMMON = {
    "ISO_IR 192": _l("Unicode (UTF-8)"),
    "ISO_IR 100": _l("Latin-1 (Western Europe)"),
    "ISO_IR 101": _l("Latin-2 (Central Europe)"),
    "ISO_IR 144": _l("Cyrillic"),
    "ISO_IR 127": _l("Arabic"),
    "ISO_IR 126": _l("Greek"),
    "ISO_IR 138": _l("Hebrew"),
    "ISO_IR 148": _l("Latin-5 (Turkish)"),
    "ISO_IR 166": _l("Thai"),
    "GB18030": _l("Chinese (GB18030)"),
    "GBK": _l("Chinese (GBK)"),
    "ISO_IR 6": _l("ASCII only"),
}


def _norm(codec: str) -> str:
    return codecs.lookup(codec).name


def known_terms() -> dict[str, str]:
    """Term -> Python codec for every single-byte or Unicode term pydicom knows."""
    from pydicom.charset import python_encoding

    out = {}
    for term, codec in python_encoding.items():
        if not term or term.startswith("ISO 2022") or "\\" in term:
            continue
        out[term] = codec
    return out


def codec_for(term: str) -> str:
    try:
        return known_terms()[term]
    except KeyError:
        raise ValueError(_("%(term)s is not a DICOM character set term pydicom knows (for example ISO_IR 192, "
                           "ISO_IR 100, GB18030).", term=repr(term))) from None


def check_pair(term: str, encoding: str) -> str:
    """The normalised codec if ``encoding`` matches ``term``, else ValueError."""
    expected = codec_for(term.strip())
    try:
        given = _norm(encoding.strip())
    except LookupError:
        raise ValueError(_("%(encoding)s is not a Python encoding.", encoding=repr(encoding))) from None
    if given != _norm(expected):
        raise ValueError(_("%(term)s is encoded as %(expected)s, not %(encoding)s.", term=term, expected=expected,
                           encoding=encoding))
    return given


def choices() -> list[tuple[str, str]]:
    terms = known_terms()
    common = [(t, f"{t} — {label}") for t, label in COMMON.items() if t in terms]
    rest = sorted((t, t) for t in terms if t not in COMMON)
    return common + rest


def encodable_codec(term: str) -> str:
    """The codec that tells whether text fits ``term``. pydicom writes
    ISO_IR 6 (and no term) with a Latin-1 codec, but the term means ASCII."""
    if term.strip() in ("", "ISO_IR 6"):
        return "ascii"
    return codec_for(term.strip())


def unencodable(text: str, term: str) -> list[str]:
    """The distinct characters of ``text`` that ``term`` cannot hold, in order."""
    codec = encodable_codec(term)
    bad: list[str] = []
    for ch in text:
        if ch in bad:
            continue
        try:
            ch.encode(codec)
        except UnicodeEncodeError:
            bad.append(ch)
    return bad


def describe_chars(chars: list[str], limit: int = 12) -> str:
    """'Ł' (U+0141), 'Ş' (U+015E) ... for messages a person reads."""
    shown = ", ".join(f"\u2018{c}\u2019 (U+{ord(c):04X})" for c in chars[:limit])
    if len(chars) > limit:
        return str(_("%(chars)s and %(count)s more", chars=shown, count=len(chars) - limit))
    return shown


# Orthanc's DefaultEncoding values (its Enumerations.cpp) -> Python codecs.
# Orthanc transcodes answers, worklist answers included, to this encoding.
ORTHANC_ENCODINGS = {
    "Ascii": "ascii", "Utf8": "utf-8", "Latin1": "latin-1", "Latin2": "iso8859_2", "Latin3": "iso8859_3",
    "Latin4": "iso8859_4", "Latin5": "iso8859_9", "Cyrillic": "iso8859_5", "Windows1251": "cp1251",
    "Arabic": "iso8859_6", "Greek": "iso8859_7", "Hebrew": "iso8859_8", "Thai": "tis_620",
    "Japanese": "shift_jis", "JapaneseKanji": "iso2022_jp", "Korean": "euc_kr", "Chinese": "gb18030",
    "SimplifiedChinese": "gb2312",
}
#: Encodings that hold every character a name can have.
UNICODE_ENCODINGS = {"Utf8", "Chinese"}


def orthanc_codec(encoding: str) -> str | None:
    return ORTHANC_ENCODINGS.get((encoding or "").strip())
