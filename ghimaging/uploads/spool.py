"""Every file part of one upload in one temporary file.

Werkzeug asks the request for a new stream for each file part of a
multipart body; the app's default is a temporary file per part, all open
until the request ends. A folder of 1,100 files then holds 1,100 descriptors
and fails with "Too many open files" under the common ``ulimit -n 1024``
(20,200 under a 20,000 limit), long before ``UPLOAD_MAX_FILES``. Here every
part is a window (start, end) onto one shared, already unlinked temporary
file: one descriptor whatever the number of parts, nothing held in memory.

Werkzeug writes the parts one after another, so each window is appended at
the end of the file; afterwards the windows are read with ``os.pread``,
which keeps no shared file position, so the threads that send files to
Orthanc can read different parts at once.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer


class Spool:
    """One unlinked temporary file holding every part, closed at the end of
    the request (see ``routes``)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close(), at the end of the request
        self.fd = self._file.fileno()
        self.end = 0
        self._writer: Part | None = None
        self.parts = 0

    def part(self, total_content_length: int | None = None, content_type: str | None = None,
             filename: str | None = None, content_length: int | None = None) -> Part:
        """A new part at the end of the file; the signature of Werkzeug's
        ``Request._get_file_stream``, so it can stand in for it."""
        if self._file.closed:
            raise ValueError("the upload spool is closed")
        self._writer = Part(self, self.end)
        self.parts += 1
        return self._writer

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed


class Part(io.RawIOBase):
    """A readable, seekable window onto the spool; writable only while it is
    the last part (Werkzeug fills it before starting the next one). It has
    no ``fileno``: a reader measuring it (``requests`` sets Content-Length
    this way) must see the part, not the whole spool."""

    def __init__(self, spool: Spool, start: int):
        super().__init__()
        self._spool = spool
        self._start = start
        self._size = 0
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._spool._writer is self

    def write(self, data: Buffer) -> int:
        if self.closed:
            raise ValueError("write to a closed part")
        if self._spool._writer is not self:
            raise io.UnsupportedOperation("parts are written one after another")
        view = memoryview(data).cast("B")
        offset = self._start + self._size
        while view:
            n = os.pwrite(self._spool.fd, view, offset)
            offset += n
            view = view[n:]
        written = offset - self._start - self._size
        self._size += written
        self._spool.end = offset
        return written

    def read(self, size: int | None = -1) -> bytes:
        if self.closed:
            raise ValueError("read from a closed part")
        left = self._size - self._pos
        if size is None or size < 0 or size > left:
            size = left
        if size <= 0:
            return b""
        out = []
        got = 0
        while got < size:  # pread may return less than asked (rarely, on a regular file)
            data = os.pread(self._spool.fd, size - got, self._start + self._pos + got)
            if not data:
                break
            out.append(data)
            got += len(data)
        self._pos += got
        return out[0] if len(out) == 1 else b"".join(out)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Buffer) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if self.closed:
            raise ValueError("seek on a closed part")
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence {whence!r}")
        if pos < 0:
            raise OSError(22, "negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        if self.closed:
            raise ValueError("tell on a closed part")
        return self._pos

    def truncate(self, size: int | None = None) -> int:
        raise io.UnsupportedOperation("a part cannot be truncated")

    @property
    def size(self) -> int:
        return self._size
