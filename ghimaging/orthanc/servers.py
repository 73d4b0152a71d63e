"""Orthanc server configuration: add, edit, check. Shared by the pages, the
API and the CLI. The caller commits (these functions only change the
session); the re-check after new connection details runs in
``background.recheck_in_background``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select

from .. import crypto
from ..exceptions import Conflict, Invalid
from ..extensions import db
from ..models import OrthancServer, OrthancStudy
from ..models._time import utcnow
from .client import BadAnswer, NotFound, OrthancClient, OrthancError, Unauthorized, check_url

VIEWER_PLUGINS = {
    "stone-webviewer": "Stone Web Viewer",
    "ohif": "OHIF",
    "web-viewer": "Orthanc Web Viewer",
    "orthanc-explorer-2": "Orthanc Explorer 2",
}


class ServerError(Invalid):
    """Connection details that cannot be saved; ``field`` names the form
    field at fault (the API's ``fields``). The input itself was refused,
    unless it is one of the two kinds below."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, fields={field or "url": message})
        self.field = field


class CheckFailed(ServerError):
    """The server was asked and failed the check (not reachable, refused
    the password, not an Orthanc): still the input's fault, so 422."""

    code = "check_failed"


class LabelTaken(ServerError, Conflict):
    """Another server has this label (409)."""

    code = "conflict"


@dataclass
class CheckResult:
    version: str
    name: str
    aet: str
    dicom_port: int = 0
    plugins: list[str] = field(default_factory=list)
    last_change: int = 0
    default_encoding: str = ""  # GET /tools/default-encoding: what Orthanc transcodes answers to


def client_for(server: OrthancServer, *, timeout: tuple[float, float] | None = None, retries: int = 2,
               total_timeout: float | None = None) -> OrthancClient:
    """A client with the server's stored credentials; ``timeout`` defaults
    to (3.05, ``ORTHANC_TIMEOUT``)."""
    timeout = timeout or (3.05, float(current_app.config["ORTHANC_TIMEOUT"]))
    return OrthancClient(server.url, server.username, crypto.decrypt(server.password_enc), timeout=timeout,
                         retries=retries, total_timeout=total_timeout)


def client_for_person(server: OrthancServer) -> OrthancClient:
    """A client for work someone waits for ("Sync now", the sync after an
    upload): each call ends after ``ORTHANC_PAGE_DEADLINE`` seconds, as a
    client's own deadline (the sync reads pages in a second thread, where a
    ``deadline()`` scope of the request's thread would not reach)."""
    return client_for(server, total_timeout=float(current_app.config["ORTHANC_PAGE_DEADLINE"]))


def check(client: OrthancClient) -> CheckResult:
    """Talk to Orthanc for real: ``/system``, ``/changes?last``, ``/plugins``."""
    try:
        info = client.system()
        last = client.last_change()
    except NotFound:
        raise BadAnswer(_("%(url)s answers, but it is not an Orthanc server (no /system).", url=client.url)) from None
    try:
        # Orthanc lists its explorer extension script among the plugins.
        plugins = [p for p in client.plugins() if p != "explorer.js"]
    except OrthancError:
        plugins = []
    return CheckResult(version=str(info.get("Version", "")), name=str(info.get("Name", "")),
                       aet=str(info.get("DicomAet", "")), dicom_port=int(info.get("DicomPort") or 0),
                       plugins=plugins, last_change=last, default_encoding=default_encoding(client))


def default_encoding(client: OrthancClient) -> str:
    """Orthanc's DefaultEncoding ("Latin1" unless configured): every answer,
    worklist answers included, is transcoded to it. Empty when unknown."""
    try:
        # Plain text, not JSON; the client's transport keeps its errors and auth.
        resp = client._request("GET", "/tools/default-encoding")
    except OrthancError:
        return ""
    text = resp.text.strip()
    return text if text.isalnum() and len(text) <= 32 else ""


def apply_check(server: OrthancServer, result: CheckResult) -> None:
    """Record what a successful check read from Orthanc on the row."""
    server.validated = True
    server.checked_at = utcnow()
    server.version = result.version[:32]
    server.orthanc_name = result.name[:200]
    server.dicom_aet = result.aet[:64]
    server.dicom_port = result.dicom_port
    server.plugins = ",".join(sorted(result.plugins))
    server.orthanc_last = result.last_change
    server.default_encoding = result.default_encoding


def _clean(label: str, url: str, browser_url: str, username: str) -> tuple[str, str, str, str]:
    label = (label or "").strip()
    if not label or len(label) > 64:
        raise ServerError(_("The label is required (at most %(max)d characters).", max=64), "label")
    if len(url or "") > 500 or len(browser_url or "") > 500:
        raise ServerError(_("An address is at most %(max)d characters.", max=500), "url")
    if len(username or "") > 200:
        raise ServerError(_("The username is at most %(max)d characters.", max=200), "username")
    problem = _unsendable((username or "").strip(), "username")
    if problem or ":" in (username or ""):
        raise ServerError(problem or _("The username cannot contain ':' (HTTP Basic authentication)."), "username")
    try:
        url = check_url(url)
    except ValueError as exc:
        raise ServerError(str(exc), "url") from None
    if browser_url and browser_url.strip():
        try:
            browser_url = check_url(browser_url)
        except ValueError as exc:
            raise ServerError(str(exc), "browser_url") from None
    else:
        browser_url = ""
    return label, url, browser_url, (username or "").strip()


def _unsendable(text: str, what: str) -> str:
    """Why HTTP Basic authentication cannot carry ``text``, or ''. It travels
    as Latin-1: a password with an em dash made every call to Orthanc fail
    inside the HTTP library (a 500 on the pages, a crashed re-check)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return str(_("The username cannot contain control characters.") if what == "username"
                   else _("The password cannot contain control characters."))
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return str(_("The username can only use Latin-1 characters (HTTP Basic authentication cannot carry "
                     "others).") if what == "username" else
                   _("The password can only use Latin-1 characters (HTTP Basic authentication cannot carry "
                     "others)."))
    return ""


def _check_password(password: str | None) -> None:
    if password and len(password) > 500:
        raise ServerError(_("The password is at most %(max)d characters.", max=500), "password")
    problem = _unsendable(password or "", "password")
    if problem:
        raise ServerError(problem, "password")


def _label_taken(label: str, server: OrthancServer | None) -> bool:
    """Another server has this label in any letter case. Compared here, not
    with SQL lower(): SQLite's folds only ASCII, so 'Sala Ä' and 'SALA Ä'
    passed the check and the second one hit the unique index (a 500)."""
    from ..querytools import find_casefolded

    other = find_casefolded(OrthancServer, OrthancServer.label, label)
    return other is not None and other is not server


def check_credentials(url: str, username: str, password: str,
                      timeout: tuple[float, float] | None = None) -> CheckResult:
    """:func:`check` with these credentials, before anything is saved: a
    refusal is a :class:`CheckFailed` on the password, anything else on the
    URL (the form and the command line show it on that field)."""
    timeout = timeout or (3.05, float(current_app.config["ORTHANC_TIMEOUT"]))
    with OrthancClient(url, username, password, retries=0, timeout=timeout) as client:
        try:
            return check(client)
        except Unauthorized as exc:
            raise CheckFailed(str(exc), "password") from None
        except OrthancError as exc:
            raise CheckFailed(str(exc), "url") from None


def add_server(*, label: str, url: str, username: str = "", password: str = "", browser_url: str = "",
               timeout: tuple[float, float] | None = None) -> OrthancServer:
    """Check the server for real, then add it to the session (flushed, so it
    has its id); a server that fails the check is not added, and the error
    says what is wrong."""
    label, url, browser_url, username = _clean(label, url, browser_url, username)
    _check_password(password)
    if _label_taken(label, None):
        raise LabelTaken(_("A server labelled '%(label)s' already exists.", label=label), "label")
    result = check_credentials(url, username, password, timeout)
    server = OrthancServer(label=label, url=url, browser_url=browser_url, username=username,
                           password_enc=crypto.encrypt(password), needs_full_sync=True)
    apply_check(server, result)
    db.session.add(server)
    db.session.flush()
    return server


PASSWORD_AGAIN = _l("Enter the password again for the new address.")
CHANGED = "Connection details changed; checking again."


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a checked URL, default ports filled in: the
    party a stored password was given to."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a row saved by hand with a bad port: no address matches it
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def update_server(server: OrthancServer, *, label: str, url: str, username: str, browser_url: str,
                  password: str | None = None) -> bool:
    """Change the server; returns True when the connection details changed,
    in which case the caller commits, then re-checks (in the background:
    ``background.recheck_in_background``).

    ``password`` None or empty keeps the stored one, but only at the same
    scheme, host and port: the stored password was given for that address
    and must never reach another one (the re-check would send it there).
    A new address therefore needs the password again, or an empty username
    (an Orthanc without authentication), which drops the stored password."""
    label, url, browser_url, username = _clean(label, url, browser_url, username)
    _check_password(password)
    if _label_taken(label, server):
        raise LabelTaken(_("A server labelled '%(label)s' already exists.", label=label), "label")
    moved = origin(url) != origin(server.url)
    drop_password = False
    if moved and not password and server.password_enc:
        if username:
            raise ServerError(str(PASSWORD_AGAIN), "password")
        drop_password = True
    changed = url != server.url or username != server.username or bool(password) or drop_password
    server.label, server.url, server.browser_url, server.username = label, url, browser_url, username
    if password:
        server.password_enc = crypto.encrypt(password)
    elif drop_password:
        server.password_enc = ""
    if changed:
        server.validated = False
        server.last_error = CHANGED
        server.last_error_at = utcnow()
    db.session.flush()
    return changed


def recheck(server: OrthancServer) -> bool:
    """Check a saved server and record the outcome on it (the caller commits)."""
    try:
        with client_for(server, retries=0) as client:
            result = check(client)
    except (OrthancError, crypto.CredentialError, UnicodeError) as exc:
        # UnicodeError: a password saved before it had to be Latin-1.
        server.validated = False
        server.checked_at = utcnow()
        server.last_error = str(exc) if not isinstance(exc, UnicodeError) else (
            "The stored username or password cannot be sent (HTTP Basic authentication carries only Latin-1 "
            "characters); enter them again.")
        server.last_error_at = utcnow()
        return False
    apply_check(server, result)
    if server.last_error == CHANGED:
        server.last_error = ""
    return True


def delete_server(server: OrthancServer) -> None:
    """Forget the server and its mirror rows (nothing is deleted in Orthanc)."""
    db.session.delete(server)
    db.session.flush()


def study_count(server: OrthancServer) -> int:
    return db.session.scalar(select(func.count()).select_from(OrthancStudy)
                             .where(OrthancStudy.server_id == server.id)) or 0


def viewer_links(server: OrthancServer, study: OrthancStudy) -> list[tuple[str, str]]:
    """Viewer URLs on the browser URL (what a user's browser can reach)."""
    base = (server.browser_url or server.url).rstrip("/")
    plugins = server.plugin_set
    links = [("Orthanc Explorer", f"{base}/app/explorer.html#study?uuid={study.orthanc_id}")]
    if "stone-webviewer" in plugins:
        links.append(("Stone Web Viewer", f"{base}/stone-webviewer/index.html?study={study.study_uid}"))
    if "ohif" in plugins:
        links.append(("OHIF", f"{base}/ohif/viewer?StudyInstanceUIDs={study.study_uid}"))
    if "web-viewer" in plugins and study.series:
        links.append(("Web Viewer", f"{base}/web-viewer/app/viewer.html?series={study.series[0].orthanc_id}"))
    if "orthanc-explorer-2" in plugins:
        links.append(("Orthanc Explorer 2", f"{base}/ui/app/#/filtered-studies?StudyInstanceUID={study.study_uid}"))
    return links


def encoding_warnings(server: OrthancServer) -> list[str]:
    """Sentences for the server page, the Worklists page and the API when
    Orthanc would transcode answers to a character set that cannot hold
    every name: names reach the modality as '^' or with letters dropped,
    whatever the .wl file holds."""
    from ..models import Patient
    from ..worklists.charsets import UNICODE_ENCODINGS, orthanc_codec

    encoding = (server.default_encoding or "").strip()
    if not encoding or encoding in UNICODE_ENCODINGS:
        return []
    fix = _("Set \"DefaultEncoding\": \"Utf8\" in Orthanc's configuration file and restart Orthanc.")
    codec = orthanc_codec(encoding)
    if codec is None:
        return [_("Orthanc's default encoding is %(encoding)s, which ghimaging does not know: names may reach "
                  "the modality damaged. %(fix)s", encoding=encoding, fix=fix)]
    if encoding == "Latin1":
        general = _("Orthanc's default encoding is %(encoding)s: it transcodes every worklist answer to it, so "
                    "names that %(encoding)s cannot hold (for example Greek, Cyrillic, Arabic, Hebrew, Chinese, "
                    "Japanese or Korean names and letters outside Latin-1) reach the modality as '^' or with "
                    "letters dropped. %(fix)s", encoding=encoding, fix=fix)
    else:
        general = _("Orthanc's default encoding is %(encoding)s: it transcodes every worklist answer to it, so "
                    "names that %(encoding)s cannot hold (for example Greek, Cyrillic, Arabic, Hebrew, Chinese, "
                    "Japanese or Korean names) reach the modality as '^' or with letters dropped. %(fix)s",
                    encoding=encoding, fix=fix)
    out = [general]
    lost: list[str] = []
    count = 0
    for family, given, puid in db.session.execute(select(Patient.family_name, Patient.given_name, Patient.puid)):
        try:
            f"{family}^{given}".encode(codec)
        except UnicodeEncodeError:
            count += 1
            if len(lost) < 3:
                lost.append(f"{family}, {given} ({puid})" if given else f"{family} ({puid})")
    if count:
        out.append(_("%(count)s patient name(s) in the register cannot be written in Orthanc's default encoding "
                     "%(encoding)s, for example %(examples)s: their worklist items reach the modality damaged. "
                     "%(fix)s", count=count, encoding=encoding, examples="; ".join(lost), fix=fix))
    return out


def server_json(server: OrthancServer) -> dict[str, Any]:
    return {
        "id": server.id, "label": server.label, "url": server.url, "browser_url": server.browser_url,
        "username": server.username, "validated": server.validated, "version": server.version,
        "name": server.orthanc_name, "plugins": sorted(server.plugin_set),
        "last_sync_at": server.last_sync_at.isoformat() + "Z" if server.last_sync_at else None,
        "last_change": server.last_change, "lag": server.lag, "last_error": server.last_error or None,
        "study_count": study_count(server),
        "default_encoding": server.default_encoding or None,
        "warnings": encoding_warnings(server),
    }
