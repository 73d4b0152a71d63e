"""What the radiologist sees of an instance, and what is not an image at all.

One rendering serves the page preview and the key image stored with a
report, so the report prints the picture the radiologist chose from.
Orthanc 1.10.1 offers two renderings and neither is right alone (checked on
the real server):

- ``/rendered`` applies the window stored in the file (WindowCenter /
  WindowWidth, with the rescale), which is what the modality meant; without
  a stored window it maps the whole range of BitsStored, so a 16-bit image
  whose values use a fraction of it comes out black;
- ``/preview`` stretches the image between its own minimum and maximum: never
  black, but it ignores the stored window (an MR with a 600/1600 window looks
  different).

So: the stored window when the file has one, else Orthanc's computed
(min/max) one. A compressed transfer syntax Orthanc cannot decode (JPEG 2000
without the orthanc-gdcm plugin) answers 415; that, and instances that hold
no picture (reports, PDFs, RT objects), become messages a person can act on.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l

from .client import BadAnswer, NotFound, OrthancClient, OrthancError

if TYPE_CHECKING:
    from ..models import OrthancSeries, OrthancServer

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotAnImage(OrthancError):
    """The instance holds no picture (SR, PDF, RT plan…)."""

    code = "not_an_image"


class CannotDecode(OrthancError):
    """Orthanc cannot decode the pixel data (HTTP 415)."""

    code = "cannot_decode"


@dataclass(frozen=True)
class Kind:
    """What a series or instance holds, for choosing preview or placeholder."""

    key: str  # "image", "pdf", or the family of a non-image object
    label: str  # for people: "PDF document", "Structured report"…

    @property
    def image(self) -> bool:
        return self.key == "image"

    @property
    def pdf(self) -> bool:
        return self.key == "pdf"


IMAGE = Kind("image", _l("Image"))
PDF = Kind("pdf", _l("PDF document"))
DOCUMENT = Kind("document", _l("Document"))

# SOP classes that hold no picture Orthanc can render, most specific first.
# Anything else is treated as an image (an image Orthanc then fails to decode
# still gets a placeholder in the page, from static/js/app.js).
_NON_IMAGE_SOP: tuple[tuple[str, Kind], ...] = (
    ("1.2.840.10008.5.1.4.1.1.104.1", PDF),
    ("1.2.840.10008.5.1.4.1.1.104", Kind("document", _l("Document (CDA or 3D model)"))),
    ("1.2.840.10008.5.1.4.1.1.88.59", Kind("key-objects", _l("Key object selection"))),
    ("1.2.840.10008.5.1.4.1.1.88", Kind("report", _l("Structured report"))),
    ("1.2.840.10008.5.1.4.1.1.11", Kind("presentation", _l("Presentation state"))),
    ("1.2.840.10008.5.1.4.1.1.481.1", IMAGE),  # RT Image is a real image
    ("1.2.840.10008.5.1.4.1.1.481.2", Kind("rt", _l("RT dose"))),
    ("1.2.840.10008.5.1.4.1.1.481.3", Kind("rt", _l("RT structure set"))),
    ("1.2.840.10008.5.1.4.1.1.481.5", Kind("rt", _l("RT plan"))),
    ("1.2.840.10008.5.1.4.1.1.481.8", Kind("rt", _l("RT ion plan"))),
    ("1.2.840.10008.5.1.4.1.1.481", Kind("rt", _l("RT treatment record"))),
    ("1.2.840.10008.5.1.4.34", Kind("rt", _l("RT object"))),
    ("1.2.840.10008.5.1.4.1.1.9", Kind("waveform", _l("Waveform (ECG, audio…)"))),
    ("1.2.840.10008.5.1.4.1.1.66.4", Kind("segmentation", _l("Segmentation"))),
    ("1.2.840.10008.5.1.4.1.1.66.2", Kind("fiducials", _l("Fiducials"))),
    ("1.2.840.10008.5.1.4.1.1.66", Kind("registration", _l("Registration or raw data"))),
    ("1.2.840.10008.5.1.4.1.1.67", Kind("measurements", _l("Real world value mapping"))),
    ("1.2.840.10008.5.1.4.1.1.68", Kind("surface", _l("Surface model"))),
    ("1.2.840.10008.5.1.4.1.1.78", Kind("measurements", _l("Measurements"))),
    ("1.2.840.10008.5.1.4.1.1.79", Kind("measurements", _l("Measurements"))),
    ("1.2.840.10008.5.1.4.1.1.80", Kind("measurements", _l("Measurements"))),
    ("1.2.840.10008.5.1.4.1.1.81", Kind("measurements", _l("Measurements"))),
    ("1.2.840.10008.5.1.4.1.1.82", Kind("measurements", _l("Measurements"))),
    ("1.2.840.10008.5.1.4.1.1.90", Kind("report", _l("Content assessment"))),
    ("1.2.840.10008.5.1.4.1.1.200", Kind("protocol", _l("Acquisition protocol"))),
    ("1.2.840.10008.5.1.4.38", Kind("other", _l("Hanging protocol"))),
    ("1.2.840.10008.5.1.4.39", Kind("other", _l("Color palette"))),
    ("1.2.840.10008.5.1.4.43", Kind("other", _l("Implant template"))),
    ("1.2.840.10008.5.1.4.44", Kind("other", _l("Implant template"))),
    ("1.2.840.10008.5.1.4.45", Kind("other", _l("Implant template"))),
)

# Modalities that say enough by themselves. "DOC" (a PDF or a CDA), "OT"
# (anything) and an empty modality are decided by the SOP class instead.
_NON_IMAGE_MODALITY = {
    "SR": Kind("report", _l("Structured report")),
    "KO": Kind("key-objects", _l("Key object selection")),
    "PR": Kind("presentation", _l("Presentation state")),
    "RTDOSE": Kind("rt", _l("RT dose")),
    "RTSTRUCT": Kind("rt", _l("RT structure set")),
    "RTPLAN": Kind("rt", _l("RT plan")),
    "RTRECORD": Kind("rt", _l("RT treatment record")),
    "PLAN": Kind("protocol", _l("Plan")),
    "REG": Kind("registration", _l("Registration")),
    "FID": Kind("fiducials", _l("Fiducials")),
    "SEG": Kind("segmentation", _l("Segmentation")),
    "RWV": Kind("measurements", _l("Real world value mapping")),
    "AU": Kind("waveform", _l("Audio")),
    "ECG": Kind("waveform", _l("ECG waveform")),
    "HD": Kind("waveform", _l("Hemodynamic waveform")),
    "EPS": Kind("waveform", _l("Electrophysiology waveform")),
    "RESP": Kind("waveform", _l("Respiratory waveform")),
    "M3D": Kind("surface", _l("3D model")),
}
_UNDECIDED_MODALITY = {"", "DOC", "OT"}

# Transfer syntaxes worth naming when Orthanc cannot decode them.
_SYNTAX_NAMES = {
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.92": "JPEG 2000 multi-component", "1.2.840.10008.1.2.4.93": "JPEG 2000 multi-component",
    "1.2.840.10008.1.2.4.201": "HTJ2K", "1.2.840.10008.1.2.4.202": "HTJ2K", "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS",
    "1.2.840.10008.1.2.4.50": "JPEG baseline", "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless", "1.2.840.10008.1.2.4.70": "JPEG lossless",
    "1.2.840.10008.1.2.5": "RLE", "1.2.840.10008.1.2.1.99": "deflated",
}


def kind_of_sop_class(sop_class: str) -> Kind:
    uid = (sop_class or "").strip()
    for prefix, kind in _NON_IMAGE_SOP:
        if uid == prefix or uid.startswith(prefix + "."):
            return kind
    return IMAGE


def kind_of_modality(modality: str) -> Kind | None:
    """The kind a series' Modality tells, or None when only the SOP class can."""
    code = (modality or "").strip().upper()
    if code in _UNDECIDED_MODALITY:
        return None
    return _NON_IMAGE_MODALITY.get(code, IMAGE)


