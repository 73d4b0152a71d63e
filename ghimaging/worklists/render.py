"""Genshi text templates (GNU Health's worklist format) rendered to text.

GNU Health 4.x templates use the old syntax (``$Variable``, ``#if``); 5.0
templates use the new one (``${Variable}``, ``{% if %}``). Both work: the
syntax is detected from the body. Genshi evaluates Python expressions, so
only administrators may edit templates.
"""

from __future__ import annotations

import re
from typing import Any

from genshi.template import NewTextTemplate, OldTextTemplate
from genshi.template.base import TemplateSyntaxError
from genshi.template.eval import UndefinedError

_NEW_SYNTAX = re.compile(r"\{%|\{#")
_OLD_DIRECTIVE = re.compile(r"^[ \t]*#(if|for|choose|when|otherwise|def|with|end|python)\b", re.M)


class RenderError(ValueError):
    """A template that does not compile or render; ``line`` when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def syntax_of(body: str) -> str:
    if _NEW_SYNTAX.search(body):
        return "new"
    if _OLD_DIRECTIVE.search(body):
        return "old"
    return "new"


def compile_template(body: str):
    cls = NewTextTemplate if syntax_of(body) == "new" else OldTextTemplate
    try:
        return cls(body, lookup="strict")
    except TemplateSyntaxError as exc:
        msg = getattr(exc, "msg", str(exc))
        raise RenderError(msg, _locate(body, msg, getattr(exc, "lineno", None))) from None
    except Exception as exc:  # Genshi raises several kinds for bad input
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


def _bad_expression(line: str) -> bool:
    """True if a ${...} on this line is not a valid Python expression."""
    for m in re.finditer(r"\$\{([^}]*)\}", line):
        try:
            compile(m.group(1), "<template>", "eval")
        except SyntaxError:
            return True
    return False


def render(body: str, variables: dict[str, Any]) -> str:
    template = compile_template(body)
    try:
        return template.generate(**variables).render(encoding=None)
    except UndefinedError as exc:
        raise RenderError(str(exc), _locate(body, str(exc), None)) from None
    except TemplateSyntaxError as exc:
        msg = getattr(exc, "msg", str(exc))
        raise RenderError(msg, _locate(body, msg, getattr(exc, "lineno", None))) from None
    except Exception as exc:
        raise RenderError(f"{exc.__class__.__name__}: {exc}") from None
