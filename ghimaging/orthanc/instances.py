"""Instances are not mirrored; pages fetch them from Orthanc when needed.

A page that asks Orthanc while a person waits does it within a deadline
shared by all its calls (``ORTHANC_PAGE_DEADLINE``, 10 s from the first
one): an Orthanc that accepts connections and never answers costs a page at
most that long, and the page still renders, saying so, instead of a worker
hanging until gunicorn kills it. Each process also remembers per server how
the last call went, so pages can say "Orthanc did not answer" without
waiting again and lookups that are only nice to have can skip an Orthanc
that just failed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import current_app, g

from .. import crypto
from ..models import OrthancSeries, OrthancServer
from .client import OrthancClient, OrthancError, TimedOut, Unreachable, deadline
from .servers import client_for

log = logging.getLogger(__name__)
_ID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
LIMIT = 24

PROBE_SECONDS = 3.0  # the study page's "does Orthanc answer?" check
REMEMBER_SECONDS = 30.0  # how long an answer is taken as the state of a server
TRUST_FAILURE_SECONDS = 10.0  # how long a failure is, before asking again
CONNECT_TIMEOUT = 3.05


def setting(name: str) -> float:
    """A deadline in seconds from the configuration (``config.py`` holds the
    defaults and refuses values that are not positive)."""
    return float(current_app.config[name])


def valid_id(orthanc_id: str) -> bool:
    return bool(_ID.match(orthanc_id or ""))


# -- what the process knows of each server -------------------------------------

def _states() -> dict[tuple[int, str], tuple[float, str]]:
    """(server id, URL) -> (time.monotonic() of the last call, "" when
    Orthanc answered, else the message for people). Per application."""
    states: dict[tuple[int, str], tuple[float, str]] = current_app.extensions.setdefault(
        "ghimaging.orthanc_health", {})
    return states


@dataclass(frozen=True)
class ServerRef:
    """The columns of a server that calls need, read without loading the row
    (the viewer reads them with a frame's series in one light query)."""

    id: int
    url: str
    username: str
    password_enc: str
    label: str


Server = OrthancServer | ServerRef


def _key(server: Server) -> tuple[int, str]:
    return (server.id, server.url)


def failure_message(server: Server, exc: Exception) -> str:
    """What a page says when Orthanc did not answer. It names the server by
    its label: Orthanc's address is not shown to users."""
    if isinstance(exc, TimedOut):
        return f"Orthanc {server.label} did not answer in time."
    if isinstance(exc, Unreachable):
        return f"Orthanc {server.label} cannot be reached."
    if isinstance(exc, crypto.CredentialError):
        return f"The stored password of Orthanc {server.label} cannot be read; an administrator must enter it again."
    return f"Orthanc {server.label} gave an unexpected answer."


def note(server: Server, exc: Exception | None = None) -> None:
    """Record how a call to ``server`` went (None: it answered). Only not
    answering counts as a failure: a 404 or 415 is an answer."""
    failed = isinstance(exc, (Unreachable, crypto.CredentialError))
    _states()[_key(server)] = (time.monotonic(), failure_message(server, exc) if exc is not None and failed else "")


def recent_failure(server: Server, within: float = REMEMBER_SECONDS) -> str:
    """The message of a failure recorded less than ``within`` seconds ago, or ""."""
    at, message = _states().get(_key(server), (0.0, ""))
    return message if message and time.monotonic() - at < within else ""


def _recent_answer(server: OrthancServer) -> bool:
    at, message = _states().get(_key(server), (None, ""))
    return at is not None and not message and time.monotonic() - at < REMEMBER_SECONDS


# -- calls made while a person waits -----------------------------------------------

def page_deadline() -> float:
    """When this request's Orthanc calls must be over (``time.monotonic()``):
    ``ORTHANC_PAGE_DEADLINE`` after the first of them, kept in ``g``."""
    if "orthanc_page_deadline" not in g:
        g.orthanc_page_deadline = time.monotonic() + setting("ORTHANC_PAGE_DEADLINE")
    return float(g.orthanc_page_deadline)


@contextmanager
def calling(server: OrthancServer, seconds: float | None = None, retries: int = 1) -> Iterator[OrthancClient]:
    """A client for calls a page makes: within the page's deadline (and
    ``seconds`` from now, if given), each outcome recorded for the server.
    Raises the client's errors and ``crypto.CredentialError``."""
    end = page_deadline()
    if seconds is not None:
        end = min(end, time.monotonic() + seconds)
    read = max(0.1, min(end - time.monotonic(), float(current_app.config.get("ORTHANC_TIMEOUT", 30))))
    try:
        with deadline(at=end), client_for(server, timeout=(CONNECT_TIMEOUT, read), retries=retries) as client:
            yield client
    except (OrthancError, crypto.CredentialError) as exc:
        note(server, exc)
        raise
    note(server)


class InstanceList(list[dict[str, Any]]):
    """Instances of a series for a page; ``error`` says why the list is
    empty when Orthanc could not give it (the template shows it)."""

    error: str = ""


def of_series(server: OrthancServer, series: OrthancSeries, limit: int = LIMIT) -> InstanceList:
    """[{"id", "number"}] sorted by InstanceNumber; empty, with ``error``,
    when Orthanc is away or slow (the page still shows the rest)."""
    out = InstanceList()
    try:
        with calling(server) as client:
            items = client.series_instances(series.orthanc_id)
    except (OrthancError, crypto.CredentialError) as exc:
        log.warning("instances of series %s: %s", series.orthanc_id, exc)
        out.error = failure_message(server, exc)
        return out
    for it in items if isinstance(items, list) else []:
        tags = it.get("MainDicomTags") or {}
        try:
            number = int(str(tags.get("InstanceNumber", "")).strip() or 0)
        except ValueError:
            number = 0
        out.append({"id": it.get("ID", ""), "number": number})
    out.sort(key=lambda x: x["number"])
    del out[limit:]
    return out


_NOTICE_TAIL = " Previews and downloads of its images may fail; try again later."


def notice(server: OrthancServer) -> str:
    """A sentence for a page whose pictures come from ``server`` when it does
    not answer now, else "". Asks Orthanc (``/system``, a few seconds at
    most) unless it answered in the last half minute or failed to in the
    last ten seconds."""
    if _recent_answer(server):
        return ""
    failed = recent_failure(server, within=TRUST_FAILURE_SECONDS)
    if failed:
        return failed + _NOTICE_TAIL
    try:
        with calling(server, seconds=PROBE_SECONDS, retries=0) as client:
            client.system()
    except (Unreachable, crypto.CredentialError) as exc:
        return failure_message(server, exc) + _NOTICE_TAIL
    except OrthancError:  # it answered: other pages say what is wrong with it
        return ""
    return ""


# -- the viewer: many small calls in a row -------------------------------------------

def _pool() -> dict[tuple[int, str, str, str], OrthancClient]:
    pool: dict[tuple[int, str, str, str], OrthancClient] = current_app.extensions.setdefault(
        "ghimaging.viewer_clients", {})
    return pool


def _pooled(server: Server) -> OrthancClient:
    """One client per server and process, kept: the viewer asks Orthanc for
    a frame at every scroll step, and a new client each time would pay for
    decrypting the password and a new connection per frame. Keyed on the
    stored address and credentials, so a changed server gets a new one.
    Requests' sessions are safe to share between threads for these GETs;
    each call's deadline is the calling thread's own (see :mod:`.deadlines`).
    One retry: a kept connection that Orthanc closed meanwhile is opened
    again rather than failing a frame."""
    pool = _pool()
    key = (server.id, server.url, server.username, server.password_enc)
    client = pool.get(key)
    if client is None:
        for old in [k for k in pool if k[0] == server.id]:
            pool.pop(old).close()
        client = OrthancClient(server.url, server.username, crypto.decrypt(server.password_enc), retries=1,
                               timeout=(CONNECT_TIMEOUT, float(current_app.config.get("ORTHANC_TIMEOUT", 30))))
        # The environment's proxy and CA bundle settings, read once for the
        # kept client instead of at every call (as requests does by default).
        session = client.session
        env = session.merge_environment_settings(client.url, {}, None, None, None)
        session.proxies.update(env["proxies"])
        session.verify = env["verify"]
        session.trust_env = False
        pool[key] = client
    return client


@contextmanager
def viewing(server: Server, seconds: float) -> Iterator[OrthancClient]:
    """The kept client of ``server`` for calls that must end within
    ``seconds``; each outcome is recorded for the server, as :func:`calling`
    does. Raises the client's errors and ``crypto.CredentialError``."""
    try:
        client = _pooled(server)
        with deadline(seconds):
            yield client
    except (OrthancError, crypto.CredentialError) as exc:
        note(server, exc)
        raise
    note(server)


def _members() -> dict[str, frozenset[str]]:
    members: dict[str, frozenset[str]] = current_app.extensions.setdefault("ghimaging.series_members", {})
    return members


def remember_members(series_orthanc_id: str, instance_ids: Iterable[str]) -> None:
    """Instances seen in a series (an Orthanc id is a hash of the UIDs, so an
    instance never moves to another series; a series can only gain some)."""
    members = _members()
    if len(members) >= 2_000:  # bounded
        members.clear()
    members[series_orthanc_id] = members.get(series_orthanc_id, frozenset()) | frozenset(instance_ids)


def in_series(client: OrthancClient, series_orthanc_id: str, instance_id: str) -> bool:
    """Whether ``instance_id`` belongs to the series: from what this process
    has seen, else asked of Orthanc once (``/series/{id}``)."""
    if instance_id in _members().get(series_orthanc_id, frozenset()):
        return True
    found = client.series(series_orthanc_id).get("Instances") or []
    remember_members(series_orthanc_id, [str(i) for i in found])
    return instance_id in _members()[series_orthanc_id]
