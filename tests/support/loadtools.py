"""Tools for driving the app as a real server under load: a multipart body
streamed from disk, the app set up and served by gunicorn in a subprocess,
and the RSS, open descriptors and CPU of a process tree. Shared by the
upload tests and the upload bench."""

from __future__ import annotations

import io
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
CLI = [sys.executable, "-c", "from ghimaging.cli import main; main()"]

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
                self._file = open(part, "rb")  # noqa: SIM115 - read across calls, closed when used up
            else:
                self._buf = part
        return bytes(out)



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(url: str, proc: subprocess.Popen, wait: float) -> bool:
    """Poll ``url + '/login'`` until it answers 200 (True), or until the
    served process ends or ``wait`` seconds pass (False: the caller stops
    it and says why, with its log)."""
    import requests

    deadline = time.monotonic() + wait
    while True:
        try:
            if requests.get(url + "/login", timeout=5).status_code == 200:
                return True
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def sign_in(url: str, username: str, password: str):
    """A ``requests`` session signed in through the login form, as a browser
    would (its CSRF token read from the page)."""
    import requests

    s = requests.Session()
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', s.get(url + "/login").text)
    assert token, "no CSRF token on the login page"
    r = s.post(url + "/login", data={"username": username, "password": password, "csrf_token": token.group(1)},
               allow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    return s


def stop_group(proc: subprocess.Popen, grace: float = 20) -> None:
    """End a served process started with ``start_new_session=True`` and all
    it started (gunicorn's master and workers): SIGTERM to its group, SIGKILL
    after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


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


def open_fds(pid: int) -> int:
    """Open file descriptors of a process (0 once it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class Sampler:
    """Summed RSS of a process tree every ``every`` seconds, in a thread
    (``measure=open_fds``: open descriptors instead; ``per_process`` then
    holds each process's peak)."""

    def __init__(self, pid: int, every: float = 0.05, measure: Callable[[int], int] = rss_kb):
        self.pid, self.every, self.measure = pid, every, measure
        self.samples: list[int] = []
        self.per_process: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            per = {p: self.measure(p) for p in tree(self.pid)}
            for p, v in per.items():
                self.per_process[p] = max(self.per_process.get(p, 0), v)
            self.samples.append(sum(per.values()))
            self._stop.wait(self.every)

    def __enter__(self) -> Sampler:
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


# -- the app served by gunicorn in a subprocess --------------------------------


class ServedApp:
    """ghimaging as an administrator sets it up (``ghimaging init``, a
    technologist, the Orthanc added) and serves it (``ghimaging serve``,
    gunicorn) on a free port. ``nofile``: the open-file limit of the served
    processes (``ulimit -n``); ``env``: more GHIMAGING_* settings."""

    PASSWORD = "s3cret-Passw0rd"

    def __init__(self, base: Path, orthanc, *, env: dict[str, str] | None = None, nofile: int | None = None,
                 workers: int = 1, timeout: int = 600):
        self.base, self.orthanc, self.nofile = base, orthanc, nofile
        self.workers, self.timeout = workers, timeout
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                    "GHIMAGING_INSTANCE_PATH": str(base / "instance"), "GHIMAGING_ORTHANC_SYNC_INTERVAL": "0",
                    "GHIMAGING_ORTHANC_RECONCILE_INTERVAL": "0", **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self._log = None

    def setup(self) -> ServedApp:
        run = dict(env=self.env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=120)
        subprocess.run([*CLI, "init"], **run)
        subprocess.run([*CLI, "create-user", "tech", "--role", "technologist", "--password-stdin"],
                       input="Given-by-admin-1\n", **run)
        o = self.orthanc
        subprocess.run([sys.executable, "-c", f"""
from ghimaging import create_app
from ghimaging.auth import service
from ghimaging.extensions import db
from ghimaging.orthanc import servers
with create_app().app_context():
    # create-user's password is the admin's choice: tech chooses their own
    service.change_own_password(service.find_user("tech"), "Given-by-admin-1", {self.PASSWORD!r})
    servers.add_server(label="Main", url={o.url!r}, username={o.username!r}, password={o.password!r})
    db.session.commit()  # this script is the boundary
"""], **run)
        return self

    def _limits(self) -> None:  # in the child, before exec
        if self.nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def start(self, wait: float = 60) -> ServedApp:
        port = free_port()
        self._log = open(self.base / "serve.log", "ab")  # noqa: SIM115 - open while the server runs
        self.proc = subprocess.Popen([*CLI, "serve", "--port", str(port), "--workers", str(self.workers),
                                      "--timeout", str(self.timeout)],
                                     env=self.env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=self._limits)
        self.url = f"http://127.0.0.1:{port}"
        if not wait_serving(self.url, self.proc, wait):
            self.stop()
            raise RuntimeError("ghimaging serve did not start:\n" + self.log_tail())
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def workers_pids(self) -> list[int]:
        return [p for p in tree(self.pid) if p != self.pid]

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return (self.base / "serve.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def signed_in(self):
        """A signed-in technologist's session, the upload form's CSRF token
        and the Orthanc server's id, read from the pages as a browser would."""
        s = sign_in(self.url, "tech", self.PASSWORD)
        page = s.get(self.url + "/upload/").text
        token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
        server_id = re.search(r'<select id="server_id" name="server_id"><option value="(\d+)"', page).group(1)
        return s, token, server_id

    def upload(self, files: list[tuple[str, Path]], session=None, timeout: float = 900):
        """POST the files as the upload page's script does, the body streamed from disk."""
        s, token, server_id = session or self.signed_in()
        body = MultipartFile({"csrf_token": token, "server_id": server_id, "request_id": ""}, files)
        return s.post(self.url + "/upload/?format=json", data=body, timeout=timeout,
                      headers={"Content-Type": body.content_type, "Accept": "application/json"})
