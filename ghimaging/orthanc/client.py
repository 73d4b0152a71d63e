"""The only code that speaks HTTP to Orthanc.

One ``requests.Session`` per server (connection reuse matters on a Pi),
connect and read timeouts on every call, retries with backoff for idempotent
reads only. Every failure is one of the errors of
:mod:`ghimaging.orthanc.errors`; a call made while a person waits ends by
its deadline (:mod:`ghimaging.orthanc.deadlines`). Both modules' public
names are also importable from here. requests is imported when the first
client is made (:mod:`.transport`), not with the application.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from .deadlines import arm, deadline, disarm, end_of_call, remaining, struck
from .errors import BadAnswer, NotFound, OrthancError, TimedOut, Unauthorized, Unreachable, refused

if TYPE_CHECKING:
    import requests

    from .transport import iter_body

__all__ = [
    "DEFAULT_TIMEOUT", "BadAnswer", "NotFound", "OrthancClient", "OrthancError", "TimedOut", "Unauthorized",
    "Unreachable", "check_url", "deadline", "iter_body", "remaining",
]

DEFAULT_TIMEOUT = (3.05, 30.0)  # connect, read


def __getattr__(name: str) -> Any:
    if name == "iter_body":  # requests' world: loaded on first use
        from .transport import iter_body

        return iter_body
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_url(url: str) -> str:
    """A normalised base URL, or ValueError with a message for a person."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(_("Give the full address, like http://127.0.0.1:8042"))
    if parts.query or parts.fragment:
        raise ValueError(_("The address must not contain ? or #."))
    if parts.username or parts.password:
        raise ValueError(_("Put the username and password in their own fields, not in the address."))
    try:
        port = parts.port
    except ValueError:
        raise ValueError(_("The port must be a number from 1 to 65535.")) from None
    if port == 0:
        raise ValueError(_("The port must be a number from 1 to 65535."))
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
        import requests
        from urllib3.util.retry import Retry

        from .transport import GuardedAdapter

        self.session = requests.Session()
        # Basic auth as a header, for the image calls that skip requests
        # (:meth:`_get_image`); None when a username or password cannot be
        # sent that way (not Latin-1): those calls then go through requests.
        self._auth_header: dict[str, str] | None = {}
        if username or password:
            self.session.auth = (username, password)
            try:
                import base64

                token = base64.b64encode(f"{username}:{password}".encode("latin-1")).decode("ascii")
                self._auth_header = {"Authorization": f"Basic {token}"}
            except UnicodeEncodeError:
                self._auth_header = None
        # A proxy from the environment (HTTP_PROXY, not bypassed by NO_PROXY)
        # is for requests to apply: then no call skips it.
        self._environ_proxied = bool(requests.utils.get_environ_proxies(self.url))
        self._base_path = urlsplit(self.url).path.rstrip("/")  # an Orthanc behind a path prefix
        retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=0.3,
                      allowed_methods=frozenset({"GET", "HEAD"}), status_forcelist=(502, 503, 504),
                      raise_on_status=False)
        adapter = GuardedAdapter(max_retries=retry, pool_maxsize=4)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._adapter = adapter

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> OrthancClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ----------------------------------------------------------

    def _request(self, method: str, path: str, *, stream: bool = False, total: float | None = None,
                 **kw: Any) -> requests.Response:
        """One call. ``total`` (else the client's ``total_timeout``) and any
        :func:`deadline` scope bound it as a whole; for ``stream=True`` up to
        the headers, the body then being bounded by the read timeout."""
        import requests

        self.request_count += 1
        started = time.monotonic()
        end, timeout = self._bounds(started, kw.pop("timeout", self.timeout), total)
        arm(end)
        try:
            resp = self.session.request(method, self.url + path, timeout=timeout, stream=stream, **kw)
        except requests.Timeout:
            raise self._late(started) from None
        except requests.exceptions.SSLError as exc:
            if struck():
                raise self._late(started) from None
            raise Unreachable(_("TLS error talking to %(url)s: %(error)s.", url=self.url,
                                error=exc.__class__.__name__)) from None
        except requests.ConnectionError as exc:
            text = str(exc).lower()
            if struck() or "timed out" in text or "timeout" in text:  # a read timeout after the retries
                raise self._late(started) from None
            raise self._unreachable("refused" in text) from None
        except requests.RequestException as exc:
            if struck():
                raise self._late(started) from None
            raise Unreachable(_("Orthanc at %(url)s: %(error)s.", url=self.url, error=exc.__class__.__name__)) \
                from None
        finally:
            fired = disarm()
        if fired:  # the answer may look whole and still be cut short: never use it
            resp.close()
            raise self._late(started)
        if resp.status_code >= 400:
            body = b"" if stream or resp.status_code in (401, 403, 404) else resp.content
            resp.close()
            raise refused(resp.status_code, method, path, body)
        return resp

    def _get_image(self, path: str, params: dict[str, str] | None = None) -> tuple[bytes, str]:
        """``GET path`` answered by a picture: (body, content type).

        The viewer asks for a frame at every scroll step, and requests'
        per-call machinery (preparing the request, cookies, hooks, redirects,
        reading the body in 10 KB pieces) cost 1-2 ms of CPU per 75 KB frame
        here, as much as the rest of the page's work: over plain ``http://``
        without a proxy the call goes straight to the session's urllib3 pool
        (the same kept connections, the same deadline watchdog, the same
        retries), one read for the body. HTTPS and proxies take requests'
        path, which knows their settings. Errors are the same as
        :meth:`_request`'s."""
        target = self._base_path + path + ("?" + urlencode(params) if params else "")
        proxied = self.session.proxies or (self.session.trust_env and self._environ_proxied)
        if not self.url.startswith("http://") or proxied or self._auth_header is None:
            resp = self._request("GET", path, params=params, headers={"Accept": "image/png"})
            return resp.content, resp.headers.get("Content-Type", "image/png")
        from urllib3.exceptions import HTTPError, MaxRetryError
        from urllib3.util import Timeout

        self.request_count += 1
        adapter = self._adapter
        started = time.monotonic()
        end, timeout = self._bounds(started, self.timeout, None)
        headers = {"Accept": "image/png", "Connection": "keep-alive", **self._auth_header}
        arm(end)
        try:
            pool = adapter.poolmanager.connection_from_url(self.url)
            resp = pool.urlopen("GET", target, headers=headers, retries=adapter.max_retries, redirect=False,
                                timeout=Timeout(connect=timeout[0], read=timeout[1]), preload_content=True)
        except (MaxRetryError, HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            text = f"{exc} {reason}".lower()
            if struck() or "timed out" in text or "timeout" in text:
                raise self._late(started) from None
            raise self._unreachable("refused" in text) from None
        finally:
            fired = disarm()
        if fired:
            raise self._late(started)
        if resp.status >= 400:
            raise refused(resp.status, "GET", path, resp.data if resp.status not in (401, 403, 404) else b"")
        return resp.data, resp.headers.get("Content-Type", "image/png")

    def _bounds(self, started: float, timeout: tuple[float, float],
                total: float | None) -> tuple[float | None, tuple[float, float]]:
        """(when the call must be over, its (connect, read) timeouts cut to
        that); ``total`` None means the client's ``total_timeout``."""
        end = end_of_call(started, self.total_timeout if total is None else total)
        if end is None:
            return None, timeout
        left = end - started
        if left <= 0:
            raise TimedOut(_("Orthanc at %(url)s did not answer in time (no time was left to ask).", url=self.url))
        return end, (min(timeout[0], left), min(timeout[1], left))

    def _late(self, started: float) -> TimedOut:
        return TimedOut(_("Orthanc at %(url)s did not answer in time (gave up after %(seconds)s s).", url=self.url,
                          seconds=f"{time.monotonic() - started:.0f}"))

    def _unreachable(self, refused: bool) -> Unreachable:
        """No connection: refused (nothing listens on that port) or not made."""
        return Unreachable(_("Orthanc at %(url)s: connection refused.", url=self.url) if refused else
                           _("Orthanc at %(url)s: cannot connect.", url=self.url))

    def get_json(self, path: str, **params: Any) -> Any:
        resp = self._request("GET", path, params=params or None)
        try:
            return resp.json()
        except ValueError:
            raise BadAnswer(_("%(url)s did not answer JSON; is this an Orthanc server?", url=self.url + path)) \
                from None

    def post_json(self, path: str, body: Any) -> Any:
        resp = self._request("POST", path, json=body)
        try:
            return resp.json()
        except ValueError:
            raise BadAnswer(_("%(url)s did not answer JSON.", url=self.url + path)) from None

    def delete(self, path: str) -> None:
        self._request("DELETE", path)

    # -- Orthanc resources ---------------------------------------------------

    def system(self) -> dict[str, Any]:
        data = self.get_json("/system")
        if not isinstance(data, dict) or "Version" not in data or "ApiVersion" not in data:
            raise BadAnswer(_("%(url)s answers, but it is not an Orthanc server (no Version in /system).",
                              url=self.url))
        return data

    def last_change(self) -> int:
        data = self.get_json("/changes", last="")
        return int(self._changes_shape(data)["Last"])

    def changes(self, since: int, limit: int = 100) -> dict[str, Any]:
        return self._changes_shape(self.get_json("/changes", since=since, limit=limit))

    @staticmethod
    def _changes_shape(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not {"Changes", "Done", "Last"} <= set(data):
            raise BadAnswer(_("Orthanc's %(what)s answer has an unexpected shape.", what="/changes"))
        return data

    def plugins(self) -> list[str]:
        data = self.get_json("/plugins")
        if not isinstance(data, list):
            raise BadAnswer(_("Orthanc's %(what)s answer has an unexpected shape.", what="/plugins"))
        return [str(p) for p in data]

    def page(self, level: str, since: int, limit: int, expand: bool = True) -> list[Any]:
        """One page of ``/patients``, ``/studies`` or ``/series`` (expanded)."""
        params: dict[str, Any] = {"since": since, "limit": limit}
        if expand:
            params["expand"] = ""
        data = self.get_json(f"/{level}", **params)
        if not isinstance(data, list):
            raise BadAnswer(_("Orthanc's %(what)s answer has an unexpected shape.", what=f"/{level}"))
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
        found: dict[str, Any] = self.get_json(f"/studies/{orthanc_id}")
        return found

    def study_series(self, orthanc_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get_json(f"/studies/{orthanc_id}/series")
        return found

    def series(self, orthanc_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get_json(f"/series/{orthanc_id}")
        return found

    def patient(self, orthanc_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get_json(f"/patients/{orthanc_id}")
        return found

    def instance(self, orthanc_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.get_json(f"/instances/{orthanc_id}")
        return found

    def series_instances(self, orthanc_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.get_json(f"/series/{orthanc_id}/instances")
        return found

    def find_studies(self, query: dict[str, str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.post_json("/tools/find", {"Level": "Study", "Query": query, "Expand": True})
        return found

    def preview(self, instance_id: str) -> tuple[bytes, str]:
        return self._get_image(f"/instances/{instance_id}/preview")

    def rendered(self, instance_id: str) -> tuple[bytes, str]:
        return self._get_image(f"/instances/{instance_id}/rendered")

    def rendered_frame(self, instance_id: str, frame: int, center: float | None = None,
                       width: float | None = None) -> tuple[bytes, str]:
        """One frame as an 8-bit PNG (``/frames/{n}/rendered``). With
        ``center``/``width`` Orthanc 1.10.1 applies that window, in rescaled
        units (HU for CT), instead of the one stored in the file (checked)."""
        params = None if center is None or width is None else {"window-center": f"{center:g}",
                                                                "window-width": f"{width:g}"}
        return self._get_image(f"/instances/{instance_id}/frames/{frame}/rendered", params)

    def frame_values(self, instance_id: str, frame: int = 0) -> bytes:
        """One frame's stored values as a 16-bit greyscale PNG (``image-uint16``)."""
        return self._get_image(f"/instances/{instance_id}/frames/{frame}/image-uint16")[0]

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        """The instance's elements by keyword (``/tags?simplify``; no pixel data)."""
        data = self.get_json(f"/instances/{orthanc_id}/tags", simplify="")
        if not isinstance(data, dict):
            raise BadAnswer(_("Orthanc's instance tags answer has an unexpected shape."))
        return data

    def instance_metadata(self, orthanc_id: str) -> dict[str, str]:
        """Orthanc's own metadata of an instance (``SopClassUid``,
        ``TransferSyntax``…), read from its index without opening the file."""
        data = self.get_json(f"/instances/{orthanc_id}/metadata", expand="")
        if not isinstance(data, dict):
            raise BadAnswer(_("Orthanc's instance metadata answer has an unexpected shape."))
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
            answer: dict[str, Any] = resp.json()
        except ValueError:
            raise BadAnswer(_("Orthanc's answer to an upload is not JSON.")) from None
        return answer
