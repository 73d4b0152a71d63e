"""Backup and restore of one instance: its database and the files of the
instance folder that the database does not hold.

A backup is one gzip'd tar file, private to its owner (0600):

- ``manifest.json``: what it holds, the database kind and schema revision;
- ``database.sqlite`` (SQLite's online backup API, safe while the app runs
  and writes) or ``database.pgdump`` (``pg_dump --format=custom``);
- ``files/secret_key`` and ``files/credentials.key``: without the second,
  the stored Orthanc and GNU Health passwords cannot be read back;
- ``files/result_images/…``: the images radiologists added to results.

Not kept, because they are made again from the database: the worklist
files (``ghimaging worklists write``), the upload spool, the one-time
password of the first admin.

Restore goes into an *empty* instance of the same database kind (a new
box, or one being rebuilt), refuses to overwrite data unless forced, checks
every member's name before writing it, and brings an older schema up to
date with the migrations. PostgreSQL's password reaches ``pg_dump`` and
``pg_restore`` through their environment, never their command line.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL, make_url

from .exceptions import Conflict, Invalid, UpstreamFailure
from .extensions import db
from .models._time import utcnow

FORMAT = "ghimaging-backup/1"
KEY_FILES = ("secret_key", "credentials.key")
FOLDERS = ("result_images",)
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


class BackupError(Invalid):
    """A backup file that cannot be restored here, and why."""

    code = "backup"


@dataclass
class Summary:
    path: Path
    database: str
    revision: str
    files: int

    def line(self) -> str:
        return f"{self.path}: {self.database} database at revision {self.revision}, {self.files} instance file(s)"


# -- backup -----------------------------------------------------------------------

def backup(target: Path) -> Summary:
    """Write a backup of this instance to ``target`` (replaced atomically)."""
    url = make_url(current_app.config["DATABASE_URL"])
    kind = url.get_backend_name()
    instance = Path(current_app.instance_path)
    revision = _revision()
    target = target.resolve()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        folder = tempfile.TemporaryDirectory(prefix="ghimaging-backup-", dir=target.parent)
    except OSError as exc:  # the installed command runs as the service user: /root is not its
        import getpass

        raise BackupError(_("The backup cannot write into %(folder)s (%(error)s): choose a folder user %(user)s "
                            "may write, such as /var/backups/ghimaging.", folder=target.parent, error=exc.strerror,
                            user=getpass.getuser())) from None
    with folder as tmp:
        work = Path(tmp)
        if kind == "sqlite":
            dump, name = work / "database.sqlite", "database.sqlite"
            _sqlite_copy(Path(str(url.database)), dump)
        elif kind == "postgresql":
            dump, name = work / "database.pgdump", "database.pgdump"
            _pg("pg_dump", url, "--format=custom", "--no-owner", "--no-privileges", "--file", str(dump))
        else:
            raise BackupError(_("Backups of a %(kind)s database are not supported.", kind=kind))
        members = list(_instance_files(instance))
        manifest = {"format": FORMAT, "created_at": utcnow().isoformat(timespec="seconds") + "Z",
                    "database": kind, "revision": revision, "files": [rel for rel, _path in members]}
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
        partial = work / "backup.tar.gz"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            tar.add(work / "manifest.json", "manifest.json")
            tar.add(dump, name)
            for rel, path in members:
                tar.add(path, f"files/{rel}", recursive=False)
        os.replace(partial, target)
    return Summary(target, kind, revision, len(members))


def _revision() -> str:
    return str(db.session.scalar(text("SELECT version_num FROM alembic_version")) or "")


def _instance_files(instance: Path) -> Iterator[tuple[str, Path]]:
    for name in KEY_FILES:
        if (instance / name).is_file():
            yield name, instance / name
    for folder in FOLDERS:
        root = instance / folder
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.is_symlink():
                    yield str(PurePosixPath(*path.relative_to(instance).parts)), path


def _sqlite_copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy even while the app writes
    (WAL), page by page, without stopping anyone."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _pg(program: str, url: URL, *args: str) -> None:
    env = {**os.environ, "PGHOST": url.host or "", "PGPORT": str(url.port or 5432), "PGUSER": url.username or "",
           "PGPASSWORD": url.password or "", "PGDATABASE": url.database or ""}
    exe = shutil.which(program)
    if exe is None:
        raise UpstreamFailure(_("%(program)s is not installed (Debian: apt-get install postgresql-client).",
                                program=program), code="pg_tools")
    done = subprocess.run([exe, *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise UpstreamFailure(_("%(program)s failed: %(error)s", program=program, error=done.stderr.strip()[-500:]),
                              code="pg_tools")


# -- restore -----------------------------------------------------------------------

def restore(source: Path, *, force: bool = False) -> Summary:
    """Restore ``source`` into this instance; the app must not be serving
    it meanwhile (stop the service first)."""
    url = make_url(current_app.config["DATABASE_URL"])
    kind = url.get_backend_name()
    instance = Path(current_app.instance_path)
    with tempfile.TemporaryDirectory(prefix="ghimaging-restore-", dir=instance) as tmp:
        work = Path(tmp)
        manifest = _unpack(source, work)
        if manifest.get("database") != kind:
            raise BackupError(_("This backup holds a %(theirs)s database; this instance uses %(ours)s. Restore "
                                "into an instance of the same kind.", theirs=manifest.get("database"), ours=kind))
        if not force and _has_data():
            raise Conflict(_("This instance already holds data; restore goes into an empty instance (use --force "
                             "to replace everything in it)."), code="not_empty")
        db.session.remove()
        db.engine.dispose()
        if kind == "sqlite":
            _sqlite_restore(work / "database.sqlite", Path(str(url.database)))
        else:
            _pg("pg_restore", url, "--clean", "--if-exists", "--no-owner", "--no-privileges",
                "--single-transaction", "--dbname", url.database or "", str(work / "database.pgdump"))
        files = _place_files(work / "files", instance, manifest)
    _upgrade()
    return Summary(source, kind, str(manifest.get("revision", "")), files)


def _unpack(source: Path, work: Path) -> dict[str, Any]:
    """Only the names a backup has, only regular files, never a path that
    leaves the working folder."""
    try:
        tar = tarfile.open(source, "r:gz")  # noqa: SIM115 - closed by the with below; open errors are ours to word
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(_("%(file)s is not a ghimaging backup (%(error)s).", file=source, error=exc)) from None
    with tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts
            allowed = (member.name in ("manifest.json", "database.sqlite", "database.pgdump")
                       or (len(parts) >= 2 and parts[0] == "files"))
            if not member.isfile() or not allowed or ".." in parts or member.name.startswith("/"):
                raise BackupError(_("%(file)s holds an unexpected entry (%(entry)s); nothing was restored.",
                                    file=source, entry=repr(member.name)))
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+; Debian 12 ships 3.11.2
            tar.extractall(work, filter="data")
        else:
            tar.extractall(work)  # every member was checked above
    try:
        manifest: dict[str, Any] = json.loads((work / "manifest.json").read_text())
    except (OSError, ValueError):
        raise BackupError(_("%(file)s has no readable manifest; nothing was restored.", file=source)) from None
    if manifest.get("format") != FORMAT:
        raise BackupError(_("%(file)s is not a backup this version can read (format %(format)s).", file=source,
                            format=repr(manifest.get("format"))))
    return manifest


def _has_data() -> bool:
    if not inspect(db.engine).has_table("users"):
        return False
    return bool(db.session.scalar(text("SELECT count(*) FROM users")))


def _sqlite_restore(copy: Path, target: Path) -> None:
    check = sqlite3.connect(copy)
    try:
        ok = check.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        check.close()
    if ok != "ok":
        raise BackupError(_("The database in the backup is damaged (%(error)s); nothing was restored.", error=ok))
    for suffix in ("-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.chmod(copy, PRIVATE_FILE)
    os.replace(copy, target)


def _place_files(files: Path, instance: Path, manifest: dict[str, Any]) -> int:
    count = 0
    for rel in manifest.get("files", []):
        source = files / rel
        if not source.is_file():
            raise BackupError(_("The backup lacks %(file)s, which its manifest lists.", file=rel))
        dest = instance / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        os.chmod(source, PRIVATE_FILE)
        os.replace(source, dest)
        count += 1
    return count


def _upgrade() -> None:
    """A backup of an older version comes up to this version's schema."""
    from flask_migrate import upgrade

    from . import MIGRATIONS_DIR

    upgrade(directory=str(MIGRATIONS_DIR))
