"""dump2dcm text -> a DICOM worklist file, with pydicom (no dcmtk at run time).

The accepted syntax is what dcmtk's ``dump2dcm`` reads and ``dcmdump``
writes: one ``(gggg,eeee) VR value`` per line, the value in ``[...]`` or
bare, ``#`` comments, and sequences opened by an ``SQ`` line with items
between ``(fffe,e000)`` and ``(fffe,e00d)``, closed by ``(fffe,e0dd)``.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import ngettext
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from ..exceptions import Invalid

MWL_FIND = "1.2.840.10008.5.1.4.31"  # Modality Worklist Information Model - FIND
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LINE = re.compile(r"^\s*\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)(?:\s+([A-Za-z]{2}|-))?(?:\s+(.*))?$")
_NUMERIC = {"US": int, "SS": int, "UL": int, "SL": int, "SV": int, "UV": int, "FL": float, "FD": float}
_BYTES = {"OB", "OW", "OF", "OD", "OL", "OV", "UN"}


class DumpError(Invalid, ValueError):
    """Rendered text that is not valid dump2dcm syntax, at ``line``."""

    code = "worklist_syntax"

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        return str(_("line %(line)s: %(message)s", line=self.line, message=self.message))


@dataclass
class Parsed:
    dataset: Dataset
    meta: FileMetaDataset


_RANGES = {"US": (0, 2**16 - 1), "SS": (-2**15, 2**15 - 1), "UL": (0, 2**32 - 1), "SL": (-2**31, 2**31 - 1),
           "UV": (0, 2**64 - 1), "SV": (-2**63, 2**63 - 1)}


def _known_vrs() -> set[str]:
    from pydicom.valuerep import VR

    return {v.value for v in VR} - {"SQ"}


def _value(rest: str, vr: str, lineno: int) -> Any:
    """The value as dump2dcm reads it: inside [...] up to the last ] on the
    line, or else the rest of the line up to a # comment."""
    rest = (rest or "").strip()
    if rest.startswith("["):
        end = rest.rfind("]")
        if end < 0:
            raise DumpError(_("a value opened with [ is not closed with ]"), lineno)
        text = rest[1:end]
    elif rest.startswith("(no value") or rest.startswith("#") or not rest:
        text = ""
    elif rest.startswith("=") or rest.startswith("("):
        text = ""  # dcmdump annotations such as (Sequence with ...)
    else:
        text = rest.split("#", 1)[0].strip()
    if vr in _NUMERIC:
        if text == "":
            return None
        try:
            nums = [_NUMERIC[vr](x) for x in text.split("\\")]
        except ValueError:
            raise DumpError(_("%(vr)s needs numbers, not %(text)s", vr=vr, text=repr(text)), lineno) from None
        low_high = _RANGES.get(vr)
        if low_high and any(not low_high[0] <= n <= low_high[1] for n in nums):
            raise DumpError(_("%(text)s is out of range for %(vr)s (%(low)s to %(high)s)", text=text, vr=vr,
                                  low=low_high[0], high=low_high[1]), lineno)
        return nums[0] if len(nums) == 1 else nums
    if vr in _BYTES:
        if text == "":
            return b""
        try:
            return bytes(int(x, 16) for x in text.split("\\"))
        except ValueError:
            raise DumpError(_("%(vr)s needs hex bytes like 00\\01, not %(text)s", vr=vr, text=repr(text)),
                            lineno) from None
    if "\\" in text:
        return text.split("\\")
    return text


