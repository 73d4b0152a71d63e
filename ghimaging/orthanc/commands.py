"""``ghimaging orthanc add | push-token | list``: what the installer (and an
administrator at a shell) does to connect ghimaging to Orthanc, through the
same services as the Orthanc page. Each command commits once when it
succeeded; ``--json`` prints one JSON line for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click
from flask.cli import with_appcontext

from ..extensions import db


@click.group("orthanc")
def orthanc_group() -> None:
    """Orthanc servers and the push that wakes the sync."""


def _fail(exc: Exception) -> NoReturn:
    db.session.rollback()
    raise click.ClickException(str(exc)) from None


def _out(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


@orthanc_group.command("add")
@click.option("--url", required=True, help="Orthanc's REST address, e.g. http://127.0.0.1:8042")
@click.option("--user", "username", default="", help="Orthanc's user (empty: Orthanc without authentication).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (else prompt).")
@click.option("--label", default="", help="The name shown in ghimaging (default: 'This Orthanc').")
@click.option("--replace-url", default="", metavar="OLD",
              help="Update the server registered at OLD (Orthanc moved) instead of adding one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@with_appcontext
def add_command(url: str, username: str, password_stdin: bool, label: str, replace_url: str,
                as_json: bool) -> None:
    """Register an Orthanc, checked for real; run again, it updates the
    server at that address (or at --replace-url) instead of adding one."""
    from ..exceptions import DomainError
    from .registration import register

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif username:
        password = click.prompt("Orthanc password", hide_input=True)
    else:
        password = ""
    try:
        done = register(url=url, username=username, password=password, label=label, replace_url=replace_url)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    s = done.server
    _out(as_json, {"server_id": s.id, "label": s.label, "url": s.url, "action": done.action,
                   "version": s.version},
         f"Orthanc {s.label!r} at {s.url} {done.action} (Orthanc {s.version}, AET {s.dicom_aet}).")


@orthanc_group.command("push-token")
@click.option("--user", "username", default="orthanc-push", show_default=True,
              help="The role-less account the push uses (made if missing).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@with_appcontext
def push_token_command(username: str, as_json: bool) -> None:
    """Print a new token for Orthanc's push; the account's earlier push
    tokens stop working. The account may wake a sync and read nothing."""
    from ..exceptions import DomainError
    from .push import new_push_token, push_account

    try:
        user = push_account(username)
        token = new_push_token(user)
    except DomainError as exc:
        _fail(exc)
    db.session.commit()
    _out(as_json, {"user": user.username, "token": token}, token)


@orthanc_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON line.")
@with_appcontext
def list_command(as_json: bool) -> None:
    """The registered servers: label, address, last sync (never a password)."""
    from sqlalchemy import select

    from ..models import OrthancServer

    rows = db.session.scalars(select(OrthancServer).order_by(OrthancServer.label)).all()
    items = [{"id": s.id, "label": s.label, "url": s.url, "username": s.username, "validated": s.validated,
              "last_sync_at": s.last_sync_at.isoformat() + "Z" if s.last_sync_at else None,
              "last_error": s.last_error or None} for s in rows]
    if as_json:
        click.echo(json.dumps({"servers": items}))
        return
    if not items:
        click.echo("No Orthanc server registered.")
    for item in items:
        synced = item["last_sync_at"] or "never"
        problem = f"  ({item['last_error']})" if item["last_error"] else ""
        click.echo(f"{item['label']}\t{item['url']}\tlast sync {synced}{problem}")
