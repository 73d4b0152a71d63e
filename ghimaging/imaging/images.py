"""Report images: validated with Pillow (imported by the first image stored,
not with the application), stored under the instance folder."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..config import private_dir, write_private
from ..exceptions import Invalid

ALLOWED = {"PNG": ("image/png", ".png"), "JPEG": ("image/jpeg", ".jpg")}
MAX_PIXELS = 80_000_000
THUMB_SIZE = (360, 360)


class ImageError(Invalid):
    """A file that cannot be a report image (its name and why, on ``images``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, fields={"images": message})


@dataclass
class StoredImage:
    stored_name: str
    content_type: str
    width: int
    height: int


def human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB" if n % (1024 * 1024) == 0 else f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n // 1024} KB"
    return f"{n} bytes"


def image_dir() -> Path:
    """Report images are patient data: the folder and files are the
    application user's alone (0700 and 0600), whatever the umask."""
    return private_dir(Path(current_app.config["RESULT_IMAGE_DIR"]))


def store(stream: BinaryIO, filename: str) -> StoredImage:
    """Check that ``stream`` is a PNG or JPEG of sane size, then save it with
    a random name and a JPEG thumbnail beside it."""
    from PIL import Image, UnidentifiedImageError

    limit = current_app.config["RESULT_IMAGE_MAX_BYTES"]
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise ImageError(_("%(file)s: larger than %(size)s.", file=filename, size=human_size(limit)))
    if not data:
        raise ImageError(_("%(file)s: the file is empty.", file=filename))
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format
            width, height = probe.size
            if fmt not in ALLOWED:
                raise ImageError(_("%(file)s: only PNG and JPEG images can be attached.", file=filename))
            if width * height > MAX_PIXELS:
                raise ImageError(_("%(file)s: the image is too large (%(width)s×%(height)s).", file=filename,
                                   width=width, height=height))
            probe.verify()
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            thumb = img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
            thumb.thumbnail(THUMB_SIZE)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ImageError(_("%(file)s: not a readable PNG or JPEG image.", file=filename)) from None
    content_type, ext = ALLOWED[fmt]
    name = uuid.uuid4().hex + ext
    folder = image_dir()
    small = io.BytesIO()
    thumb.save(small, "JPEG", quality=85)
    write_private(folder / name, data)
    write_private(folder / thumb_name(name), small.getvalue())
    return StoredImage(name, content_type, width, height)


def thumb_name(stored_name: str) -> str:
    return stored_name.rsplit(".", 1)[0] + ".thumb.jpg"


def remove(stored_name: str) -> None:
    folder = image_dir()
    for n in (stored_name, thumb_name(stored_name)):
        (folder / n).unlink(missing_ok=True)