_PAUSE_AFTER_FAILURE = 60.0


def _sop_cache() -> dict[tuple[int, str, str], str]:
    """(server id, URL, instance id) -> SOP class UID, per application (tests
    and apps never share it). Orthanc ids are hashes of the UIDs, so an id
    never changes class."""
    from flask import current_app

    cache: dict[tuple[int, str, str], str] = current_app.extensions.setdefault("ghimaging.sop_classes", {})
    return cache


def sop_class_of(server: OrthancServer, instance_id: str) -> str:
    """The SOP class UID of one instance, from Orthanc's index (cached); ""
    when Orthanc cannot tell now (the page then tries a preview).

    Asked within the page's Orthanc deadline (5 s at most), and not at all
    for a minute after Orthanc failed to answer (a page does not wait for an
    Orthanc that is away once per series)."""
    from . import instances

    cache = _sop_cache()
    key = (server.id, server.url, instance_id)
    if key in cache:
        return cache[key]
    if instances.recent_failure(server, within=_PAUSE_AFTER_FAILURE):
        return ""
    try:
        with instances.calling(server, seconds=5.0, retries=0) as client:
            sop = client.instance_metadata(instance_id).get("SopClassUid", "")
    except Exception as exc:
        log.warning("SOP class of %s on %s: %s", instance_id, server.label, exc)
        return ""
    if len(cache) >= 10_000:  # bounded: it cannot grow for ever
        cache.clear()
    cache[key] = sop
    return sop


