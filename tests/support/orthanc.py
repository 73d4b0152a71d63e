"""A real Orthanc (Debian's ``orthanc`` package) run as a subprocess for tests.

Each :class:`OrthancServer` has its own folder holding the generated
configuration, the storage area, the SQLite index, the log and (optionally)
the worklist folder, and listens on free loopback ports. Ports stay the same
across ``restart()`` and ``wipe()``, so an app configured with ``url`` keeps
talking to the same server.

    with OrthancServer(tmp_path / "orthanc", worklists=True) as orthanc:
        orthanc.upload(dicomgen.to_bytes(ds))
        requests.get(orthanc.url + "/studies", auth=orthanc.auth)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ORTHANC_BIN = os.environ.get("GHIMAGING_TEST_ORTHANC", "/usr/sbin/Orthanc")
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
WORKLISTS_PLUGIN = PLUGIN_DIR / "libModalityWorklists.so"
# Debian's orthanc-gdcm: decodes JPEG 2000 and the other compressed transfer
# syntaxes Orthanc's own decoder answers 415 for (checked on 1.10.1).
GDCM_PLUGIN = PLUGIN_DIR / "libOrthancGdcm.so"

# Orthanc exits with these when a port is taken (checked on 1.10.1).
_PORT_IN_USE = ("(code 2003)", "(code 2004)")
_STARTED = "Orthanc has started"
_LIVE: set[OrthancServer] = set()  # strong references: a forgotten server is still killed


@atexit.register
def _kill_leftovers() -> None:
    """No Orthanc outlives the test process, even when a test forgot to stop one."""
    for server in list(_LIVE):
        server.cleanup()


class OrthancError(RuntimeError):
    """Orthanc is missing, did not start, or answered an upload with an error."""


def find_free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the caller must still expect races)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    """Start, stop, kill, restart and wipe a real Orthanc.

    ``workdir``: folder for everything (default: a new temporary folder,
    removed by ``cleanup()``/the context manager). ``dicom_modalities`` goes
    to ``DicomModalities`` as is. ``extra_config`` is merged last into the
    generated configuration (for example ``{"OverwriteInstances": True}``).
    ``default_encoding``: Orthanc's ``DefaultEncoding`` (None keeps its own
    default, Latin1, under which worklist answers are transcoded to
    ISO_IR 100 and a Chinese name comes back as ``^``; use ``"Utf8"``).
    ``gdcm``: load Debian's orthanc-gdcm plugin (default, as a clinic's
    Orthanc should: without it JPEG 2000 images cannot be shown); False
    gives Orthanc's bare decoder.
    """

    def __init__(
        self,
        workdir: str | os.PathLike | None = None,
        *,
        username: str = "ghimaging",
        password: str = "orthanc-pw",
        name: str = "ghimaging-test",
        aet: str = "ORTHANC",
        stable_age: int = 1,
        dicom_modalities: dict[str, Any] | None = None,
        worklists: bool = False,
        worklist_dir: str | os.PathLike | None = None,
        always_allow_find_worklist: bool = True,
        default_encoding: str | None = None,
        gdcm: bool = True,
        http_port: int | None = None,
        dicom_port: int | None = None,
        extra_config: dict[str, Any] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="orthanc-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.username, self.password = username, password
        self.name, self.aet = name, aet
        self.stable_age = stable_age
        self.dicom_modalities = dict(dicom_modalities or {})
        self.worklists = worklists or worklist_dir is not None
        self.worklist_dir: Path | None = None
        if self.worklists:
            self.worklist_dir = Path(worklist_dir) if worklist_dir else self.workdir / "worklists"
        self.always_allow_find_worklist = always_allow_find_worklist
        self.default_encoding = default_encoding
        self.gdcm = gdcm
        self._fixed_ports = http_port is not None or dicom_port is not None
        self.http_port = http_port or find_free_port()
        self.dicom_port = dicom_port or find_free_port()
        self.extra_config = dict(extra_config or {})
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "orthanc.json"
        self.log_path = self.workdir / "orthanc.log"
        self.storage_dir = self.workdir / "storage"
        self.index_dir = self.workdir / "index"
        self.proc: subprocess.Popen | None = None
        self._session: requests.Session | None = None

    # -- what tests use ---------------------------------------------------
    @property
    def url(self) -> str:
        """Base REST URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def auth(self) -> tuple[str, str]:
        return (self.username, self.password)

    @property
    def session(self) -> requests.Session:
        """A session that sends the credentials (for the test's own reads)."""
        if self._session is None:
            self._session = requests.Session()
            self._session.auth = self.auth
        return self._session

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, **kwargs: Any) -> Any:
        """``GET url + path`` with auth; the decoded JSON, raising on an HTTP error."""
        kwargs.setdefault("timeout", 30)
        response = self.session.get(self.url + path, **kwargs)
        response.raise_for_status()
        return response.json()

    def changes_last(self) -> int:
        return self.get("/changes?last")["Last"]

    def upload(self, data: bytes | str | os.PathLike | Any) -> dict:
        """``POST /instances`` with a DICOM file (path, bytes, or pydicom Dataset).

        Returns Orthanc's answer (``ID``, ``ParentStudy``, ``Status``...);
        raises :class:`OrthancError` on an HTTP error.
        """
        if hasattr(data, "save_as"):  # a pydicom Dataset
            from .dicomgen import to_bytes

            data = to_bytes(data)
        elif not isinstance(data, (bytes, bytearray)):
            data = Path(data).read_bytes()
        response = self.session.post(self.url + "/instances", data=bytes(data), timeout=60,
                                     headers={"Content-Type": "application/dicom"})
        if response.status_code != 200:
            raise OrthancError(f"upload answered {response.status_code}: {response.text[:500]}")
        return response.json()

    def upload_many(self, datasets) -> list[dict]:
        return [self.upload(ds) for ds in datasets]

    def delete_study(self, orthanc_id: str) -> None:
        response = self.session.delete(f"{self.url}/studies/{orthanc_id}", timeout=30)
        response.raise_for_status()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    # -- configuration ----------------------------------------------------
    def config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "Name": self.name,
            "StorageDirectory": str(self.storage_dir),
            "IndexDirectory": str(self.index_dir),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "StableAge": self.stable_age,
            "ConcurrentJobs": 1,
            "HttpThreadsCount": 10,
            "DicomThreadsCount": 2,
            "WebDavEnabled": False,
            "SyncStorageArea": False,  # a killed process still leaves its writes to the OS
            "SaveJobs": False,
            "DicomModalities": self.dicom_modalities,
            "Plugins": [],
        }
        if self.default_encoding:
            cfg["DefaultEncoding"] = self.default_encoding
        if self.gdcm:
            cfg["Plugins"].append(str(GDCM_PLUGIN))
        if self.worklists:
            cfg["Plugins"].append(str(WORKLISTS_PLUGIN))
            cfg["Worklists"] = {"Enable": True, "Database": str(self.worklist_dir)}
            cfg["DicomAlwaysAllowFindWorklist"] = self.always_allow_find_worklist
        cfg.update(self.extra_config)
        return cfg

    def write_config(self) -> None:
        self.config_path.write_text(json.dumps(self.config(), indent=2))

    # -- lifecycle --------------------------------------------------------
    def start(self) -> OrthancServer:
        """Start Orthanc and wait until ``GET /system`` answers with our credentials.

        If auto-picked ports turn out taken, picks new ones (up to 5 tries).
        Raises :class:`OrthancError` with the end of the log if Orthanc dies
        or does not answer within ``start_timeout`` seconds.
        """
        if self.running:
            return self
        if not Path(ORTHANC_BIN).is_file():
            raise OrthancError(
                f"Orthanc is not installed ({ORTHANC_BIN} missing): "
                "apt-get install orthanc (the test command does this)")
        if self.gdcm and not GDCM_PLUGIN.is_file():
            raise OrthancError(
                f"Orthanc's GDCM plugin is not installed ({GDCM_PLUGIN} missing): "
                "apt-get install orthanc-gdcm (the test command does this)")
        if self.worklists:
            self.worklist_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.write_config()
            self._spawn()
            outcome = self._wait_started(offset)
            if outcome == "ok":
                self._fixed_ports = True  # later starts keep the URL the app knows
                return self
            if outcome == "port-in-use" and not self._fixed_ports and attempt < 4:
                self.http_port, self.dicom_port = find_free_port(), find_free_port()
                continue
            break
        self._reap()
        raise OrthancError(f"Orthanc did not start ({outcome}); log {self.log_path}:\n"
                           + self.log_tail())

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [ORTHANC_BIN, str(self.config_path)], cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        _LIVE.add(self)

    def _log_since(self, offset: int) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def _wait_started(self, offset: int) -> str:
        deadline = time.monotonic() + self.start_timeout
        probe = requests.Session()
        probe.auth = self.auth
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    log = self._log_since(offset)
                    if any(code in log for code in _PORT_IN_USE):
                        return "port-in-use"
                    return f"exited with status {self.proc.returncode}"
                # The log line guards against answering for another Orthanc
                # that took our port first.
                if _STARTED in self._log_since(offset):
                    try:
                        response = probe.get(self.url + "/system", timeout=2)
                        if response.status_code == 200 and self.proc.poll() is None:
                            return "ok"
                    except requests.RequestException:
                        pass
                time.sleep(0.05)
            return f"no answer on {self.url}/system within {self.start_timeout} s"
        finally:
            probe.close()

    def _reap(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        _LIVE.discard(self)
        if self._session is not None:
            self._session.close()  # pooled connections point at the old process
            self._session = None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM and wait (about 3.5 s); SIGKILL if still running after ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reap()

    def restart(self, graceful: bool = True) -> OrthancServer:
        """Stop (or kill, with ``graceful=False``) if running, then start on the same ports."""
        self.stop() if graceful else self.kill()
        return self.start()

    def wipe(self) -> OrthancServer:
        """Kill, delete storage and index, start: a fresh database (``/changes`` Last 0)."""
        self.kill()
        shutil.rmtree(self.storage_dir, ignore_errors=True)
        shutil.rmtree(self.index_dir, ignore_errors=True)
        return self.start()

    def cleanup(self) -> None:
        """Kill and, if the folder was a temporary one made here, delete it.

        SIGKILL, not ``stop()``: a graceful stop of Orthanc 1.10.1 takes about
        3.5 s (its HTTP and DICOM servers poll), and nothing is kept anyway.
        """
        self.kill()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OrthancServer {self.url} dicom={self.dicom_port} {state} {self.workdir}>"


class SilentServer:
    """A TCP port that accepts connections and never answers (for timeout tests)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accepted(self) -> int:
        """Connections accepted so far (each one a caller now waiting)."""
        return len(self._conns)

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._conns.append(conn)  # held open, never read, never written

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2)
        for conn in self._conns:
            conn.close()
        self._sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TricklingServer(SilentServer):
    """A TCP port that answers one byte every ``interval`` seconds and never
    finishes: each byte comes well within any read timeout, so only a
    deadline for the whole call ends the wait.

    ``part="headers"``: a status line, then an endless header line;
    ``part="body"``: whole headers at once (``Content-Length`` 1 MB), then
    the body a byte at a time.
    """

    def __init__(self, interval: float = 1.0, part: str = "headers") -> None:
        assert part in ("headers", "body")
        self.interval, self.part = interval, part
        super().__init__()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            self._conns.append(conn)
            threading.Thread(target=self._trickle, args=(conn,), name="trickling-server", daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        conn.settimeout(self.interval)
        request = b""
        try:
            while b"\r\n\r\n" not in request and not self._closed.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                request += chunk
            if self.part == "headers":
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 1048576\r\n\r\n")
            while not self._closed.wait(self.interval):
                conn.sendall(b"a")
        except OSError:  # the caller gave up and closed the connection
            return


def c_store(orthanc: OrthancServer, ds: Any) -> None:
    """The modality's C-STORE of ``ds`` to ``orthanc`` (pynetdicom, AE
    XRAY1); fails unless Orthanc answers Success."""
    from pydicom.uid import ExplicitVRLittleEndian
    from pynetdicom import AE

    ae = AE(ae_title="XRAY1")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(ds.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", orthanc.dicom_port, ae_title=orthanc.aet)
    assert assoc.is_established, orthanc.log_tail()
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    assert status is not None and status.Status == 0x0000, f"C-STORE answered {status}\n{orthanc.log_tail()}"
