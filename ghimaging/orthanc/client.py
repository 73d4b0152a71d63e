"""The only code that speaks HTTP to Orthanc.

One ``requests.Session`` per server (connection reuse matters on a Pi),
connect and read timeouts on every call, retries with backoff for idempotent
reads only, and four exceptions that the rest of the code handles.

A read timeout bounds each socket read, not a call: an Orthanc (or anything
on its port) that sends a byte now and then keeps a call going for ever. So
a call made while a person waits also has a **deadline** for the whole call
(connect, headers and body): ``OrthancClient(total_timeout=...)`` per call,
or ``with deadline(seconds):`` for every call made inside, by any client in
this thread. A watchdog thread shuts the connection's socket down when the
deadline passes, which ends a blocked read at once; the call then raises
:class:`TimedOut`. For a streamed answer (ZIP, PDF) the deadline covers the
wait for the headers; its body is bounded by the read timeout (an idle
timeout). Calls without a deadline (the sync thread) behave as before.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError
from urllib3.util.retry import Retry

DEFAULT_TIMEOUT = (3.05, 30.0)  # connect, read


class OrthancError(Exception):
    """Base class; ``str()`` is a message fit for a person."""


class Unreachable(OrthancError):
    """Connection refused, DNS failure, TLS failure or timeout."""


class TimedOut(Unreachable):
    """Orthanc did not answer, or not completely, within the time allowed
    (a read timeout or the call's deadline)."""


class Unauthorized(OrthancError):
    """401/403: wrong username or password."""


class NotFound(OrthancError):
    """404: the resource is not (or no longer) in Orthanc."""


class BadAnswer(OrthancError):
    """An answer that is not what Orthanc gives: not JSON, 5xx, wrong shape.
    ``status`` is the HTTP status when Orthanc answered with an error (415:
    it cannot decode the image), else None."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


# -- deadlines ------------------------------------------------------------------

_scope: contextvars.ContextVar[float | None] = contextvars.ContextVar("orthanc_deadline", default=None)


@contextmanager
def deadline(seconds: float | None = None, *, at: float | None = None) -> Iterator[float | None]:
    """Every Orthanc call made inside ends by ``seconds`` from now (or by the
    ``time.monotonic()`` value ``at``), whichever client makes it; nested
    scopes keep the earliest end. Yields that end. Scopes follow the context,
    so a thread started inside does not inherit one: give its client a
    ``total_timeout`` instead."""
    ends = [t for t in (_scope.get(), at, None if seconds is None else time.monotonic() + seconds)
            if t is not None]
    end = min(ends) if ends else None
    token = _scope.set(end)
    try:
        yield end
    finally:
        _scope.reset(token)


def remaining() -> float | None:
    """Seconds left in the current :func:`deadline` scope (None outside one)."""
    end = _scope.get()
    return None if end is None else end - time.monotonic()


def iter_body(resp: requests.Response, *, idle: float, floor: int = 64 * 1024,
              size: int = 256 * 1024) -> Iterator[bytes]:
    """The body of a streamed answer (``stream=True``) in chunks as they come.

    A read waits at most the call's read timeout (give ``idle`` the same
    value); and for every ``idle`` seconds spent reading at least ``floor``
    bytes must arrive, so an Orthanc that sends a byte now and then cannot
    keep a download, and the thread serving it, going for ever (64 KB per
    30 s is far below any real Orthanc). Time spent by the consumer between
    chunks (a slow browser) does not count. Raises :class:`TimedOut` or
    :class:`Unreachable`; an answer cut short raises too, never ends quietly.
    The caller closes ``resp``."""
    raw = resp.raw
    reading, got = 0.0, 0
    while True:
        started = time.monotonic()
        try:
            chunk = raw.read1(size, decode_content=True)
        except (ReadTimeoutError, TimeoutError):
            raise TimedOut(f"Orthanc stopped sending for {idle:.0f} s.") from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(f"Orthanc's answer broke off ({exc.__class__.__name__}).") from None
        if not chunk:
            return
        reading += time.monotonic() - started
        got += len(chunk)
        if reading >= idle:
            if got < floor:
                raise TimedOut(f"Orthanc sent only {got} bytes in {reading:.0f} s.")
            reading, got = 0.0, 0
        yield chunk


class _Guard:
    __slots__ = ("at", "cancelled", "fired", "sock")

    def __init__(self, sock: socket.socket, at: float):
        self.sock, self.at, self.fired, self.cancelled = sock, at, False, False


class _Watchdog:
    """One thread per process that shuts down the sockets of calls whose
    deadline passed (a blocked ``recv`` in another thread then returns at
    once). Started on first use, and again in a forked child, which does not
    inherit the parent's threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Guard]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, sock: socket.socket, at: float) -> _Guard:
        guard = _Guard(sock, at)
        with self._cond:
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._heap = []
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="orthanc-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (at, next(self._seq), guard))
            self._cond.notify()
        return guard

    def cancel(self, guard: _Guard) -> None:
        """After this returns the guard never fires (it is dropped lazily)."""
        with self._cond:
            guard.cancelled = True

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                guard = heapq.heappop(self._heap)[2]
                guard.fired = True
                try:
                    guard.sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # already closed
                    pass