def series_kind(series: OrthancSeries) -> Kind:
    """Preview or placeholder for a mirrored series (``OrthancSeries``).

    The Modality decides when it can; "DOC", "OT" or none asks Orthanc for
    the first instance's SOP class (once: cached), so an encapsulated PDF
    filed as "OT" still gets its "Open PDF" link.
    """
    kind = kind_of_modality(series.modality)
    if kind is not None:
        return kind
    if not series.first_instance:
        return IMAGE
    sop = sop_class_of(series.study.server, series.first_instance)
    if sop:
        return kind_of_sop_class(sop)
    # Orthanc cannot say now: a "DOC" series is a document of some kind,
    # anything else gets a preview attempt (a failed one shows "No preview").
    return DOCUMENT if (series.modality or "").strip().upper() == "DOC" else IMAGE


def _window_width(client: OrthancClient, instance_id: str) -> float | None:
    raw = client.instance_tag(instance_id, "0028-1051")  # WindowWidth, first value wins
    if not raw:
        return None
    try:
        width = float(raw.split("\\")[0].strip())
    except ValueError:
        return None
    return width if width > 0 else None


def display_png(client: OrthancClient, instance_id: str) -> bytes:
    """The PNG of an instance as the radiologist sees it in ghimaging.

    Used by the preview route and for key images: the stored window when the
    file has a usable one (``/rendered``), else Orthanc's computed window
    (``/preview``, minimum to maximum). Raises :class:`NotAnImage` for
    instances with no picture, :class:`CannotDecode` for pixel data Orthanc
    cannot decode, and the client's errors (``NotFound``…) otherwise.
    """
    meta = client.instance_metadata(instance_id)
    kind = kind_of_sop_class(meta.get("SopClassUid", ""))
    if not kind.image:
        raise NotAnImage(_("this is not an image (%(kind)s); there is no picture to show.", kind=kind.label))
    try:
        if _window_width(client, instance_id) is not None:
            data, ctype = client.rendered(instance_id)
        else:
            data, ctype = client.preview(instance_id)
    except BadAnswer as exc:
        if exc.status == 415:
            syntax = meta.get("TransferSyntax", "")
            name = _SYNTAX_NAMES.get(syntax) or (_("transfer syntax %(uid)s", uid=syntax) if syntax
                                                 else _("its transfer syntax"))
            raise CannotDecode(_("Orthanc cannot decode this image (%(syntax)s). Installing the orthanc-gdcm "
                                 "plugin on the Orthanc server adds JPEG 2000 and other compressed formats.",
                                 syntax=name)) from None
        raise
    if not data.startswith(PNG_SIGNATURE) or ctype.split(";")[0].strip().lower() != "image/png":
        raise _not_png(ctype)
    return data


# -- the built-in viewer: one frame under a chosen window ------------------------------

#: Window presets a CT series offers (center, width in HU); other modalities
#: start from the window of the image itself.
PRESETS: dict[str, tuple[tuple[str, float, float], ...]] = {
    "CT": (("Brain", 40, 80), ("Lung", -600, 1500), ("Bone", 400, 1800), ("Abdomen", 40, 400)),
}


