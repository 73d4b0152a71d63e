"""DICOM SpecificCharacterSet terms and the Python codecs that match.

Only single-valued terms are offered: a worklist template declares one
character set and is encoded with one codec. The pairs come from pydicom's
own table, so whatever pydicom can write, we accept.
"""

from __future__ import annotations

import codecs

from pydicom.charset import python_encoding

# Friendly labels for the ones clinics use most.
COMMON = {
    "ISO_IR 192": "Unicode (UTF-8)",
    "ISO_IR 100": "Latin-1 (Western Europe)",
    "ISO_IR 101": "Latin-2 (Central Europe)",
    "ISO_IR 144": "Cyrillic",
    "ISO_IR 127": "Arabic",
    "ISO_IR 126": "Greek",
    "ISO_IR 138": "Hebrew",
    "ISO_IR 148": "Latin-5 (Turkish)",
    "ISO_IR 166": "Thai",
    "GB18030": "Chinese (GB18030)",
    "GBK": "Chinese (GBK)",
    "ISO_IR 6": "ASCII only",
}


def _norm(codec: str) -> str:
    return codecs.lookup(codec).name


def known_terms() -> dict[str, str]:
    """Term -> Python codec for every single-byte or Unicode term pydicom knows."""
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
        raise ValueError(f"{term!r} is not a DICOM character set term pydicom knows "
                         f"(for example ISO_IR 192, ISO_IR 100, GB18030).") from None


def check_pair(term: str, encoding: str) -> str:
    """The normalised codec if ``encoding`` matches ``term``, else ValueError."""
    expected = codec_for(term.strip())
    try:
        given = _norm(encoding.strip())
    except LookupError:
        raise ValueError(f"{encoding!r} is not a Python encoding.") from None
    if given != _norm(expected):
        raise ValueError(f"{term} is encoded as {expected}, not {encoding}.")
    return given


def choices() -> list[tuple[str, str]]:
    terms = known_terms()
    common = [(t, f"{t} — {label}") for t, label in COMMON.items() if t in terms]
    rest = sorted((t, t) for t in terms if t not in COMMON)
    return common + rest
