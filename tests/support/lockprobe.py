"""A real HTTP hop in front of a real Orthanc that asks the database, at
the moment each request arrives, whether someone holds uncommitted writes.

Why: Orthanc 1.10.1 holds its Lua lock while the push's ``HttpPost`` waits
for ghimaging's wake, and every REST request waits for that lock; the wake
writes one row. A request to Orthanc made while ghimaging holds a write
would wait for Orthanc while the wake waits for the write. The probe sees
that from outside, as the wake would: on SQLite it tries ``BEGIN
IMMEDIATE`` without waiting (refused while another connection holds the
write lock); on PostgreSQL it looks for another session of the database
with a transaction id (one is assigned at the first write). Nothing of the
application is patched; the request then goes on to Orthanc unchanged.
"""

from __future__ import annotations

import sqlite3
import threading
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
    ``found`` lists ``(method, path)`` of requests that arrived while
    writes were held."""

    def __init__(self, target: str, database_url: str) -> None:
        self.target, self.database_url = target.rstrip("/"), database_url
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
                if writes_held(probe.database_url):
                    probe.found.append((self.command, self.path.split("?")[0]))
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
