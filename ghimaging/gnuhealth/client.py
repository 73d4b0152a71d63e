"""The only code in ghimaging that speaks XML-RPC to GNU Health (trytond).

One login (``common.db.login``) gives a session; every later call sends
``Authorization: Session base64(user:uid:session)``, which trytond checks
in a few milliseconds, where HTTP basic auth would check the password on
every call (~200 ms each). Sessions are kept per process and shared by the
clients of the same server and user; a refused session (401) is replaced
by a new login and the call is sent once more.

Every way a call can fail is its own error (:mod:`.errors`, whose names are
also importable from here).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import errno
import hashlib
import http.client
import json
import socket
import threading
import time
import xmlrpc.client
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from .errors import (
    BadAnswer,
    ConnectionLost,
    GnuHealthError,
    ModuleMissing,
    NoProfessional,
    NotAllowed,
    RemoteUserError,
    ServerFault,
    SessionRefused,
    Timeout,
    TooManyAttempts,
    UnknownDatabase,
    Unreachable,
    WrongPassword,
    fault_error,
    http_error,
)

__all__ = [
    "BadAnswer", "ConnectionLost", "GnuHealthClient", "GnuHealthError", "ModuleMissing", "NoProfessional",
    "NotAllowed", "RemoteUserError", "ServerFault", "SessionRefused", "Timeout", "TooManyAttempts",
    "UnknownDatabase", "Unreachable", "WrongPassword", "check_url", "from_wire", "to_wire",
]

# Calls that change nothing: safe to send again when a kept-alive connection
# turns out closed. Anything else is sent once; a lost answer is ConnectionLost.
_READ_ONLY = ("search", "read", "search_read", "search_count", "default_get", "fields_get",
              "version", "get_preferences", "list")

#: A trytond search domain (``[("name", "=", "x"), ...]``) and order (``[["id", "ASC"]]``).
Domain = list[Any]
Order = Sequence[Sequence[str]] | None

_sessions: dict[str, tuple[int, str]] = {}
_sessions_lock = threading.Lock()


def to_wire(value: Any) -> Any:
    """Python values as trytond's XML-RPC expects them (dates as
    ``{"__class__": "date", ...}``; datetimes and bytes are native)."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, decimal.Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def from_wire(value: Any) -> Any:
    """trytond's answers as Python values."""
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return dt.datetime(value["year"], value["month"], value["day"], value.get("hour", 0),
                               value.get("minute", 0), value.get("second", 0), value.get("microsecond", 0))
        if kind == "Decimal":
            return decimal.Decimal(value["decimal"])
        if kind == "bytes":
            return base64.b64decode(value["base64"])
        return {k: from_wire(v) for k, v in value.items()}
    return value


def check_url(url: str) -> str:
    """``http(s)://host[:port]/`` with a trailing slash, or ValueError."""
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(_("The GNU Health address must start with http:// or https:// and name a host "
                           "(for example http://gnuhealth.local:8000/)."))
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(_("The GNU Health address takes no user, query or fragment: give the user below."))
    try:
        parts.port  # noqa: B018 - read only to have urllib check it
    except ValueError:
        raise ValueError(_("The port of the GNU Health address is not a number between 1 and 65535.")) from None
    return url if url.endswith("/") else url + "/"


class _Transport(xmlrpc.client.SafeTransport):
    """Sends the session header, applies the timeout, and never sends a
    changing call twice (xmlrpc.client's Transport silently repeats a call
    whose connection closed before the answer: a duplicate result)."""

    def __init__(self, https: bool, timeout: float) -> None:
        super().__init__(use_builtin_types=True)
        self.https, self.timeout = https, timeout
        self.auth = ""
        self.last_used = 0.0
        self.limit: float | None = None  # seconds left before the caller's deadline (connect timeout)
        self.aborted = False

    def make_connection(self, host: Any) -> http.client.HTTPConnection:  # type: ignore[override]  # also plain HTTP
        cached = self._connection[1] if host == self._connection[0] else None
        if cached is not None:
            return cached
        chost, self._extra_headers, _x509 = self.get_host_info(host)
        timeout = self.timeout if self.limit is None else max(0.05, min(self.timeout, self.limit))
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(chost, timeout=timeout,
                                               context=self.context)  # type: ignore[attr-defined]  # set by SafeTransport
        else:
            conn = http.client.HTTPConnection(chost, timeout=timeout)
        self._connection = host, conn
        return conn

    def abort(self) -> None:
        """The deadline passed: shut the socket down, which ends a blocked
        connect, send or read at once (a trickling server that sends a byte
        now and then never trips the read timeout)."""
        self.aborted = True
        conn = self._connection[1] if self._connection else None
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def send_headers(self, connection: http.client.HTTPConnection, headers: list[tuple[str, str]]) -> None:
        if self.auth:
            headers = [*headers, ("Authorization", self.auth)]
        super().send_headers(connection, headers)

    def request(self, host: Any, handler: str, request_body: Any, verbose: bool = False) -> Any:
        method = _method_of(request_body)
        read_only = method.rsplit(".", 1)[-1] in _READ_ONLY or method == "common.db.login"
        if not read_only:
            self.close()  # a fresh connection: a refused send is then surely unsent
        for attempt in (0, 1):
            reused = self._connection[1] is not None and self._connection[1].sock is not None
            try:
                answer = self.single_request(host, handler, request_body, verbose)
                self.last_used = time.monotonic()
                return answer
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 0 and reused and read_only:
                    continue
                raise


