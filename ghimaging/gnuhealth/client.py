"""The only code in ghimaging that speaks XML-RPC to GNU Health (trytond).

One login (``common.db.login``) gives a session; every later call sends
``Authorization: Session base64(user:uid:session)``, which trytond checks
in a few milliseconds, where HTTP basic auth would check the password on
every call (~200 ms each). Sessions are kept per process and shared by the
clients of the same server and user; a refused session (401) is replaced
by a new login and the call is sent once more.

Every way a call can fail is its own exception, with a message a clinic's
administrator can act on; ``transient`` tells the outbox whether waiting
and retrying can help.
"""

from __future__ import annotations

import base64
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
from typing import Any
from urllib.parse import urlsplit


class GnuHealthError(Exception):
    """A call to GNU Health failed; the message is safe to show and log
    (it never contains the password)."""

    code = "error"
    transient = False

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Unreachable(GnuHealthError):
    code, transient = "unreachable", True


class Timeout(GnuHealthError):
    code, transient = "timeout", True


class ConnectionLost(GnuHealthError):
    """The call was sent but no answer came back: GNU Health may have done
    it. Whoever retries must look before creating again."""

    code, transient = "connection_lost", True


class WrongPassword(GnuHealthError):
    code = "wrong_password"


class UnknownDatabase(GnuHealthError):
    code = "unknown_database"


class TooManyAttempts(GnuHealthError):
    code, transient = "too_many_attempts", True


class NotAllowed(GnuHealthError):
    code = "not_allowed"


class ModuleMissing(GnuHealthError):
    code = "module_missing"


class NoProfessional(GnuHealthError):
    code = "no_professional"


class RemoteUserError(GnuHealthError):
    """GNU Health refused the data (a UserError: fault code 1)."""

    code = "refused"


class ServerFault(GnuHealthError):
    code, transient = "server_error", True


class BadAnswer(GnuHealthError):
    code = "bad_answer"


# Calls that change nothing: safe to send again when a kept-alive connection
# turns out closed. Anything else is sent once; a lost answer is ConnectionLost.
_READ_ONLY = ("search", "read", "search_read", "search_count", "default_get", "fields_get",
              "version", "get_preferences", "list")

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
        raise ValueError("The GNU Health address must start with http:// or https:// and name a host "
                         "(for example http://gnuhealth.local:8000/).")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("The GNU Health address takes no user, query or fragment: give the user below.")
    try:
        parts.port
    except ValueError:
        raise ValueError("The port of the GNU Health address is not a number between 1 and 65535.") from None
    return url if url.endswith("/") else url + "/"


class _Transport(xmlrpc.client.SafeTransport):
    """Sends the session header, applies the timeout, and never sends a
    changing call twice (xmlrpc.client's Transport silently repeats a call
    whose connection closed before the answer: a duplicate result)."""

    def __init__(self, https: bool, timeout: float):
        super().__init__(use_builtin_types=True)
        self.https, self.timeout = https, timeout
        self.auth = ""
        self.last_used = 0.0
        self.limit: float | None = None  # seconds left before the caller's deadline (connect timeout)
        self.aborted = False

    def make_connection(self, host):
        if self._connection and host == self._connection[0]:
            return self._connection[1]
        chost, self._extra_headers, x509 = self.get_host_info(host)
        timeout = self.timeout if self.limit is None else max(0.05, min(self.timeout, self.limit))
        if self.https:
            conn = http.client.HTTPSConnection(chost, timeout=timeout, context=self.context)
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
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def send_headers(self, connection, headers):
        if self.auth:
            headers = [*headers, ("Authorization", self.auth)]
        super().send_headers(connection, headers)

    def request(self, host, handler, request_body, verbose=False):
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

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport ------------------------------------------------------------
    def _send(self, proxy: xmlrpc.client.ServerProxy, method: str, args: tuple,
              transport: _Transport | None = None) -> Any:
        """One call, under the client's deadline when it has one."""
        transport = transport or self._transport
        if self._deadline is None:
            return self._send_now(proxy, method, args)
        left = self._deadline - time.monotonic()
        late = Timeout(f"GNU Health at {self.url} did not finish within {self.total:g} s (the limit for a "
                       "page); try again, or let the background sync do it.")
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

    def _send_now(self, proxy: xmlrpc.client.ServerProxy, method: str, args: tuple) -> Any:
        self.calls += 1
        where = f"GNU Health at {self.url}"
        try:
            return from_wire(getattr(proxy, method)(*to_wire(list(args))))
        except xmlrpc.client.Fault as fault:
            raise _fault_error(fault, method) from None
        except xmlrpc.client.ProtocolError as exc:
            raise _http_error(exc.errcode, method, self) from None
        except TimeoutError:
            raise Timeout(f"{where} did not answer within {self.timeout:g} s.") from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            raise ConnectionLost(f"{where} closed the connection before answering; the change may or may "
                                 "not have been made there.") from None
        except ConnectionRefusedError:
            raise Unreachable(f"{where} refused the connection: is the server running on that port?") from None
        except socket.gaierror:
            raise Unreachable(f"{where}: the host name is unknown.") from None
        except (OSError, http.client.HTTPException) as exc:
            if getattr(exc, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise Unreachable(f"{where} cannot be reached (no route).") from None
            raise Unreachable(f"{where} cannot be reached: {exc}") from None
        except xmlrpc.client.ResponseError:
            raise BadAnswer(f"{where} sent an answer that is not XML-RPC: is it a GNU Health server?") from None
        except Exception as exc:  # expat errors on an HTML page, and the like
            if type(exc).__name__ == "ExpatError":
                raise BadAnswer(f"{where} sent an answer that is not XML-RPC: is it a GNU Health server?") from None
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
                raise BadAnswer(f"GNU Health at {self.url} answered the login with {type(answer).__name__}, "
                                "not a session.")
            cached = (int(answer[0]), str(answer[1]))
            with _sessions_lock:
                _sessions[self._key] = cached
        self.uid, session = cached
        token = base64.b64encode(f"{self.user}:{self.uid}:{session}".encode()).decode()
        self._transport.auth = f"Session {token}"
        return self.uid

    def call(self, method: str, *args: Any, context: dict | None = None) -> Any:
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
    def search(self, model: str, domain: list, *, limit: int | None = None, order=None) -> list[int]:
        return self.call(f"model.{model}.search", domain, 0, limit, order)

    def search_read(self, model: str, domain: list, fields: list[str], *, limit: int | None = None,
                    order=None) -> list[dict]:
        return self.call(f"model.{model}.search_read", domain, 0, limit, order, fields)

    def read(self, model: str, ids: list[int], fields: list[str]) -> list[dict]:
        return self.call(f"model.{model}.read", ids, fields)

    def create(self, model: str, values: list[dict]) -> list[int]:
        return self.call(f"model.{model}.create", values)

    def write(self, model: str, ids: list[int], values: dict) -> None:
        self.call(f"model.{model}.write", ids, values)

    def run_wizard(self, name: str, state: str, active_model: str, ids: list[int]) -> Any:
        """Create the wizard session, execute ``state`` on ``ids``, delete it."""
        ctx = {"active_model": active_model, "active_ids": ids, "active_id": ids[0]}
        sid, _, _ = self.call(f"wizard.{name}.create")
        try:
            return self.call(f"wizard.{name}.execute", sid, {}, state, context=ctx)
        finally:
            try:
                self.call(f"wizard.{name}.delete", sid, context=ctx)
            except GnuHealthError:
                pass  # trytond drops stale wizard sessions by itself


class SessionRefused(GnuHealthError):
    """401 on a call: the session expired or the server forgot it."""

    code, transient = "session_refused", True


def _http_error(status: int, method: str, client: GnuHealthClient) -> GnuHealthError:
    where = f"GNU Health at {client.url}"
    if method == "common.db.login":
        if status == 401:
            return WrongPassword(f"{where} refused the user name or password of {client.user!r}.")
        if status == 404:
            return UnknownDatabase(f"{where} has no database {client.database!r}.")
        if status == 429:
            return TooManyAttempts(f"{where} refuses logins for a while after too many failed attempts; "
                                   "wait, then check the password.")
    if status == 401:
        return SessionRefused(f"{where} refused the session.")
    if status == 403:
        return NotAllowed(f"{where} does not allow {method} over XML-RPC.")
    if status == 404:
        return UnknownDatabase(f"{where} has no database {client.database!r} (or the address is not "
                               "trytond's).")
    if status == 429:
        return TooManyAttempts(f"{where} asks to slow down (429).")
    if 500 <= status < 600:
        return ServerFault(f"{where} answered {status} (server error).")
    return BadAnswer(f"{where} answered HTTP {status} to {method}.")


def _fault_error(fault: xmlrpc.client.Fault, method: str) -> GnuHealthError:
    text = str(fault.faultString or "")
    if fault.faultCode == 1 or text.startswith(("You are not allowed", "SM-")):
        message, _, description = text.partition(" - ")
        shown = message.strip().rstrip(".") + (f" ({description.strip()})" if description.strip() else "")
        if "SM-CORE-0007" in text:
            return NoProfessional("The GNU Health user is not linked to a health professional (SM-CORE-0007): "
                                  "set it as the Internal User of a professional's party in GNU Health, or "
                                  "choose a default professional here.")
        if message.startswith("You are not allowed") or ("access" in message.lower() and "denied" in message.lower()):
            return NotAllowed(f"GNU Health: {shown}. Give the user the groups listed in the README.")
        return RemoteUserError(f"GNU Health refused {method}: {shown}")
    model = method.split(".")[1:-1]
    if text.strip("'\"") == ".".join(model) and model:
        return ModuleMissing(f"GNU Health has no {'.'.join(model)}: its module is not activated.")
    return ServerFault(f"GNU Health failed on {method}: {text[:300] or 'an internal error'} "
                       f"(fault {fault.faultCode}; its log has the details).")
