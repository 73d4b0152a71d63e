"""Walking what a user uploads: DICOM files, ZIP, gzip, tar and tar.gz,
with bounds on expansion so that no archive can fill the disk or the
memory (zip bombs, millions of entries) and no name is ever used as a path.

Every member is handed over as a small temporary file, so memory stays flat
whatever the size of the upload.
"""

from __future__ import annotations

import gzip
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO, Iterator

DICM_OFFSET = 128
CHUNK = 1024 * 1024


class LimitExceeded(Exception):
    """The upload expands past a configured bound."""


@dataclass
class Member:
    name: str  # shown to the user; never used as a path
    file: IO[bytes]  # positioned at 0
    size: int
    owned: bool = False  # a temporary file the consumer must close when done

    def close(self) -> None:
        if self.owned:
            self.file.close()


@dataclass
class Rejected:
    name: str
    reason: str


@dataclass
class Limits:
    max_files: int = 20_000
    max_expanded_bytes: int = 4 * 1024**3
    max_member_bytes: int = 1024**3
    max_ratio: int = 200  # uncompressed / compressed, per ZIP member


class Budget:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def take(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise LimitExceeded(f"more than {self.limits.max_files} files in the upload")
        if self.bytes > self.limits.max_expanded_bytes:
            raise LimitExceeded(f"the upload expands to more than {self.limits.max_expanded_bytes // 1024**2} MB")


def kind(head: bytes, name: str) -> str:
    """'dicom', 'zip', 'gzip', 'tar' or 'other', from the bytes (a name can lie)."""
    if len(head) >= DICM_OFFSET + 4 and head[DICM_OFFSET:DICM_OFFSET + 4] == b"DICM":
        return "dicom"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    return "other"


def _head(f: IO[bytes]) -> bytes:
    pos = f.tell()
    head = f.read(512)
    f.seek(pos)
    return head


def _spool(src: IO[bytes], limit: int) -> tuple[IO[bytes], int]:
    """Copy ``src`` to a temporary file, refusing more than ``limit`` bytes."""
    tmp = tempfile.TemporaryFile()
    size = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            tmp.close()
            raise LimitExceeded(f"a file expands to more than {limit // 1024**2} MB")
        tmp.write(chunk)
    tmp.seek(0)
    return tmp, size


def display(name: str) -> str:
    """A member name for people: no control characters, forward slashes."""
    clean = "".join(c if c.isprintable() else "?" for c in name.replace("\\", "/"))
    return clean.lstrip("/")[:300] or "(no name)"


def walk(f: IO[bytes], name: str, limits: Limits, budget: Budget | None = None,
         depth: int = 0) -> Iterator[Member | Rejected]:
    """Yield every DICOM candidate inside ``f`` (itself, or archive members)
    and a :class:`Rejected` for everything else, with the reason."""
    budget = budget or Budget(limits)
    head = _head(f)
    what = kind(head, name)
    if what == "dicom":
        f.seek(0, 2)
        size = f.tell()
        f.seek(0)
        if depth:
            budget.take(size)
        yield Member(name, f, size, owned=depth > 0)
        return
    if depth > 2 and what in ("zip", "gzip", "tar"):
        yield Rejected(name, "archive nested too deeply")
        return
    if what == "zip":
        yield from _walk_zip(f, name, limits, budget, depth)
    elif what == "gzip":
        yield from _walk_gzip(f, name, limits, budget, depth)
    elif what == "tar":
        yield from _walk_tar(f, name, limits, budget, depth)
    elif head[:4] == b"DICM":
        yield Rejected(name, "DICOM without its 128-byte preamble; not accepted")
    else:
        yield Rejected(name, "not a DICOM file")


def _walk_zip(f, name, limits, budget, depth):
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        yield Rejected(name, f"damaged ZIP archive ({exc})")
        return
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            member = f"{name}/{display(info.filename)}"
            if info.flag_bits & 0x1:
                yield Rejected(member, "encrypted ZIP member")
                continue
            if info.compress_size and info.file_size / max(info.compress_size, 1) > limits.max_ratio \
                    and info.file_size > 10 * 1024**2:
                raise LimitExceeded(f"{member} expands {info.file_size // max(info.compress_size, 1)} times (a zip bomb?)")
            if info.file_size > limits.max_member_bytes:
                raise LimitExceeded(f"{member} is larger than {limits.max_member_bytes // 1024**2} MB")
            try:
                with zf.open(info) as src:
                    tmp, size = _spool(src, limits.max_member_bytes)
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                yield Rejected(member, f"cannot be read from the ZIP ({exc.__class__.__name__})")
                continue
            yield from _walk_spooled(tmp, size, member, limits, budget, depth)


def _walk_gzip(f, name, limits, budget, depth):
    inner = name[:-3] if name.lower().endswith(".gz") else (name[:-4] + ".tar" if name.lower().endswith(".tgz") else name + "~")
    try:
        with gzip.GzipFile(fileobj=f) as gz:
            tmp, size = _spool(gz, limits.max_member_bytes)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield Rejected(name, f"damaged gzip file ({exc.__class__.__name__})")
        return
    yield from _walk_spooled(tmp, size, inner, limits, budget, depth)


def _walk_tar(f, name, limits, budget, depth):
    try:
        tf = tarfile.open(fileobj=f, mode="r:")
    except (tarfile.TarError, OSError) as exc:
        yield Rejected(name, f"damaged tar archive ({exc})")
        return
    with tf:
        while True:
            try:
                info = tf.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                yield Rejected(name, f"damaged tar archive ({exc.__class__.__name__})")
                return
            if info is None:
                return
            member = f"{name}/{display(info.name)}"
            if info.isdir():
                continue
            if not info.isfile():
                yield Rejected(member, "not a regular file (link or device); skipped")
                continue
            if info.size > limits.max_member_bytes:
                raise LimitExceeded(f"{member} is larger than {limits.max_member_bytes // 1024**2} MB")
            src = tf.extractfile(info)
            if src is None:
                continue
            tmp, size = _spool(src, limits.max_member_bytes)
            yield from _walk_spooled(tmp, size, member, limits, budget, depth)


def _walk_spooled(tmp: IO[bytes], size: int, name: str, limits: Limits, budget: Budget,
                  depth: int) -> Iterator[Member | Rejected]:
    """Walk a member spooled to a temporary file. A DICOM member is handed
    over open (the consumer closes it once sent, so several can be in
    flight); anything else is closed here."""
    handed_over = False
    try:
        if kind(_head(tmp), name) != "dicom":
            budget.take(size)
        for item in walk(tmp, name, limits, budget, depth + 1):
            if isinstance(item, Member) and item.file is tmp:
                handed_over = True
            yield item
    finally:
        if not handed_over:
            tmp.close()
