"""Genshi text templates (GNU Health's worklist format) rendered to text.

GNU Health 4.x templates use the old syntax (``$Variable``, ``#if``); 5.0
templates use the new one (``${Variable}``, ``{% if %}``). Both work: the
syntax is detected from the body. Genshi would evaluate any Python in a
template; here every template is compiled through :mod:`.sandbox`, which
refuses what a worklist template may not do (when it is saved, and again
before every render) and renders with no Python built-ins.
"""

from __future__ import annotations

import re
from typing import Any

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from genshi.template.base import BadDirectiveError, TemplateSyntaxError
from genshi.template.eval import UndefinedError

from . import sandbox
from .errors import RenderError
from .sandbox import SandboxError

_NEW_SYNTAX = re.compile(r"\{%|\{#")
_OLD_DIRECTIVE = re.compile(r"^[ \t]*#(if|for|choose|when|otherwise|def|with|end|python)\b", re.M)


def syntax_of(body: str) -> str:
    if _NEW_SYNTAX.search(body):
        return "new"
    if _OLD_DIRECTIVE.search(body):
        return "old"
    return "new"


def compile_template(body: str) -> sandbox.SandboxedNewTextTemplate | sandbox.SandboxedOldTextTemplate:
    """The template compiled in the sandbox: :class:`RenderError` (a
    :class:`~.sandbox.SandboxError` for what is not allowed) naming the line
    if it cannot be. Nothing of the template runs here."""
    cls = sandbox.SandboxedNewTextTemplate if syntax_of(body) == "new" else sandbox.SandboxedOldTextTemplate
    try:
        return cls(body)
    except SandboxError:
        raise
    except BadDirectiveError as exc:
        msg = getattr(exc, "msg", str(exc))
        name = re.search(r"(?:[Uu]nknown|bad) directive(?: name)? ['\"]?(\w+)", msg)
        if name and name.group(1) in ("python", "include", "def"):
            word = name.group(1)
            line = next((n for n, text in enumerate(body.splitlines(), start=1)
                         if re.match(r"\s*#" + word + r"\b", text) or re.search(r"\{%\s*" + word + r"\b", text)),
                        None)
            raise SandboxError(_("Not allowed in a worklist template: %(what)s",
                                 what=_("%(code)s directives.", code="#" + word)), line) from None
        raise RenderError(msg, _locate(body, msg, getattr(exc, "lineno", None))) from None
    except TemplateSyntaxError as exc:
        msg = getattr(exc, "msg", str(exc))
        if "Python code blocks not allowed" in msg:
            line = next((n for n, text in enumerate(body.splitlines(), start=1)
                         if re.search(r"\{%\s*python\b", text)), None)
            raise SandboxError(_("Not allowed in a worklist template: %(what)s",
                                 what=_("Python code blocks (%(code)s).", code="{% python %}")), line) from None
        raise RenderError(msg, _locate(body, msg, getattr(exc, "lineno", None))) from None
    except Exception as exc:  # Genshi raises several kinds for bad input
        unhandled = re.search(r"Unhandled node type <class 'ast\.(\w+)'>", str(exc))
        if unhandled:  # Genshi's code generator predates f-strings, ':=' and a few other forms
            kind = unhandled.group(1)
            what = {"JoinedStr": "f-strings", "FormattedValue": "f-strings",
                    "NamedExpr": _("':=' assignments")}.get(kind, kind)
            raise RenderError(_("Genshi cannot compile %(what)s; write + or '%%s' %% value instead.", what=what),
                              _line_with_node(body, kind)) from None
        raise RenderError(f"{exc.__class__.__name__}: {exc}") from None


def _locate(body: str, message: str, fallback: int | None) -> int | None:
    """Genshi's line numbers for text templates are unreliable; find the line
    of the undefined name, attribute, directive or expression that the
    message quotes."""
    lines = body.splitlines()
    patterns = []
    m = re.search(r'"([^"]+)" not defined', message)
    if m:
        patterns.append(r"(?<![\w.])" + re.escape(m.group(1)) + r"(?!\w)")
    m = re.search(r"has no (?:attribute|member)(?: named)? ['\"]?(\w+)", message)
    if m:
        patterns.append(r"\." + re.escape(m.group(1)) + r"(?!\w)")
    m = re.search(r'expression "([^"]+)', message)
    if m:
        patterns.append(re.escape(m.group(1).strip()))
    m = re.search(r"\u2018\.?([^\u2019\s]+)\u2019", message)  # the sandbox quotes what it refused
    if m:
        patterns.append(r"(?<!\w)" + re.escape(m.group(1)) + r"(?!\w)")
    m = re.search(r'(?:[Uu]nknown|bad) directive(?: name)? [\'"]?(\w+)', message)
    if m:
        patterns.append(r"\{%\s*" + re.escape(m.group(1)) + r"\b")
    for pattern in patterns:
        for number, line in enumerate(lines, start=1):
            if re.search(pattern, line):
                return number
    if "unexpected EOF" in message or "invalid syntax" in message:
        for number, line in enumerate(lines, start=1):
            if line.count("${") > line.count("}") or _bad_expression(line):
                return number
    return fallback if fallback and fallback > 0 else None


def _line_with_node(body: str, kind: str) -> int | None:
    """The first line with a ${...} whose Python holds a node of this kind."""
    import ast

    for number, line in enumerate(body.splitlines(), start=1):
        for m in re.finditer(r"\$\{(.*)\}", line):
            for end in range(len(m.group(1)), 0, -1):  # the expression may end at any '}'
                try:
                    tree = ast.parse(m.group(1)[:end].strip(), mode="eval")
                except SyntaxError:
                    continue
                if any(type(node).__name__ == kind for node in ast.walk(tree)):
                    return number
                break
    return None


def _bad_expression(line: str) -> bool:
    """True if a ${...} on this line is not a valid Python expression."""
    for m in re.finditer(r"\$\{([^}]*)\}", line):
        try:
            compile(m.group(1), "<template>", "eval")
        except SyntaxError:
            return True
    return False


def render(body: str, variables: dict[str, Any]) -> str:
    """The template's text for these variables. The body is checked again
    here (a row changed in the database, an older ghimaging saved it), the
    loops share one budget and the text may not grow past
    :data:`~.sandbox.MAX_OUTPUT`."""
    template = compile_template(body)
    token = sandbox.new_budget()
    try:
        out: list[str] = []
        size = 0
        for chunk in template.generate(**variables).serialize(method=None):
            size += len(chunk)
            if size > sandbox.MAX_OUTPUT:
                raise SandboxError(_("The template wrote more than %(count)s characters.", count=sandbox.MAX_OUTPUT))
            out.append(chunk)
        return "".join(out)
    except SandboxError as exc:
        if exc.line is None:
            exc.line = _locate(body, exc.message, None)
        raise
    except UndefinedError as exc:
        raise RenderError(str(exc), _locate(body, str(exc), None)) from None
    except TemplateSyntaxError as exc:
        msg = getattr(exc, "msg", str(exc))
        raise RenderError(msg, _locate(body, msg, getattr(exc, "lineno", None))) from None
    except RecursionError:
        raise RenderError(_("The template nests too deeply.")) from None
    except Exception as exc:
        raise RenderError(f"{exc.__class__.__name__}: {exc}") from None
    finally:
        sandbox.end_budget(token)
