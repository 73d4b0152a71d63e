"""A real HTTP hop in front of a real Orthanc that behaves as Orthanc
does while its Lua push waits for ghimaging's wake: it holds each request
until the database takes a write.

Why: Orthanc 1.10.1 holds its Lua lock while the push's ``HttpPost`` waits
for the wake, every REST request waits for that lock, and the wake writes
one row. If ghimaging asked Orthanc while the asking transaction held
writes, the request would wait for the wake and the wake for the write:
each side waiting for the other. The hop sees it from outside, as the wake
would: on SQLite it tries ``BEGIN IMMEDIATE`` without waiting (refused
while another connection holds the write lock); on PostgreSQL it looks for
another session of the database with a transaction id (assigned at the
first write). Writes held by another thread that does not wait for this
request (the full sync writes a page while the next is read) are released
within moments and the request goes on; writes still held after
``patience`` seconds can only be waiting for this request, and the request
is recorded in ``found`` (then let through, so the test ends instead of
hanging). Nothing of the application is patched.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def writes_held(database_url: str) -> bool:
    """Whether another connection holds uncommitted writes right now."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        con = sqlite3.connect(url.database or "", timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc):
                return True
            raise
        finally:
            con.close()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return bool(conn.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL")))
    finally:
        engine.dispose()


class LockProbe:
    """Serves on a free loopback port (``url``) and forwards to ``target``;
    ``found`` lists ``(method, path)`` of requests that writes kept waiting
    for ``patience`` seconds (a generous bound: a write that does not wait
    for the request ends in milliseconds, one that does never ends)."""

    def __init__(self, target: str, database_url: str, *, patience: float = 20.0) -> None:
        self.target, self.database_url, self.patience = target.rstrip("/"), database_url, patience
        self.found: list[tuple[str, str]] = []
        self.seen = 0
        probe = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if not size:
                            return b"".join(parts)
                        parts.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                probe.seen += 1
                deadline = time.monotonic() + probe.patience
                while writes_held(probe.database_url):
                    if time.monotonic() > deadline:
                        probe.found.append((self.command, self.path.split("?")[0]))
                        break
                    time.sleep(0.02)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                r = requests.request(self.command, probe.target + self.path, data=body or None,
                                     headers=headers, timeout=60)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in _HOP and k.lower() != "content-encoding":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LockProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
