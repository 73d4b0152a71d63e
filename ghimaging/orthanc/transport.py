"""The parts of the Orthanc client's transport made of requests' and
urllib3's own classes: connections that the deadline watchdog
(:mod:`.deadlines`) can stop, and a bounded reader for streamed answers.
Imported when the first client is made, so that the application starts
without requests (issue 11, small footprint)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import requests
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, ReadTimeoutError

from .deadlines import call_end, watch_socket
from .errors import TimedOut, Unreachable


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
            raise TimedOut(_("Orthanc stopped sending for %(seconds)s s.", seconds=f"{idle:.0f}")) from None
        except (HTTPError, OSError) as exc:
            raise Unreachable(_("Orthanc's answer broke off (%(error)s).", error=exc.__class__.__name__)) from None
        if not chunk:
            return
        reading += time.monotonic() - started
        got += len(chunk)
        if reading >= idle:
            if got < floor:
                raise TimedOut(_("Orthanc sent only %(bytes)s bytes in %(seconds)s s.", bytes=got,
                                 seconds=f"{reading:.0f}"))
            reading, got = 0.0, 0
        yield chunk



class _GuardedConnection:
    """Puts the socket of every call made under a deadline in the watchdog's
    care: a new connection once connected (before TLS, headers and body), a
    reused one before its request is sent."""

    def _new_conn(self):  # type: ignore[no-untyped-def]
        at = call_end()
        if at is not None and at <= time.monotonic():  # e.g. a retry after the deadline passed
            raise ConnectTimeoutError(self, "the deadline passed before connecting")
        sock = super()._new_conn()  # type: ignore[misc]
        watch_socket(sock)
        return sock

    def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        watch_socket(self.sock)  # type: ignore[attr-defined]
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _GuardedHTTPConnection(_GuardedConnection, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnection, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """requests' adapter with connections the deadline watchdog can stop."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):  # type: ignore[no-untyped-def]
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager
