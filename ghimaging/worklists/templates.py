"""Worklist templates: the shipped ones in ``worklist_templates/`` and the
ones admins write in the browser. Nothing here commits: the page or
command that saves or loads commits."""

from __future__ import annotations

import json
from typing import Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from sqlalchemy import select

from .. import resource_dir
from ..exceptions import Conflict, DomainError, Invalid
from ..extensions import db
from ..models import ImagingTest, WorklistTemplate
from . import charsets
from .errors import RenderError
from .names import UnknownVariables
from .render import compile_template

DEFAULT_NAME = "general"


class TemplateError(DomainError):
    """A template that cannot be saved or loaded; ``field`` names the form
    field at fault, ``line`` the line of the body when known. The views and
    ``ghimaging init`` catch this name; each case is one of the two kinds
    below."""

    field: str = "body"
    line: int | None = None


class TemplateInvalid(TemplateError, Invalid):
    """A name, character set or body that cannot be accepted."""

    code = "worklist_template"

    def __init__(self, message: str, field: str = "body", line: int | None = None) -> None:
        super().__init__(message, fields={field: message})
        self.field, self.line = field, line


class TemplateUnknownVariables(TemplateInvalid):
    """A body using names no request provides (:class:`.names.UnknownVariables`):
    refused, with every such name in ``names`` for the editor to list."""

    def __init__(self, names: list[str], line: int | None = None) -> None:
        super().__init__(_("Unknown variables: %(names)s", names=", ".join(names)), "body", line)
        self.names = names


class TemplateNameTaken(TemplateError, Conflict):
    """Another template has this name."""

    code = "duplicate"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.field = "name"


def shipped() -> list[dict[str, Any]]:
    """The shipped templates' entries of ``index.json``, each with its body."""
    folder = resource_dir("worklist_templates")
    index = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    out = []
    for entry in index["templates"]:
        entry = dict(entry)
        entry["body"] = (folder / entry.pop("file")).read_text(encoding="utf-8")
        out.append(entry)
    return out


def check_shipped() -> None:
    """Every shipped template passes the sandbox check, or
    :class:`TemplateError` names the template, its file and the line (a file
    in ``worklist_templates/`` edited on disk is checked like one saved in
    the browser)."""
    index = json.loads((resource_dir("worklist_templates") / "index.json").read_text(encoding="utf-8"))
    files = {e["name"]: e["file"] for e in index["templates"]}
    for entry in shipped():
        try:
            compile_template(entry["body"])
        except RenderError as exc:
            raise TemplateInvalid(_("Shipped worklist template %(name)s (%(file)s): %(error)s",
                                    name=repr(entry["name"]), file="worklist_templates/" + files[entry["name"]],
                                    error=exc), "body", exc.line) from None


def load_shipped() -> int:
    """Add the shipped templates that are missing, refresh shipped ones that
    nobody edited; returns how many changed. Called by ``ghimaging init``.
    Nothing is loaded if one of them fails the check (:func:`check_shipped`)."""
    check_shipped()
    changed = 0
    have = {t.name: t for t in db.session.scalars(select(WorklistTemplate))}
    any_default = any(t.is_default for t in have.values())
    for entry in shipped():
        row = have.get(entry["name"])
        if row is None:
            row = WorklistTemplate(name=entry["name"], origin="shipped")
            db.session.add(row)
        elif row.origin != "shipped":
            continue
        encoding = charsets.check_pair(entry["charset"], entry["encoding"])
        if (row.body, row.charset, row.encoding, row.comment) != (
                entry["body"], entry["charset"], encoding, entry.get("comment", "")):
            row.body, row.charset = entry["body"], entry["charset"]
            row.encoding, row.comment = encoding, entry.get("comment", "")
            changed += 1
        if entry.get("default") and not any_default:
            row.is_default = True
            any_default = True
    db.session.flush()
    return changed


def validate(name: str, body: str, charset: str, encoding: str) -> tuple[str, str]:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise TemplateInvalid(_("A name of 1-100 characters is required."), "name")
    try:
        encoding = charsets.check_pair(charset, encoding)
    except ValueError as exc:
        raise TemplateInvalid(str(exc), "encoding") from None
    try:
        compile_template(body or "")
    except UnknownVariables as exc:
        raise TemplateUnknownVariables(exc.names, exc.line) from None
    except RenderError as exc:
        raise TemplateInvalid(str(exc), "body", exc.line) from None
    return name, encoding


def save(template: WorklistTemplate | None, *, name: str, body: str, charset: str, encoding: str,
         comment: str = "", is_default: bool = False, utf8_fallback: bool | None = None) -> WorklistTemplate:
    """Save a template. ``utf8_fallback`` (None keeps it): write an item in
    ISO_IR 192 when a value does not fit ``charset``, instead of refusing
    the submit. Changing only that keeps a shipped template shipped."""
    name, encoding = validate(name, body, charset, encoding)
    other = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == name))
    if other is not None and other is not template:
        raise TemplateNameTaken(_("A template named %(name)s exists.", name=repr(name)))
    if template is None:
        template = WorklistTemplate(name=name)
        db.session.add(template)
    elif template.name != name:  # tests refer to templates by name: follow the rename
        from sqlalchemy import update

        db.session.execute(update(ImagingTest).where(ImagingTest.worklist_template == template.name)
                           .values(worklist_template=name))
    def same(a: str | None, b: str | None) -> bool:  # a browser's textarea sends \r\n
        return (a or "").replace("\r\n", "\n").strip() == (b or "").replace("\r\n", "\n").strip()

    if template.id is None or not all(same(a, b) for a, b in (
            (name, template.name), (body, template.body), (charset, template.charset),
            (encoding, template.encoding), (comment, template.comment))):
        template.origin = "custom"
    template.name, template.body, template.charset, template.encoding = name, body, charset, encoding
    template.comment = (comment or "").strip()
    if utf8_fallback is not None:
        template.utf8_fallback = bool(utf8_fallback)
    if is_default:
        for t in db.session.scalars(select(WorklistTemplate).where(WorklistTemplate.is_default.is_(True))):
            t.is_default = False
        template.is_default = True
    db.session.flush()
    return template


def for_test(test: ImagingTest) -> WorklistTemplate:
    """The test's template, else the default one, else the shipped general."""
    if test.worklist_template:
        t = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == test.worklist_template))
        if t is not None:
            return t
    t = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.is_default.is_(True)))
    if t is not None:
        return t
    t = db.session.scalar(select(WorklistTemplate).where(WorklistTemplate.name == DEFAULT_NAME))
    if t is not None:
        return t
    entry = next(e for e in shipped() if e["name"] == DEFAULT_NAME)
    return WorklistTemplate(name=entry["name"], body=entry["body"], charset=entry["charset"],
                            encoding=entry["encoding"])


def problems(rows: list[WorklistTemplate]) -> dict[str, str]:
    """Stored templates that fail the check (saved before it existed, or
    changed in the database): name -> why. Such a template renders nothing;
    the Worklists page says so before a submit does."""
    out = {}
    for row in rows:
        try:
            compile_template(row.body or "")
        except RenderError as exc:
            out[row.name] = str(exc)
    return out


def all_templates() -> list[WorklistTemplate]:
    return list(db.session.scalars(select(WorklistTemplate).order_by(WorklistTemplate.name)))


def for_test_default_body() -> str:
    body: str = next(e["body"] for e in shipped() if e["name"] == DEFAULT_NAME)
    return body
