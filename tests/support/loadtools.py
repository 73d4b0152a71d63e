"""Tools for driving the app as a real server under load: a multipart body
streamed from disk, and the RSS and CPU of a process tree. Shared by the
upload memory test and the upload bench."""

from __future__ import annotations

import io
import os
import socket
import threading
import uuid
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class MultipartFile:
    """A multipart/form-data body read from disk piece by piece, length known
    up front (requests then sends Content-Length, as a browser does)."""

    def __init__(self, fields: dict[str, str], files: list[tuple[str, Path]]):
        self.boundary = "----ghimagingbench" + uuid.uuid4().hex
        b = self.boundary.encode()
        self.parts: list[bytes | Path] = []
        for key, value in fields.items():
            self.parts.append(b"--" + b + f'\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'.encode()
                              + value.encode() + b"\r\n")
        for shown, path in files:
            self.parts.append(b"--" + b + f'\r\nContent-Disposition: form-data; name="files"; filename="{shown}"\r\n'
                              "Content-Type: application/octet-stream\r\n\r\n".encode())
            self.parts.append(path)
            self.parts.append(b"\r\n")
        self.parts.append(b"--" + b + b"--\r\n")
        self.length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in self.parts)
        self._i, self._buf, self._file = 0, b"", None
        self._read, self._told = 0, None

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self.length

    # Werkzeug's test client measures an input stream with tell/seek(0, 2)/seek
    # back; only that is supported (the body is read once, front to back).
    def tell(self) -> int:
        return self._told if self._told is not None else self._read

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 2 and offset == 0:
            self._told = self.length
        elif whence == 0 and offset == self._read:
            self._told = None
        else:
            raise io.UnsupportedOperation("a MultipartFile is read once, front to back")
        return self.tell()

    def read(self, size: int = -1) -> bytes:
        data = self._read_some(size)
        self._read += len(data)
        return data

    def _read_some(self, size: int) -> bytes:
        size = 1024 * 1024 if size is None or size < 0 else size
        out = bytearray()
        while len(out) < size:
            if self._buf:
                take, self._buf = self._buf[:size - len(out)], self._buf[size - len(out):]
                out += take
                continue
            if self._file is not None:
                chunk = self._file.read(size - len(out))
                if chunk:
                    out += chunk
                    continue
                self._file.close()
                self._file = None
                continue
            if self._i >= len(self.parts):
                break
            part = self.parts[self._i]
            self._i += 1
            if isinstance(part, Path):
                self._file = open(part, "rb")
            else:
                self._buf = part
        return bytes(out)



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / CLK_TCK


class Sampler:
    """Summed RSS of a process tree every ``every`` seconds, in a thread."""

    def __init__(self, pid: int, every: float = 0.05):
        self.pid, self.every = pid, every
        self.samples: list[int] = []
        self.per_process: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            per = {p: rss_kb(p) for p in tree(self.pid)}
            for p, v in per.items():
                self.per_process[p] = max(self.per_process.get(p, 0), v)
            self.samples.append(sum(per.values()))
            self._stop.wait(self.every)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_kb(self) -> int:
        return max(self.samples) if self.samples else 0

    def peak_process_kb(self) -> dict[int, int]:
        return dict(self.per_process)
