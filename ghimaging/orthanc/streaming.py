"""Downloads from Orthanc passed through to the browser: the study ZIP and
the PDF of an encapsulated PDF instance.

Orthanc has ``ORTHANC_DOWNLOAD_IDLE_TIMEOUT`` seconds to start answering and
at most that long between reads; an answer that breaks off is cut short,
never ended as if whole (see ``transport.iter_body``). A download that cannot
start raises :class:`DownloadFailed` (its message names the server by its
label, never its address); one Orthanc does not hold raises the client's
``NotFound`` (404).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING

from flask import Response

from .. import crypto
from ..exceptions import UpstreamFailure
from ..models import OrthancServer, OrthancStudy
from . import instances, servers
from .client import NotFound, OrthancClient, OrthancError, TimedOut

if TYPE_CHECKING:
    import requests

log = logging.getLogger(__name__)


class DownloadFailed(UpstreamFailure):
    """Orthanc did not answer (``timeout`` when in time), or its answer
    cannot be passed on; the message is for people."""

    code = "download_failed"


def passthrough(client: OrthancClient, upstream: requests.Response, chunks: Iterator[bytes], mimetype: str,
                disposition: str, what: str) -> Response:
    """Stream a download from Orthanc to the browser (study ZIP, PDF). An
    answer that breaks off is cut short (the error propagates, so the
    browser never keeps half a file as whole); the connection closes when
    the body ends either way. Needs no request context while streaming."""
    def body() -> Iterator[bytes]:
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


def _failed(what: str, server: OrthancServer, exc: OrthancError | crypto.CredentialError) -> DownloadFailed:
    """Recorded for the server, logged, and said for people."""
    instances.note(server, exc)
    log.warning("%s from %s failed: %s", what, server.label, exc)
    return DownloadFailed(instances.failure_message(server, exc), timeout=isinstance(exc, TimedOut))


def _client(server: OrthancServer, what: str, idle: float) -> OrthancClient:
    """A client for one download: no retries (the body is streamed once),
    each read bounded by ``idle``."""
    try:
        return servers.client_for(server, timeout=(instances.CONNECT_TIMEOUT, idle), retries=0)
    except crypto.CredentialError as exc:
        raise _failed(what, server, exc) from None


def study_zip(study: OrthancStudy) -> Response:
    """The study as a ZIP, streamed through the application in chunks."""
    server = study.server
    idle = instances.setting("ORTHANC_DOWNLOAD_IDLE_TIMEOUT")
    what = f"ZIP of study {study.id}"
    client = _client(server, what, idle)
    try:
        upstream = client.archive(study.orthanc_id, idle=idle)
    except OrthancError as exc:
        client.close()
        if isinstance(exc, NotFound):
            raise
        raise _failed(what, server, exc) from None
    instances.note(server)
    from .transport import iter_body

    name = "".join(c if c.isalnum() or c in "-_" else "_"
                   for c in (study.accession_number or study.patient_id or str(study.id)))
    return passthrough(client, upstream, iter_body(upstream, idle=idle), "application/zip",
                       f'attachment; filename="study-{name}.zip"', f"{what} from {server.label}")


def instance_pdf(server: OrthancServer, orthanc_id: str) -> Response:
    """The PDF of an encapsulated PDF instance, streamed; Orthanc's ``/pdf``
    answers 404 for any other instance. Whatever does not start with the
    PDF signature is never passed on as a PDF (:class:`DownloadFailed`)."""
    idle = instances.setting("ORTHANC_DOWNLOAD_IDLE_TIMEOUT")
    what = f"PDF {orthanc_id}"
    client = _client(server, what, idle)
    upstream = None
    from .transport import iter_body

    try:
        upstream = client.pdf(orthanc_id, idle=idle)
        chunks = iter_body(upstream, idle=idle)
        first = b""
        for chunk in chunks:  # enough to see the PDF signature
            first += chunk
            if len(first) >= 5:
                break
    except OrthancError as exc:
        if upstream is not None:
            upstream.close()
        client.close()
        if isinstance(exc, NotFound):
            raise
        raise _failed(what, server, exc) from None
    instances.note(server)
    if not first.startswith(b"%PDF"):
        upstream.close()
        client.close()
        raise DownloadFailed("")
    return passthrough(client, upstream, chain([first], chunks), "application/pdf",
                       f'inline; filename="document-{orthanc_id[:8]}.pdf"', f"{what} from {server.label}")
