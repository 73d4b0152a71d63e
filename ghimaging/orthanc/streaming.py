"""Downloads from Orthanc passed through to the browser (study ZIP, PDF)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from flask import Response

from .client import OrthancError

log = logging.getLogger(__name__)


def passthrough(client, upstream, chunks: Iterator[bytes], mimetype: str, disposition: str,
                what: str) -> Response:
    """Stream a download from Orthanc to the browser (study ZIP, PDF). An
    answer that breaks off is cut short (the error propagates, so the
    browser never keeps half a file as whole); the connection closes when
    the body ends either way. Needs no request context while streaming."""
    def body():
        try:
            yield from chunks
        except OrthancError as exc:
            log.warning("%s broke off: %s", what, exc)
            raise
        finally:
            upstream.close()
            client.close()

    resp = Response(body(), mimetype=mimetype)
    resp.headers["Content-Disposition"] = disposition
    if upstream.headers.get("Content-Length"):
        resp.headers["Content-Length"] = upstream.headers["Content-Length"]
    resp.headers["Cache-Control"] = "private, no-store"
    return resp
