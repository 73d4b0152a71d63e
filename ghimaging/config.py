"""Settings: built-in defaults, then ``instance/config.py``, then ``GHIMAGING_*``
environment variables, then the test config.

Environment values are parsed strictly against the type of the default so a
typo such as ``GHIMAGING_ITEMS_PER_PAGE=ten`` stops the start-up with a clear
message instead of surfacing later as a 500.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

ENV_PREFIX = "GHIMAGING_"
log = logging.getLogger(__name__)


class ConfigError(RuntimeError):
    """A setting has a value the application cannot use."""


class Defaults:
    SECRET_KEY: str | None = None
    DATABASE_URL: str | None = None  # None: SQLite file in the instance folder
    SQLITE_BUSY_TIMEOUT_MS = 10_000
    # Accession numbers are DICOM SH: at most 16 characters including the prefix.
    ACCESSION_PREFIX = "GH"
    ORDER_PREFIX = "ORD"
    # Empty: StudyInstanceUIDs are 2.25.<uuid as integer>. Otherwise a registered
    # organisation root such as 1.2.826.0.1.3680043.10.1234.
    ORG_ROOT = ""
    ITEMS_PER_PAGE = 25
    # Sign-in throttling (see auth/throttle.py): failures for a username from
    # one address before each further one doubles the wait (four times as
    # many for any usernames from one address), and the longest wait.
    LOGIN_MAX_FAILURES = 5
    LOGIN_LOCKOUT_SECONDS = 300
    RESULT_IMAGE_MAX_BYTES = 20 * 1024 * 1024
    MAX_CONTENT_LENGTH = 64 * 1024 * 1024
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    # One switch for both cookies: either setting true makes the session and
    # the remember-me cookie Secure (see secure_cookies).
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_DURATION = timedelta(days=7)
    # Number of reverse proxies in front (X-Forwarded-For/Proto trusted from
    # that many hops); 0 when clients connect directly.
    PROXY_COUNT = 0
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    # The session cookie is sent again when the server-side session is
    # touched (once a minute of use, auth/sessions.py), so its expiry moves
    # with the session's; signing it anew on every request was about a
    # sixth of ghimaging's own time on a viewer frame (measured in process).
    SESSION_REFRESH_EACH_REQUEST = False
    WTF_CSRF_TIME_LIMIT = 12 * 3600
    WORKLIST_DIR: str | None = None
    # Seconds between incremental Orthanc syncs and between deletion
    # reconciliations; 0 disables.
    ORTHANC_SYNC_INTERVAL = 60
    ORTHANC_RECONCILE_INTERVAL = 900
    # Whether serving processes run the background work (Orthanc sync,
    # GNU Health) themselves; false where `ghimaging worker` runs it apart.
    RUN_BACKGROUND = True
    ORTHANC_TIMEOUT = 30
    # Calls made while someone waits (seconds): all of one page's calls, one
    # preview, and a ZIP/PDF download's wait to start and between reads.
    ORTHANC_PAGE_DEADLINE = 10
    ORTHANC_PREVIEW_DEADLINE = 8
    ORTHANC_DOWNLOAD_IDLE_TIMEOUT = 30
    # GNU Health's merge-id rule for matching studies to requests (off: only
    # StudyInstanceUID and AccessionNumber link automatically).
    MATCH_MERGE_ID = False
    # DICOM upload bounds: one request, the files an archive may expand to,
    # their total size, and one file.
    UPLOAD_MAX_BYTES = 2 * 1024**3
    UPLOAD_MAX_FILES = 20_000
    UPLOAD_MAX_EXPANDED_BYTES = 4 * 1024**3
    UPLOAD_MAX_FILE_BYTES = 1024**3
    # Connections that send uploaded files to Orthanc at the same time.
    UPLOAD_CONNECTIONS = 3
    # Seconds Orthanc may stay silent while an uploaded file is sent and before it
    # answers (plus 1 s per 10 MB of the file), and seconds one upload may spend sending.
    UPLOAD_ORTHANC_TIMEOUT = 30
    UPLOAD_DEADLINE = 600
    # JSON API bodies (api/routes.py body()): bytes read at most (413 beyond)
    # and nesting levels (400 beyond).
    API_MAX_JSON_BYTES = 1024 * 1024
    API_MAX_JSON_DEPTH = 32
    # GNU Health sync (the server, user and password are set on its admin
    # page or with ``ghimaging gnuhealth configure``). Seconds between pulls
    # of GNU Health's requested imaging requests (0: no automatic pull);
    # seconds one XML-RPC call may take; attempts before an outbox item is
    # marked failed; the longest wait between two attempts.
    GNUHEALTH_PULL_INTERVAL = 300
    GNUHEALTH_TIMEOUT = 20
    # Seconds a page waits for GNU Health in all (search, Test connection, Sync now).
    GNUHEALTH_PAGE_DEADLINE = 10
    GNUHEALTH_MAX_ATTEMPTS = 12
    GNUHEALTH_RETRY_MAX_SECONDS = 3600


def _parse(name: str, raw: str, default: Any) -> Any:
    if isinstance(default, bool):
        low = raw.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{ENV_PREFIX}{name} must be true or false, not {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a whole number, not {raw!r}") from None
    if isinstance(default, timedelta):
        try:
            return timedelta(seconds=int(raw))
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a number of seconds, not {raw!r}") from None
    return raw


def from_environment(environ: Mapping[str, str], known: Mapping[str, Any]) -> dict[str, Any]:
    """Settings named ``GHIMAGING_<NAME>`` for every known NAME.

    Unknown ``GHIMAGING_*`` names are refused: a misspelt variable that is
    silently ignored is worse than a start-up error.
    """
    out: dict[str, Any] = {}
    allowed = set(known) | {"INSTANCE_PATH"}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):]
        if name.startswith("TEST_"):
            continue  # belongs to the test suite, not the application
        if name not in allowed:
            raise ConfigError(f"unknown setting {key}; known: {', '.join(sorted(allowed))}")
        if name == "INSTANCE_PATH":
            continue
        out[name] = _parse(name, raw, known.get(name))
    return out


def default_settings() -> dict[str, Any]:
    return {k: getattr(Defaults, k) for k in dir(Defaults) if k.isupper()}


def secure_cookies(config: dict[str, Any]) -> None:
    """The session and remember-me cookies are Secure together: a remember-me
    cookie sent over plain HTTP would give a sign-in for days to whoever
    listens, whatever the session cookie does."""
    for key in ("SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"):
        if not isinstance(config.get(key), bool):
            raise ConfigError(f"{key} must be True or False, not {config.get(key)!r}")
    secure = config["SESSION_COOKIE_SECURE"] or config["REMEMBER_COOKIE_SECURE"]
    config["SESSION_COOKIE_SECURE"] = config["REMEMBER_COOKIE_SECURE"] = secure


# -- files at rest --------------------------------------------------------------
#
# The instance folder holds the patients' database, report images and the
# keys that sign sessions and decrypt stored passwords: nobody but the
# application's user may read it, whatever the umask the process started with.

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Secret files the application writes into the instance folder.
INSTANCE_SECRETS = ("secret_key", "credentials.key", "initial-admin-password")


def _tighten(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` if it grants more; a file we may not change
    is left as it is, with a warning."""
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except PermissionError:
            log.warning("cannot restrict %s to mode %o: not its owner", path, mode)


