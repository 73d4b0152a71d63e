"""The ``ghimaging`` command. Every command works through the same services
as the pages and the API and commits once when they succeeded;
``flask --app ghimaging`` gives the same commands.

Importing this module costs click alone: the application is created by the
commands that need it (``@with_appcontext``), the services they call are
imported inside them, and the commands kept elsewhere are listed in
:data:`LAZY` (see :mod:`ghimaging.cligroup`). ``ghimaging --help`` and the
gunicorn master of ``ghimaging serve`` never build the application.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import gunicorn_conf
from .cligroup import CommandGroup, LazyCommand, current_app_object, with_appcontext

if TYPE_CHECKING:
    from flask import Flask

#: Commands kept in other modules: name -> ("module:attribute", the line
#: ``ghimaging --help`` shows for it, which must be the command's own).
LAZY: dict[str, tuple[str, str]] = {
    "gnuhealth": ("ghimaging.gnuhealth.commands:gnuhealth_group", "Optional sync with a GNU Health server."),
    "orthanc": ("ghimaging.orthanc.commands:orthanc_group", "Orthanc servers and the push that wakes the sync."),
    "db": ("flask_migrate.cli:db", "Perform database migrations."),
}
#: Flask's own commands, which ``flask --app ghimaging`` has from Flask itself.
FLASK_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("flask.cli:run_command", "Run a development server."),
    "shell": ("flask.cli:shell_command", "Run a shell in the app context."),
    "routes": ("flask.cli:routes_command", "Show the routes for the app."),
}


class _Roles(click.Choice):  # type: ignore[type-arg]
    """The roles of ``ghimaging.models.Role``, read when an option is parsed
    or its help shown (the models are not imported to list the commands)."""

    def __init__(self) -> None:
        super().__init__(())

    @property  # type: ignore[override]
    def choices(self) -> Sequence[str]:
        from .models import Role

        return tuple(r.value for r in Role)

    @choices.setter
    def choices(self, value: Sequence[str]) -> None:
        pass


@click.command("init")
@click.option("--create-admin", is_flag=True,
              help="If there are no users yet, create 'admin' with a random password and print it once.")
@with_appcontext
def init_command(create_admin: bool) -> None:
    """Create or upgrade the database and seed the catalogue (idempotent)."""
    import logging

    from flask_migrate import upgrade

    from . import MIGRATIONS_DIR
    from .catalog.service import seed
    from .extensions import db

    current_app = current_app_object()

    logging.getLogger("alembic").setLevel(logging.WARNING)
    upgrade(directory=str(MIGRATIONS_DIR))
    added = seed()
    from .worklists.templates import TemplateError, load_shipped

    try:
        refreshed = load_shipped()
    except TemplateError as exc:  # a shipped template that fails the sandbox check
        raise click.ClickException(str(exc)) from None
    password = _first_admin() if create_admin else None
    db.session.commit()
    url = current_app.config["SQLALCHEMY_DATABASE_URI"]
    shown = url.split("@")[-1] if "@" in url else url
    click.echo(f"Database ready ({shown}); {added} modality type(s) added, "
               f"{refreshed} worklist template(s) loaded or refreshed.")
    click.echo(f"Instance folder: {current_app.instance_path}")
    if password is not None:
        _tell_first_password(password)


def _first_admin() -> str | None:
    """A first administrator for a fresh install, so that the one-command
    start gives a usable application without an interactive prompt; its
    password, or None when there are users already."""
    import secrets

    from sqlalchemy import func, select

    from .auth import service
    from .extensions import db
    from .models import Role, User

    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    password = secrets.token_urlsafe(12)
    service.create_user("admin", password, [Role.ADMIN], full_name="Administrator",
                        must_change_password=True)
    return password


def _tell_first_password(password: str) -> None:
    """Print the first administrator's password once and keep it in a
    private file (written after the commit: no file for a user not made)."""
    import os

    from .auth.gate import PRINTED_PASSWORD_FILE

    path = os.path.join(current_app_object().instance_path, PRINTED_PASSWORD_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    click.echo("")
    click.echo("  First administrator created:  username admin   password " + password)
    click.echo(f"  (also saved in {path}; you choose your own password at the first sign-in, then delete that file)")
    click.echo("")


@click.command("create-user")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True,
              type=_Roles(), help="Repeat for several roles.")
@click.option("--full-name", default="")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create_user_command(username: str, roles: tuple[str, ...], full_name: str, password_stdin: bool) -> None:
    """Add a user (there is no self-registration)."""
    from .auth import service
    from .extensions import db
    from .models import Role

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = service.create_user(username, password, [Role(r) for r in roles], full_name=full_name,
                                   must_change_password=True)
    except service.UserError as exc:
        raise click.ClickException(exc.message) from None
    db.session.commit()
    click.echo(f"User {user.username} created with roles: {', '.join(sorted(r.value for r in user.roles))}.")


@click.command("create-token")
@click.argument("username")
@click.option("--name", default="cli", help="What the token is for.")
@with_appcontext
def create_token_command(username: str, name: str) -> None:
    """Print a new API token for USERNAME (shown once, stored hashed)."""
    from .auth import service
    from .extensions import db

    user = service.find_user(username)
    if user is None or not user.active:
        raise click.ClickException(f"No active user {username!r}.")
    token = service.create_token(user, name)
    db.session.commit()
    click.echo(token)


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind; 0.0.0.0 for the LAN.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=gunicorn_conf.workers, show_default=True, type=click.IntRange(min=1),
              help="Worker processes (one holds the background work too; more cost memory, see gunicorn_conf).")
@click.option("--threads", default=gunicorn_conf.threads, show_default=True, type=click.IntRange(min=1),
              help="Requests each worker serves at once (a slow Orthanc or client holds one thread).")
@click.option("--timeout", default=gunicorn_conf.timeout, show_default=True, type=click.IntRange(min=0),
              help="Seconds before a worker whose main loop stopped is replaced (not a limit on one request).")
def serve_command(host: str, port: int, workers: int, threads: int, timeout: int) -> None:
    """Run the application under gunicorn, threaded workers (see
    ``ghimaging/gunicorn_conf.py``)."""
    import os

    # This process becomes gunicorn's master (same pid, for systemd): it then
    # holds gunicorn alone, not this command line, and builds no application;
    # each worker builds its own and starts the background threads.
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:ghimaging.gunicorn_conf",
            "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
            "--timeout", str(timeout), gunicorn_conf.APP]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


@click.command("worker")
@with_appcontext
def worker_command() -> None:
    """Run the background work alone (Orthanc sync, worklist files, GNU
    Health outbox) until stopped (SIGTERM or Ctrl-C). For several app hosts
    on one PostgreSQL: run it beside them, or let every app process run it
    too; the per-server lease keeps one sync at a time either way."""
    import signal
    import threading

    from . import background

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    background.start(current_app_object(), serving=False)
    click.echo("ghimaging worker: background work running; stop with SIGTERM or Ctrl-C", err=True)
    stop.wait()
    background.stop()
    click.echo("ghimaging worker: stopped", err=True)


@click.command("sync")
@click.option("--server", "label", help="Only the server with this label.")
@click.option("--full", is_flag=True, help="Read everything again instead of following /changes.")
@click.option("--reconcile", is_flag=True, help="Only look for studies deleted in Orthanc.")
@with_appcontext
def sync_command(label: str | None, full: bool, reconcile: bool) -> None:
    """Sync Orthanc servers now and print a summary per server."""
    from sqlalchemy import select

    from .extensions import db
    from .models import OrthancServer
    from .orthanc import sync
    from .querytools import find_casefolded

    if label:
        one = find_casefolded(OrthancServer, OrthancServer.label, label)
        targets = [(one.id, one.label)] if one else []
    else:
        targets = [(s.id, s.label) for s in db.session.scalars(select(OrthancServer).order_by(OrthancServer.label))]
    if not targets:
        raise click.ClickException(f"No Orthanc server labelled {label!r}." if label else "No Orthanc server configured.")
    mode = "reconcile" if reconcile else ("full" if full else "auto")
    failed = 0
    for server_id, name in targets:
        click.echo(f"{name}: {mode} sync ...")
        summary = sync.run(server_id, mode=mode, progress=lambda msg: click.echo(f"  {msg}"))
        click.echo("  " + summary.line())
        failed += bool(summary.error)
    if failed:
        raise click.ClickException(f"{failed} server(s) failed.")


@click.group("worklists")
def worklists_group() -> None:
    """Modality worklist files."""


@worklists_group.command("write")
@with_appcontext
def worklists_write_command() -> None:
    """Make the worklist folder match the database (idempotent)."""
    from .extensions import db
    from .worklists import writer

    report = writer.rebuild()
    db.session.commit()
    click.echo(f"Worklist folder {writer.folder()}:")
    click.echo(f"  {len(report.written)} written, {report.unchanged} unchanged, {len(report.removed)} removed, "
               f"{len(report.foreign)} not ours (left alone)")
    for name in report.written:
        click.echo(f"  + {name}")
    for name in report.removed:
        click.echo(f"  - {name}")
    for err in report.errors:
        click.echo(f"  ! {err}", err=True)
    if report.errors:
        raise click.ClickException(f"{len(report.errors)} worklist file(s) could not be written.")


@click.command("backup")
@click.argument("target", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@with_appcontext
def backup_command(target: Path) -> None:
    """Write a backup of this instance (database, keys, result images) to
    TARGET, readable by its owner only. Safe while the application runs."""
    from . import backup
    from .exceptions import DomainError

    try:
        summary = backup.backup(target)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(summary.line())


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the data this instance already holds.")
@with_appcontext
def restore_command(source: Path, force: bool) -> None:
    """Restore a backup made by ``ghimaging backup`` into this (empty)
    instance. Stop the service first."""
    from . import backup
    from .exceptions import DomainError

    try:
        summary = backup.restore(source, force=force)
    except DomainError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"restored {summary.line()}")


COMMANDS = (init_command, create_user_command, create_token_command, serve_command, sync_command, backup_command,
            restore_command, worker_command, worklists_group)


def init_app(app: Flask) -> None:
    """The same commands on ``app.cli``, for ``flask --app ghimaging``."""
    for cmd in COMMANDS:
        app.cli.add_command(cmd)
    for name, (target, help_line) in LAZY.items():
        app.cli.add_command(LazyCommand(name, target, help_line))


def _create_app() -> Flask:
    """``create_app`` for the console script: a bad setting is a one-line
    error, not a traceback."""
    from . import create_app
    from .config import ConfigError

    try:
        return create_app()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


main_group = CommandGroup(_create_app, {**LAZY, **FLASK_COMMANDS}, name="ghimaging",
                          help="ghimaging: radiology front end for small clinics.")
for _cmd in COMMANDS:
    main_group.add_command(_cmd)


def main() -> None:
    main_group(prog_name="ghimaging")
