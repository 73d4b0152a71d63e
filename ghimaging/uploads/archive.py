"""Walking what a user uploads: DICOM files, ZIP, gzip, tar and tar.gz,
with bounds on expansion so that no archive can fill the disk or the
memory (zip bombs, millions of entries) and no name is ever used as a path.

Every member is handed over as a small temporary file, so memory stays flat
whatever the size of the upload. A member that cannot be decompressed (a
damaged gzip stream, corrupt deflate data in a ZIP, a truncated tar) is a
:class:`Rejected` line naming the damage, never an exception: files sent
before it stay reported.
"""

from __future__ import annotations

import gzip
import lzma
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import IO

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from ..exceptions import Invalid

DICM_OFFSET = 128
CHUNK = 1024 * 1024
# A compressed member may expand more than ``Limits.max_ratio`` times only
# while it stays this small: a DICOM of blank pixels compresses very well.
RATIO_FREE_BYTES = 10 * 1024**2
# Compressed bytes are pulled from a gzip stream this many at a time, so the
# running ratio is known to within this many bytes and a bomb is stopped a
# few MB after the bound, not after a whole read-ahead buffer.
GZIP_PULL = 16 * 1024


def is_damage(exc: BaseException) -> bool:
    """Whether decompressing failed because the data is damaged: zlib.error
    (corrupt deflate data), EOFError (a stream cut short), BadZipFile,
    BadGzipFile or bz2's OSError without an errno (bad CRC, header or data),
    tarfile.ReadError (a tar cut short), lzma.LZMAError. An OSError with an
    errno (disk full, too many open files) is the server's trouble, not the
    file's, and is not damage."""
    if isinstance(exc, (zlib.error, EOFError, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError)):
        return True
    return isinstance(exc, OSError) and exc.errno is None


class LimitExceeded(Invalid):
    """The upload expands past a configured bound (ends the upload's report,
    never leaves :func:`ghimaging.uploads.service.process`)."""

    code = "too_large"


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
    max_ratio: int = 200  # uncompressed / compressed, per ZIP member or gzip stream