def private_dir(path: Path) -> Path:
    """``path`` (created with its parents if missing) open to its owner only.

    A shared folder (sticky bit, as /tmp) given as the instance folder by
    mistake is left alone rather than closed to everyone else.
    """
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if path.stat().st_mode & stat.S_ISVTX:
        log.warning("%s is a shared folder (sticky bit): give ghimaging a folder of its own", path)
        return path
    _tighten(path, PRIVATE_DIR_MODE)
    return path


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` readable by the owner only, whatever the
    umask. ``exclusive``: fail with FileExistsError if it exists."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # an existing file, or a umask that adds nothing
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def sqlite_path(database_url: str) -> Path | None:
    """The file of a SQLite URL, or None (another database, or in memory)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:" \
            or url.database.startswith("file:"):
        return None
    return Path(url.database)


def secure_instance(instance_path: Path, database_url: str) -> None:
    """The instance folder 0700; its secrets, the SQLite database and its
    -wal/-shm/-journal 0600. The database file is created here, 0600 and
    empty (an empty SQLite database), before SQLite would create it with the
    umask's mode; SQLite gives the files beside it the database's mode.
    Files left readable by an older version are tightened."""
    private_dir(instance_path)
    for name in INSTANCE_SECRETS:
        _tighten(instance_path / name, PRIVATE_FILE_MODE)
    db_file = sqlite_path(database_url)
    if db_file is None:
        return
    if not db_file.exists() and db_file.parent.is_dir():
        with contextlib.suppress(FileExistsError):  # another worker created it first
            write_private(db_file, b"", exclusive=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        _tighten(db_file.with_name(db_file.name + suffix), PRIVATE_FILE_MODE)


def ensure_secret_key(instance_path: Path) -> str:
    """Read the instance's secret key, creating it on first run (mode 0600)."""
    path = instance_path / "secret_key"
    for attempt in range(12):
        if path.exists():
            key = path.read_text().strip()
            if key:
                return key
            if attempt < 10:
                import time

                time.sleep(0.1)  # another worker may be writing it right now
                continue
            path.unlink(missing_ok=True)  # empty for a second: a broken file, replace it
        key = secrets.token_urlsafe(48)
        try:
            # Exclusive: when several workers start at once, one writes the
            # key and the others read it, so all sign with the same key.
            write_private(path, (key + "\n").encode(), exclusive=True)
        except FileExistsError:
            continue
        return key
    raise ConfigError(f"cannot create the secret key file {path}")


def validate(config: Mapping[str, Any]) -> None:
    prefix = config["ACCESSION_PREFIX"]
    if not re.fullmatch(r"[A-Za-z0-9_-]{0,8}", prefix):
        raise ConfigError("ACCESSION_PREFIX must be 0-8 letters, digits, '-' or '_'")
    root = config["ORG_ROOT"]
    if root and (len(root) > 40 or not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", root)):
        raise ConfigError("ORG_ROOT must be a DICOM UID root (digits and dots, at most 40 characters)")
    if not re.fullmatch(r"[A-Za-z0-9_-]{0,16}", config["ORDER_PREFIX"]):
        raise ConfigError("ORDER_PREFIX must be 0-16 letters, digits, '-' or '_'")
    for key in ("ORTHANC_TIMEOUT", "ORTHANC_PAGE_DEADLINE", "ORTHANC_PREVIEW_DEADLINE",
                "ORTHANC_DOWNLOAD_IDLE_TIMEOUT", "UPLOAD_ORTHANC_TIMEOUT", "UPLOAD_DEADLINE"):
        if config[key] <= 0:
            raise ConfigError(f"{key} must be a positive number of seconds")
    if config["PROXY_COUNT"] < 0:
        raise ConfigError("PROXY_COUNT must be 0 or more")
    for key in ("ORTHANC_SYNC_INTERVAL", "ORTHANC_RECONCILE_INTERVAL"):
        if config[key] < 0:
            raise ConfigError(f"{key} must be 0 (off) or a number of seconds")
    if config["GNUHEALTH_PULL_INTERVAL"] < 0:
        raise ConfigError("GNUHEALTH_PULL_INTERVAL must be 0 (off) or a number of seconds")
    for key in ("GNUHEALTH_TIMEOUT", "GNUHEALTH_PAGE_DEADLINE"):
        if config[key] <= 0:
            raise ConfigError(f"{key} must be a positive number of seconds")
    if config["GNUHEALTH_MAX_ATTEMPTS"] < 1:
        raise ConfigError("GNUHEALTH_MAX_ATTEMPTS must be at least 1")
    if config["GNUHEALTH_RETRY_MAX_SECONDS"] < 1:
        raise ConfigError("GNUHEALTH_RETRY_MAX_SECONDS must be at least 1")
    for key in ("API_MAX_JSON_BYTES", "API_MAX_JSON_DEPTH"):
        if config[key] < 1:
            raise ConfigError(f"{key} must be at least 1")
    if config["ITEMS_PER_PAGE"] < 1:
        raise ConfigError("ITEMS_PER_PAGE must be at least 1")
    if config["LOGIN_MAX_FAILURES"] < 1:
        raise ConfigError("LOGIN_MAX_FAILURES must be at least 1")
    if config["LOGIN_LOCKOUT_SECONDS"] < 1:
        raise ConfigError("LOGIN_LOCKOUT_SECONDS must be at least 1 (the longest wait between sign-in attempts)")
