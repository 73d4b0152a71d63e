"""``ghimaging gnuhealth configure | check | sync``: the same services as
the admin page and the background loop; each command commits its work."""

from __future__ import annotations

import sys
from typing import NoReturn

import click
from flask.cli import with_appcontext

from ..extensions import db


@click.group("gnuhealth")
def gnuhealth_group() -> None:
    """Optional sync with a GNU Health server."""


def _fail(exc: Exception) -> NoReturn:
    raise click.ClickException(str(exc)) from None


@gnuhealth_group.command("configure")
@click.option("--url", required=True, help="trytond's address, e.g. http://gnuhealth.local:8000/")
@click.option("--database", required=True, help="The GNU Health database name.")
@click.option("--user", "username", required=True, help="The GNU Health user ghimaging logs in as.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else prompt).")
@click.option("--default-professional", type=int, default=None,
              help="GNU Health id of the professional used when the ordering user has none there.")
@click.option("--disable", is_flag=True, help="Save the settings with the sync switched off.")
@with_appcontext
def configure_command(url: str, database: str, username: str, password_stdin: bool,
                      default_professional: int | None, disable: bool) -> None:
    """Check the settings against the server for real, then save them."""
    from .client import GnuHealthError
    from .settings import SettingsError, configure

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("GNU Health password", hide_input=True)
    try:
        report = configure(url=url, database=database, username=username, password=password,
                           enabled=not disable, default_professional_id=default_professional)
    except (GnuHealthError, SettingsError) as exc:
        _fail(exc)
    db.session.commit()
    for line in report.lines():
        click.echo(line)
    click.echo(f"Saved; the sync is {'off' if disable else 'on'}.")


@gnuhealth_group.command("check")
@with_appcontext
def check_command() -> None:
    """Log in with the saved settings and say what the server offers."""
    from .. import crypto
    from .client import GnuHealthError
    from .settings import SettingsError, run_check

    try:
        report = run_check()
    except (GnuHealthError, SettingsError, crypto.CredentialError) as exc:
        db.session.commit()  # the failure is recorded for the settings page
        _fail(exc)
    db.session.commit()
    for line in report.lines():
        click.echo(line)


@gnuhealth_group.command("sync")
@with_appcontext
def sync_command() -> None:
    """One pull and one outbox drain; exits non-zero when GNU Health cannot be reached."""
    from . import outbox, worker
    from .settings import active_config

    if active_config() is None:
        raise click.ClickException("GNU Health sync is off or not configured: "
                                   "ghimaging gnuhealth configure --url ... first.")
    summary = worker.run_pull()
    click.echo(summary.line())
    for problem in summary.problems:
        click.echo(f"  ! {problem}")
    drained = worker.drain()
    click.echo(drained.line())
    counts = outbox.counts()
    click.echo(f"outbox now: {counts['pending']} pending, {counts['failed']} failed, {counts['sent']} sent")
    if summary.error or drained.unreachable:
        raise click.ClickException(f"GNU Health could not be reached: {summary.error or drained.errors[-1]}")