def parse(text: str) -> Parsed:
    """Parse dump text into a dataset and file meta elements (group 0002)."""
    root = Dataset()
    meta = FileMetaDataset()
    stack: list[tuple[str, Dataset | Sequence]] = [("ds", root)]  # ("ds", Dataset) or ("seq", Sequence)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise DumpError(_("expected %(form)s, got %(line)s", form="'(gggg,eeee) VR [value]'", line=repr(line[:60])),
                            lineno)
        group, elem, vr, rest = int(m[1], 16), int(m[2], 16), (m[3] or "").upper(), m[4]
        tag = (group << 16) | elem
        if (not vr or vr == "-") and group != 0xFFFE:
            raise DumpError(_("a VR (two letters such as LO) is required after the tag"), lineno)
        kind, top = stack[-1]
        if tag == ITEM:
            if kind != "seq":
                raise DumpError(_("an item (fffe,e000) outside a sequence"), lineno)
            item = Dataset()
            top.append(item)
            stack.append(("ds", item))
            continue
        if tag == ITEM_END:
            if kind != "ds" or len(stack) < 2:
                raise DumpError(_("(fffe,e00d) without an open item"), lineno)
            stack.pop()
            continue
        if tag == SEQ_END:
            if kind != "seq":
                raise DumpError(_("(fffe,e0dd) without an open sequence"), lineno)
            stack.pop()
            continue
        if kind != "ds":
            raise DumpError(_("an element directly inside a sequence; open an item with (fffe,e000) first"), lineno)
        if group == 0x0002:
            if elem != 0x0000:
                meta.add(DataElement(tag, vr, _value(rest, vr, lineno)))
            continue
        if elem == 0x0000:
            continue  # group lengths are computed on writing, as dump2dcm does by default
        if vr not in _known_vrs() and vr != "SQ":
            raise DumpError(_("%(vr)s is not a DICOM VR", vr=vr), lineno)
        if vr == "SQ":
            seq = Sequence()
            top.add(DataElement(tag, "SQ", seq))  # type: ignore[union-attr]
            stack.append(("seq", top[tag].value))
            continue
        try:
            top.add(DataElement(tag, vr, _value(rest, vr, lineno)))  # type: ignore[union-attr]
        except DumpError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise DumpError(f"({m[1]},{m[2]}) {vr}: {exc}", lineno) from None
    while len(stack) > 1:  # dump2dcm closes what is left open at the end
        stack.pop()
    return Parsed(root, meta)


def to_bytes(text: str) -> bytes:
    """The worklist file: preamble, file meta (MWL FIND SOP class, explicit
    VR little endian) and the dataset, text encoded by SpecificCharacterSet."""
    parsed = parse(text)
    ds = parsed.dataset
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = parsed.meta.get("MediaStorageSOPClassUID", MWL_FIND)
    # Derived from the text, so the same worklist item gives the same bytes
    # and `worklists write` can tell a file that needs no rewrite.
    meta.MediaStorageSOPInstanceUID = (parsed.meta.get("MediaStorageSOPInstanceUID")
                                       or generate_uid(entropy_srcs=["ghimaging-worklist", text]))
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    buf = io.BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=True, little_endian=True, implicit_vr=False)
    except (ValueError, TypeError, OverflowError, NotImplementedError, OSError, LookupError) as exc:
        raise DumpError(_("the values cannot be written as DICOM: %(error)s", error=exc), 0) from None
    return buf.getvalue()


def describe(data: bytes) -> list[tuple[int, str, str, str, str]]:
    """(depth, tag, keyword, VR, value) rows of a worklist file, decoded
    with its character set, for the request page."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), force=True)
    rows: list[tuple[int, str, str, str, str]] = []

    def walk(d: Dataset, depth: int) -> None:
        for el in d:
            tag = f"({el.tag.group:04X},{el.tag.element:04X})"
            if el.VR == "SQ":
                rows.append((depth, tag, el.keyword or "", "SQ",
                             str(ngettext("%(num)s item", "%(num)s items", len(el.value)))))
                for item in el.value:
                    walk(item, depth + 1)
            else:
                value = el.value
                if isinstance(value, bytes):
                    shown = value.hex(" ")
                elif isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                    shown = "\\".join(str(x) for x in value)
                else:
                    shown = str(value) if value is not None else ""
                rows.append((depth, tag, el.keyword or "", el.VR, shown))

    walk(ds, 0)
    return rows