class Budget:
    def __init__(self, limits: Limits):
        self.limits = limits
        self.files = 0
        self.bytes = 0

    def take(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if self.files > self.limits.max_files:
            raise LimitExceeded(_("more than %(count)s files in the upload", count=self.limits.max_files))
        if self.bytes > self.limits.max_expanded_bytes:
            raise LimitExceeded(_("the upload expands to more than %(mb)s MB",
                                   mb=self.limits.max_expanded_bytes // 1024**2))


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


def check_member(name: str, expanded: int, compressed: int, limits: Limits) -> None:
    """The one rule for a compressed member, a ZIP entry or a gzip stream:
    no more than ``max_ratio`` times its compressed size once past
    ``RATIO_FREE_BYTES``, and no more than ``max_member_bytes``. A ZIP entry
    is checked on the sizes its directory declares before it is opened; a
    gzip stream declares nothing trustworthy, so it is checked as it expands
    and stops as soon as the rule is broken."""
    if expanded > RATIO_FREE_BYTES and expanded > limits.max_ratio * max(compressed, 1):
        raise LimitExceeded(_("%(name)s expands %(ratio)s times (a zip bomb?)", name=name,
                               ratio=expanded // max(compressed, 1)))
    if expanded > limits.max_member_bytes:
        raise LimitExceeded(_("%(name)s is larger than %(mb)s MB", name=name, mb=limits.max_member_bytes // 1024**2))


class _Counted:
    """A read-only view of a compressed stream that counts what was pulled
    from it, a little at a time (see ``GZIP_PULL``)."""

    def __init__(self, f: IO[bytes]):
        self.f = f
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(GZIP_PULL if size is None or size < 0 else min(size, GZIP_PULL))
        self.count += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.f.seek(offset, whence)  # GzipFile rewinds only to offset 0

    def tell(self) -> int:
        return self.f.tell()


def _spool(src: IO[bytes] | gzip.GzipFile, limit: int,
           check: Callable[[int], None] | None = None) -> tuple[IO[bytes], int]:
    """Copy ``src`` to a temporary file, refusing more than ``limit`` bytes;
    ``check(size)`` after every chunk may refuse sooner (it raises)."""
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller open
    size = 0
    try:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise LimitExceeded(_("a file expands to more than %(mb)s MB", mb=limit // 1024**2))
            if check is not None:
                check(size)
            tmp.write(chunk)
    except BaseException:
        tmp.close()
        raise
    tmp.seek(0)
    return tmp, size


def damaged(what: str, why: str, exc: BaseException, sent: str = "nothing of it was sent") -> str:
    """The detail line for a damaged archive or member: what, why, and what
    was sent (a member is spooled whole before it is sent, so usually nothing)."""
    text = str(exc).strip() or exc.__class__.__name__
    return f"damaged {what}: {why} ({text[:120]}); {sent}."


def display(name: str) -> str:
    """A member name for people: no control characters, forward slashes."""
    clean = "".join(c if c.isprintable() else "?" for c in name.replace("\\", "/"))
    return clean.lstrip("/")[:300] or "(no name)"


Walk = Generator[Member | Rejected, None, None]


def walk(f: IO[bytes], name: str, limits: Limits, budget: Budget | None = None, depth: int = 0) -> Walk:
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


def _walk_zip(f: IO[bytes], name: str, limits: Limits, budget: Budget, depth: int) -> Walk:
    try:
        zf = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield Rejected(name, damaged("archive", "its ZIP directory cannot be read", exc))
        return
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            member = f"{name}/{display(info.filename)}"
            if info.flag_bits & 0x1:
                yield Rejected(member, "encrypted ZIP member")
                continue
            check_member(member, info.file_size, info.compress_size, limits)
            try:
                with zf.open(info) as src:
                    tmp, size = _spool(src, limits.max_member_bytes)
            except NotImplementedError:
                yield Rejected(member, "compressed with a method this server cannot read; not sent")
                continue
            except Exception as exc:
                if not is_damage(exc):
                    raise
                yield Rejected(member, damaged("file", "its compressed data in the ZIP is corrupt", exc))
                continue
            yield from _walk_spooled(tmp, size, member, limits, budget, depth)


def _walk_gzip(f: IO[bytes], name: str, limits: Limits, budget: Budget, depth: int) -> Walk:
    inner = name[:-3] if name.lower().endswith(".gz") else (name[:-4] + ".tar" if name.lower().endswith(".tgz") else name + "~")
    src = _Counted(f)
    try:
        with gzip.GzipFile(fileobj=src, mode="rb") as gz:
            tmp, size = _spool(gz, limits.max_member_bytes,
                               check=lambda size: check_member(name, size, src.count, limits))
    except Exception as exc:
        if not is_damage(exc):
            raise
        yield Rejected(name, damaged("archive", "its gzip data is corrupt or cut short", exc))
        return
    yield from _walk_spooled(tmp, size, inner, limits, budget, depth)


def _walk_tar(f: IO[bytes], name: str, limits: Limits, budget: Budget, depth: int) -> Walk:
    try:
        tf = tarfile.open(fileobj=f, mode="r:")  # noqa: SIM115 - closed by the with below
    except Exception as exc:
        if not is_damage(exc):
            raise
        yield Rejected(name, damaged("archive", "its tar headers cannot be read", exc))
        return
    with tf:
        while True:
            try:
                info = tf.next()
            except Exception as exc:
                if not is_damage(exc):
                    raise
                yield Rejected(name, damaged("archive", "the rest of the tar cannot be read", exc,
                                             "the files listed before it are as shown"))
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
                raise LimitExceeded(_("%(name)s is larger than %(mb)s MB", name=member,
                                       mb=limits.max_member_bytes // 1024**2))
            try:
                src = tf.extractfile(info)
                if src is None:
                    continue
                tmp, size = _spool(src, limits.max_member_bytes)
            except Exception as exc:
                if not is_damage(exc):
                    raise
                yield Rejected(member, damaged("file", "the tar ends inside it", exc))
                return
            yield from _walk_spooled(tmp, size, member, limits, budget, depth)


def _walk_spooled(tmp: IO[bytes], size: int, name: str, limits: Limits, budget: Budget, depth: int) -> Walk:
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