@dataclass(frozen=True)
class View:
    """Exactly what the viewer shows: one frame of an instance under a
    window (center, width in rescaled units), or under none for a colour
    image, which has no window."""

    instance_id: str
    frame: int = 0
    center: float | None = None
    width: float | None = None

    @property
    def windowed(self) -> bool:
        return self.center is not None and self.width is not None


def _first_number(value: object) -> float | None:
    text = value[0] if isinstance(value, list) and value else value
    try:
        number = float(str(text).split("\\")[0].strip())
    except ValueError:
        return None
    return number if number == number and abs(number) < 1e9 else None  # not NaN, not absurd


def default_window(client: OrthancClient, instance_id: str) -> tuple[float, float] | None:
    """The window an image brings (center, width in rescaled units): the one
    stored in the file, else its own minimum to maximum (what ``/preview``
    shows); None for a colour image, and None (logged) when Pillow cannot
    read Orthanc's grey values or Orthanc cannot give them (415): the
    viewer then opens on Orthanc's own rendering instead of refusing the
    whole series. One or two calls to Orthanc; its other failures
    (``OrthancError``) still raise."""
    tags = client.instance_tags(instance_id)
    samples = _first_number(tags.get("SamplesPerPixel")) or 1
    if samples != 1 or not str(tags.get("PhotometricInterpretation", "MONOCHROME2")).startswith("MONOCHROME"):
        return None
    center, width = _first_number(tags.get("WindowCenter")), _first_number(tags.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        return center, width
    from PIL import Image  # Pillow: loaded by the first image without a stored window

    try:
        values = client.frame_values(instance_id, 0)
    except BadAnswer as exc:
        if exc.status != 415:
            raise
        # Orthanc cannot give these values as 16 bits (a 32-bit image, checked
        # on 1.10.1): the series still opens, its frames say what is wrong.
        log.warning("viewer: no window for %s, Orthanc cannot give its grey values: %s", instance_id, exc)
        return None
    try:
        with Image.open(io.BytesIO(values)) as img:
            low, high = img.getextrema()  # one band: (minimum, maximum)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        log.warning("viewer: no window for %s, Pillow cannot read its grey values: %s", instance_id, exc)
        return None
    if not isinstance(low, (int, float)) or not isinstance(high, (int, float)):
        log.warning("viewer: no window for %s, its grey values are not one band", instance_id)
        return None
    slope = _first_number(tags.get("RescaleSlope")) or 1.0
    intercept = _first_number(tags.get("RescaleIntercept")) or 0.0
    a, b = sorted((float(low) * slope + intercept, float(high) * slope + intercept))
    return (a + b) / 2, max(b - a, 1.0)


def frame_png(client: OrthancClient, view: View) -> bytes:
    """The PNG of ``view`` rendered by Orthanc: the viewer's frames and the
    key image taken from the viewer are this same picture. Raises
    :class:`CannotDecode` for pixel data Orthanc cannot decode and the
    client's errors (``NotFound`` for a frame that does not exist)."""
    try:
        data, ctype = client.rendered_frame(view.instance_id, view.frame, view.center, view.width)
    except BadAnswer as exc:
        if exc.status == 415:
            raise CannotDecode(_("Orthanc cannot decode this image. Installing the orthanc-gdcm plugin on the "
                                 "Orthanc server adds JPEG 2000 and other compressed formats.")) from None
        if exc.status == 400:  # a frame number past the end
            raise NotFound(_("frame %(frame)s of %(instance)s not found in Orthanc.", frame=view.frame,
                             instance=view.instance_id)) from None
        raise
    if not data.startswith(PNG_SIGNATURE) or ctype.split(";")[0].strip().lower() != "image/png":
        raise _not_png(ctype)
    return data


def _not_png(ctype: str) -> BadAnswer:
    """Orthanc's answer to a rendering call was not a picture."""
    if not ctype:
        return BadAnswer(_("Orthanc answered with no content type instead of a PNG image."))
    return BadAnswer(_("Orthanc answered %(type)s instead of a PNG image.", type=ctype))