_WATCHDOG = _Watchdog()
_local = threading.local()  # the deadline of the call this thread is making, and its guards


def _guard(sock: socket.socket | None) -> None:
    at = getattr(_local, "deadline", None)
    if at is not None and sock is not None:
        _local.guards.append(_WATCHDOG.watch(sock, at))


class _GuardedConnection:
    """Puts the socket of every call made under a deadline in the watchdog's
    care: a new connection once connected (before TLS, headers and body), a
    reused one before its request is sent."""

    def _new_conn(self):  # type: ignore[no-untyped-def]
        at = getattr(_local, "deadline", None)
        if at is not None and at <= time.monotonic():  # e.g. a retry after the deadline passed
            raise ConnectTimeoutError(self, "the deadline passed before connecting")
        sock = super()._new_conn()  # type: ignore[misc]
        _guard(sock)
        return sock

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _guard(self.sock)  # type: ignore[attr-defined]
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter with connections the deadline watchdog can stop."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):  # type: ignore[no-untyped-def]
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager


def check_url(url: str) -> str:
    """A normalised base URL, or ValueError with a message for a person."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("Give the full address, like http://127.0.0.1:8042")
    if parts.query or parts.fragment:
        raise ValueError("The address must not contain ? or #.")
    if parts.username or parts.password:
        raise ValueError("Put the username and password in their own fields, not in the address.")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("The port must be a number from 1 to 65535.") from None
    if port == 0:
        raise ValueError("The port must be a number from 1 to 65535.")
    return url.rstrip("/")


class OrthancClient:
    """``timeout``: (connect, read) seconds, the read one per socket read.
    ``total_timeout``: seconds for each whole call (see the module's
    docstring); None leaves only the timeouts and any :func:`deadline` scope."""

    def __init__(self, url: str, username: str = "", password: str = "",
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, retries: int = 2,
                 total_timeout: float | None = None):
        self.url = check_url(url)
        self.timeout = timeout
        self.total_timeout = total_timeout
        self.request_count = 0  # for sync summaries and benches
        self.session = requests.Session()
        if username or password:
            self.session.auth = (username, password)
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=0.3,
                      allowed_methods=frozenset({"GET", "HEAD"}), status_forcelist=(502, 503, 504),
                      raise_on_status=False)
        adapter = _Adapter(max_retries=retry, pool_maxsize=4)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ----------------------------------------------------------

    def _request(self, method: str, path: str, *, stream: bool = False, total: float | None = None,
                 **kw) -> requests.Response:
        """One call. ``total`` (else the client's ``total_timeout``) and any
        :func:`deadline` scope bound it as a whole; for ``stream=True`` up to
        the headers, the body then being bounded by the read timeout."""
        self.request_count += 1
        timeout = kw.pop("timeout", self.timeout)
        started = time.monotonic()
        total = self.total_timeout if total is None else total
        ends = [t for t in (_scope.get(), None if total is None else started + total) if t is not None]
        end = min(ends) if ends else None
        if end is not None:
            left = end - started
            if left <= 0:
                raise TimedOut(f"Orthanc at {self.url} did not answer in time (no time was left to ask).")
            timeout = (min(timeout[0], left), min(timeout[1], left))
        _local.deadline, _local.guards = end, []
        try:
            resp = self.session.request(method, self.url + path, timeout=timeout, stream=stream, **kw)
        except requests.Timeout:
            raise self._late(started) from None
        except requests.exceptions.SSLError as exc:
            if self._fired():
                raise self._late(started) from None
            raise Unreachable(f"TLS error talking to {self.url}: {exc.__class__.__name__}.") from None
        except requests.ConnectionError as exc:
            text = str(exc).lower()
            if self._fired() or "timed out" in text or "timeout" in text:  # a read timeout after the retries
                raise self._late(started) from None
            reason = "connection refused" if "refused" in text else "cannot connect"
            raise Unreachable(f"Orthanc at {self.url}: {reason}.") from None
        except requests.RequestException as exc:
            if self._fired():
                raise self._late(started) from None
            raise Unreachable(f"Orthanc at {self.url}: {exc.__class__.__name__}.") from None
        finally:
            fired = self._release()
        if fired:  # the answer may look whole and still be cut short: never use it
            resp.close()
            raise self._late(started)
        if resp.status_code in (401, 403):
            resp.close()
            raise Unauthorized("Orthanc refused the username or password.")
        if resp.status_code == 404:
            resp.close()
            raise NotFound(f"{path} not found in Orthanc.")
        if resp.status_code >= 400:
            detail = ""
            if not stream:
                try:
                    body = resp.json()
                    detail = body.get("Details") or body.get("Message") or ""
                except ValueError:
                    detail = resp.text[:200]
            resp.close()
            raise BadAnswer(f"Orthanc answered {resp.status_code} to {method} {path}"
                            + (f": {detail}" if detail else "."), status=resp.status_code)
        return resp

    @staticmethod
    def _fired() -> bool:
        return any(g.fired for g in getattr(_local, "guards", ()))

    @staticmethod
    def _release() -> bool:
        """Stop watching this thread's call; True when its deadline struck."""
        guards = getattr(_local, "guards", [])
        for guard in guards:
            _WATCHDOG.cancel(guard)
        _local.deadline, _local.guards = None, []
        return any(g.fired for g in guards)

    def _late(self, started: float) -> TimedOut:
        return TimedOut(f"Orthanc at {self.url} did not answer in time "
                        f"(gave up after {time.monotonic() - started:.0f} s).")

    def get_json(self, path: str, **params: Any) -> Any:
        resp = self._request("GET", path, params=params or None)
        try:
            return resp.json()
        except ValueError:
            raise BadAnswer(f"{self.url}{path} did not answer JSON; is this an Orthanc server?") from None

    def post_json(self, path: str, body: Any) -> Any:
        resp = self._request("POST", path, json=body)
        try:
            return resp.json()
        except ValueError:
            raise BadAnswer(f"{self.url}{path} did not answer JSON.") from None

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    # -- Orthanc resources ---------------------------------------------------

    def system(self) -> dict[str, Any]:
        data = self.get_json("/system")
        if not isinstance(data, dict) or "Version" not in data or "ApiVersion" not in data:
            raise BadAnswer(f"{self.url} answers, but it is not an Orthanc server (no Version in /system).")
        return data

    def last_change(self) -> int:
        data = self.get_json("/changes", last="")
        return self._changes_shape(data)["Last"]

    def changes(self, since: int, limit: int = 100) -> dict[str, Any]:
        return self._changes_shape(self.get_json("/changes", since=since, limit=limit))

    @staticmethod
    def _changes_shape(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not {"Changes", "Done", "Last"} <= set(data):
            raise BadAnswer("Orthanc's /changes answer has an unexpected shape.")
        return data

    def plugins(self) -> list[str]:
        data = self.get_json("/plugins")
        if not isinstance(data, list):
            raise BadAnswer("Orthanc's /plugins answer has an unexpected shape.")
        return [str(p) for p in data]

    def page(self, level: str, since: int, limit: int, expand: bool = True) -> list[Any]:
        """One page of ``/patients``, ``/studies`` or ``/series`` (expanded)."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if expand:
            params["expand"] = ""
        data = self.get_json(f"/{level}", **params)
        if not isinstance(data, list):
            raise BadAnswer(f"Orthanc's /{level} answer has an unexpected shape.")
        return data

    def iter_pages(self, level: str, limit: int = 500, expand: bool = True) -> Iterator[list[Any]]:
        since = 0
        while True:
            items = self.page(level, since, limit, expand)
            if not items:
                return
            yield items
            if len(items) < limit:
                return
            since += len(items)

    def study(self, orthanc_id: str) -> dict[str, Any]:
        return self.get_json(f"/studies/{orthanc_id}")

    def study_series(self, orthanc_id: str) -> list[dict[str, Any]]:
        return self.get_json(f"/studies/{orthanc_id}/series")

    def series(self, orthanc_id: str) -> dict[str, Any]:
        return self.get_json(f"/series/{orthanc_id}")

    def patient(self, orthanc_id: str) -> dict[str, Any]:
        return self.get_json(f"/patients/{orthanc_id}")

    def instance(self, orthanc_id: str) -> dict[str, Any]:
        return self.get_json(f"/instances/{orthanc_id}")

    def series_instances(self, orthanc_id: str) -> list[dict[str, Any]]:
        return self.get_json(f"/series/{orthanc_id}/instances")

    def find_studies(self, query: dict[str, str]) -> list[dict[str, Any]]:
        return self.post_json("/tools/find", {"Level": "Study", "Query": query, "Expand": True})

    def preview(self, instance_id: str) -> tuple[bytes, str]:
        resp = self._request("GET", f"/instances/{instance_id}/preview", headers={"Accept": "image/png"})
        return resp.content, resp.headers.get("Content-Type", "image/png")

    def rendered(self, instance_id: str) -> tuple[bytes, str]:
        resp = self._request("GET", f"/instances/{instance_id}/rendered", headers={"Accept": "image/png"})
        return resp.content, resp.headers.get("Content-Type", "image/png")

    def instance_metadata(self, orthanc_id: str) -> dict[str, str]:
        """Orthanc's own metadata of an instance (``SopClassUid``,
        ``TransferSyntax``…), read from its index without opening the file."""
        data = self.get_json(f"/instances/{orthanc_id}/metadata", expand="")
        if not isinstance(data, dict):
            raise BadAnswer("Orthanc's instance metadata answer has an unexpected shape.")
        return {str(k): str(v) for k, v in data.items()}

    def instance_tag(self, orthanc_id: str, tag: str) -> str | None:
        """The value of one top-level element (``"0028-1051"``) as text, or
        None when the instance lacks it. The instance must exist: Orthanc
        answers 404 for a missing element and for a missing instance alike."""
        try:
            resp = self._request("GET", f"/instances/{orthanc_id}/content/{tag}")
        except NotFound:
            return None
        return resp.content.decode("latin-1").strip("\x00 ")

    def pdf(self, orthanc_id: str, idle: float = 120) -> requests.Response:
        """The PDF inside an encapsulated PDF instance, streamed (Orthanc
        1.10.1 answers 404 for any other instance); the caller closes it.
        ``idle``: seconds allowed for the headers, then between two reads."""
        return self._request("GET", f"/instances/{orthanc_id}/pdf", stream=True,
                             timeout=(self.timeout[0], idle), total=idle)

    def archive(self, orthanc_id: str, level: str = "studies", idle: float = 300) -> requests.Response:
        """A streamed ZIP of a study; the caller iterates and closes it.
        ``idle``: seconds allowed for the headers (Orthanc 1.10 streams the
        ZIP as it builds it, so they come at once), then between two reads."""
        return self._request("GET", f"/{level}/{orthanc_id}/archive", stream=True,
                             timeout=(self.timeout[0], idle), total=idle)

    def upload(self, data: bytes | BinaryIO, gzip: bool = False, *, timeout: Any = None,
               total: float | None = None) -> dict[str, Any]:
        """``POST /instances``. ``timeout`` (connect, read) defaults to a
        300 s read for large files; ``total`` bounds the whole call."""
        headers = {"Content-Type": "application/dicom"}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        resp = self._request("POST", "/instances", data=data, headers=headers,
                             timeout=timeout or (self.timeout[0], 300), total=total)
        try:
            return resp.json()
        except ValueError:
            raise BadAnswer("Orthanc's answer to an upload is not JSON.") from None