def _method_of(body: bytes) -> str:
    start = body.find(b"<methodName>")
    end = body.find(b"</methodName>")
    return body[start + 12:end].decode("ascii", "replace") if start >= 0 < end else ""


class GnuHealthClient:
    """XML-RPC calls to one GNU Health database as one user.

    ``calls`` counts the calls sent (logins included), for the bench.

    ``timeout`` bounds each socket operation (connect, each read). ``total``
    (seconds, from the client's creation) bounds ALL its calls together: a
    client made for a page someone waits for gets one, and a timer shuts
    its socket down when it passes, so a server that trickles its answer
    cannot hold the page (the call raises :class:`Timeout`). Without it
    (the background loop, the CLI) only ``timeout`` applies.
    """

    def __init__(self, url: str, database: str, user: str, password: str, *, timeout: float = 20.0,
                 total: float | None = None):
        self.url = check_url(url)
        self.database = database
        self.user = user
        self._password = password
        self.timeout = timeout
        self.total = total
        self._deadline = None if total is None else time.monotonic() + total
        self.calls = 0
        https = urlsplit(self.url).scheme == "https"
        self._transport = _Transport(https, timeout)
        self._proxy = xmlrpc.client.ServerProxy(f"{self.url}{database}/", transport=self._transport,
                                                allow_none=True, use_builtin_types=True)
        self.uid: int | None = None
        self._key = hashlib.sha256(json.dumps([self.url, database, user, password]).encode()).hexdigest()

    def __repr__(self) -> str:  # never the password
        return f"<GnuHealthClient {self.user}@{self.url}{self.database}>"

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> GnuHealthClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------
    def _send(self, proxy: xmlrpc.client.ServerProxy, method: str, args: tuple[Any, ...],
              transport: _Transport | None = None) -> Any:
        """One call, under the client's deadline when it has one."""
        transport = transport or self._transport
        if self._deadline is None:
            return self._send_now(proxy, method, args)
        left = self._deadline - time.monotonic()
        late = Timeout(_("GNU Health at %(url)s did not finish within %(seconds)s s (the limit for a page); try "
                         "again, or let the background sync do it.", url=self.url, seconds=f"{self.total:g}"))
        if left <= 0:
            raise late
        transport.limit, transport.aborted = left, False
        timer = threading.Timer(left, transport.abort)
        timer.daemon = True
        timer.start()
        try:
            answer = self._send_now(proxy, method, args)
        except Exception:  # whatever a socket shut down mid-call raised
            if transport.aborted:
                raise late from None
            raise
        finally:
            timer.cancel()
            transport.limit = None
        if transport.aborted:  # the answer may look whole and still be cut short: never use it
            transport.close()
            raise late
        return answer

    def _send_now(self, proxy: xmlrpc.client.ServerProxy, method: str, args: tuple[Any, ...]) -> Any:
        self.calls += 1
        where = _("GNU Health at %(url)s", url=self.url)
        try:
            return from_wire(getattr(proxy, method)(*to_wire(list(args))))
        except xmlrpc.client.Fault as fault:
            raise fault_error(fault, method) from None
        except xmlrpc.client.ProtocolError as exc:
            raise http_error(exc.errcode, method, self) from None
        except TimeoutError:
            raise Timeout(_("%(where)s did not answer within %(seconds)s s.", where=where,
                            seconds=f"{self.timeout:g}")) from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise ConnectionLost(_("%(where)s closed the connection before answering; the change may or may "
                                   "not have been made there.", where=where)) from None
        except ConnectionRefusedError:
            raise Unreachable(_("%(where)s refused the connection: is the server running on that port?",
                                where=where)) from None
        except socket.gaierror:
            raise Unreachable(_("%(where)s: the host name is unknown.", where=where)) from None
        except (OSError, http.client.HTTPException) as exc:
            if getattr(exc, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise Unreachable(_("%(where)s cannot be reached (no route).", where=where)) from None
            raise Unreachable(_("%(where)s cannot be reached: %(error)s", where=where, error=exc)) from None
        except xmlrpc.client.ResponseError:
            raise BadAnswer(_("%(where)s sent an answer that is not XML-RPC: is it a GNU Health server?",
                              where=where)) from None
        except Exception as exc:  # expat errors on an HTML page, and the like
            if type(exc).__name__ == "ExpatError":
                raise BadAnswer(_("%(where)s sent an answer that is not XML-RPC: is it a GNU Health server?",
                                  where=where)) from None
            raise

    def version(self) -> str:
        """trytond's version (``common.server.version``, no login needed)."""
        transport = _Transport(self._transport.https, self.timeout)
        root = xmlrpc.client.ServerProxy(self.url, transport=transport, allow_none=True, use_builtin_types=True)
        try:
            answer = self._send(root, "common.server.version", (), transport)
        finally:
            transport.close()
        return str(answer)

    def login(self, *, force: bool = False) -> int:
        with _sessions_lock:
            cached = None if force else _sessions.get(self._key)
        if cached is None:
            try:
                answer = self._send(self._proxy, "common.db.login",
                                    (self.user, {"password": self._password}, "en"))
            except GnuHealthError:
                with _sessions_lock:
                    _sessions.pop(self._key, None)
                raise
            if not (isinstance(answer, list) and len(answer) == 2):
                raise BadAnswer(_("GNU Health at %(url)s answered the login with %(kind)s, not a session.",
                                  url=self.url, kind=type(answer).__name__))
            cached = (int(answer[0]), str(answer[1]))
            with _sessions_lock:
                _sessions[self._key] = cached
        self.uid, session = cached
        token = base64.b64encode(f"{self.user}:{self.uid}:{session}".encode()).decode()
        self._transport.auth = f"Session {token}"
        return self.uid

    def call(self, method: str, *args: Any, context: dict[str, Any] | None = None) -> Any:
        """``call("model.gnuhealth.patient.search", domain, 0, None, None)``;
        the context dict goes last. Logs in first, and again if the session
        is refused."""
        if self.uid is None:
            self.login()
        full = (*args, context or {})
        try:
            return self._send(self._proxy, method, full)
        except SessionRefused:
            self.login(force=True)
            return self._send(self._proxy, method, full)

    # -- conveniences -----------------------------------------------------------
    def search(self, model: str, domain: Domain, *, limit: int | None = None, order: Order = None) -> list[int]:
        ids: list[int] = self.call(f"model.{model}.search", domain, 0, limit, order)
        return ids

    def search_read(self, model: str, domain: Domain, fields: list[str], *, limit: int | None = None,
                    order: Order = None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(f"model.{model}.search_read", domain, 0, limit, order, fields)
        return rows

    def read(self, model: str, ids: list[int], fields: list[str]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.call(f"model.{model}.read", ids, fields)
        return rows

    def create(self, model: str, values: list[dict[str, Any]]) -> list[int]:
        ids: list[int] = self.call(f"model.{model}.create", values)
        return ids

    def write(self, model: str, ids: list[int], values: dict[str, Any]) -> None:
        self.call(f"model.{model}.write", ids, values)

    def run_wizard(self, name: str, state: str, active_model: str, ids: list[int]) -> Any:
        """Create the wizard session, execute ``state`` on ``ids``, delete it."""
        ctx = {"active_model": active_model, "active_ids": ids, "active_id": ids[0]}
        sid, _state, _buttons = self.call(f"wizard.{name}.create")
        try:
            return self.call(f"wizard.{name}.execute", sid, {}, state, context=ctx)
        finally:
            with contextlib.suppress(GnuHealthError):  # trytond drops stale wizard sessions by itself
                self.call(f"wizard.{name}.delete", sid, context=ctx)
