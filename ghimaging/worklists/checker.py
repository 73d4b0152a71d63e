"""The first line of defence of the worklist sandbox (:mod:`.sandbox`): the
template as Genshi parsed it, every expression's syntax tree checked
against what the worklist template language allows, the line named.

Run when a template is saved and again before every render (the sandboxed
template classes call :func:`check_stream` on what they parsed).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from typing import Any, NoReturn

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from genshi.template.base import EXEC, EXPR, INCLUDE, SUB, TEXT
from genshi.template.directives import (
    ChooseDirective,
    DefDirective,
    ForDirective,
    IfDirective,
    OtherwiseDirective,
    WhenDirective,
    WithDirective,
)
from genshi.template.eval import _parse as genshi_parse

from .names import UnknownVariables, chain, walk_my
from .sandbox import (
    DATE_CALLS,
    FUNCTIONS,
    MAX_CONVERSIONS,
    MAX_OPERATORS,
    METHODS,
    REFUSED_KINDS,
    SandboxError,
    allowed_attributes,
    allowed_names,
)

_DIRECTIVE_NAMES = {IfDirective: "if", ForDirective: "for", ChooseDirective: "choose", WhenDirective: "when",
                    OtherwiseDirective: "otherwise", WithDirective: "with", DefDirective: "def"}
_RESERVED_TARGETS = frozenset(FUNCTIONS) | {"iter", "defined", "value_of"}

_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?([-#0 +]*)(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)


def _builtin_names() -> frozenset[str]:
    import builtins

    return frozenset(dir(builtins))


class _Checker:
    def __init__(self, body: str):
        self.body = body
        self.names = allowed_names()
        self.attributes = allowed_attributes()
        self.builtins = _builtin_names()
        self.line: int | None = None
        #: Unknown names (dotted as written), with the line of the first.
        self.unknown: list[str] = []
        self.unknown_line: int | None = None

    def record_unknown(self, dotted: str) -> None:
        if dotted not in self.unknown:
            if not self.unknown:
                self.unknown_line = self.line
            self.unknown.append(dotted)

    # Where in the body: Genshi's own line numbers for text templates are
    # off by one now and then, so look for the source text near them.
    def locate(self, fragment: str | None, hint: int | None, directive: str | None = None) -> int | None:
        body = self.body
        candidates: list[int] = []
        if directive:
            pattern = (r"\{%\s*" + re.escape(directive) + r"\b" + r"|^[ \t]*#" + re.escape(directive) + r"\b")
            candidates = [body.count("\n", 0, m.start()) + 1 for m in re.finditer(pattern, body, re.M)]
            if fragment:
                with_text = [n for n in candidates if fragment.strip() in body.splitlines()[n - 1]]
                candidates = with_text or candidates
        elif fragment:
            start = 0
            while True:
                at = body.find(fragment, start)
                if at < 0:
                    break
                candidates.append(body.count("\n", 0, at) + 1)
                start = at + 1
        if not candidates:
            return hint if hint and hint > 0 else None
        if not hint or hint <= 0:
            return candidates[0]
        return min(candidates, key=lambda n: (abs(n - hint), n))

    def refuse(self, message: str) -> NoReturn:
        """``message`` is already translated: what is refused, as a phrase."""
        raise SandboxError(_("Not allowed in a worklist template: %(what)s", what=message), self.line)

    # -- the stream ---------------------------------------------------------
    def stream(self, events: Iterable[tuple[Any, Any, Any]], bound: frozenset[str]) -> None:
        for kind, data, pos in events:
            hint = pos[1] if pos and len(pos) > 1 else None
            if kind is TEXT:
                continue
            if kind is EXPR:
                self.line = self.locate(getattr(data, "source", None), hint)
                self.expression(getattr(data, "source", None), bound)
            elif kind is SUB:
                directives, substream = data
                inner = bound
                for _order, cls, value, _ns, dpos in directives:
                    name = _DIRECTIVE_NAMES.get(cls, getattr(cls, "tagname", cls.__name__))
                    self.line = self.locate(value if isinstance(value, str) else None,
                                            dpos[1] if dpos and len(dpos) > 1 else hint, name)
                    inner = self.directive(cls, name, value, inner)
                self.stream(substream, inner)
            elif kind is EXEC:
                self.line = self.locate(None, hint, "python")
                self.refuse(_("Python code blocks (%(code)s).", code="{% python %}"))
            elif kind is INCLUDE:
                self.line = self.locate(None, hint, "include")
                self.refuse(_("include directives (a template cannot read other files)."))
            else:
                self.line = hint
                self.refuse(_("this part of the template (%(kind)s).", kind=kind))

    def directive(self, cls: type, name: str, value: Any, bound: frozenset[str]) -> frozenset[str]:
        if cls in (IfDirective, ChooseDirective, WhenDirective):
            if value is not None and not isinstance(value, str):
                self.refuse(_("%(code)s with this value.", code="{% " + name + " %}"))
            if value and value.strip():
                self.expression(value, bound)
            elif cls is IfDirective:
                self.refuse(_("%(code)s needs a condition.", code="{% if %}"))
            return bound
        if cls is OtherwiseDirective:
            return bound  # Genshi ignores its value
        if cls is ForDirective:
            if not isinstance(value, str) or " in " not in value:
                self.refuse(_("%(code)s must read %(form)s.", code="{% for %}", form="{% for NAME in VALUES %}"))
            target, values = value.split(" in ", 1)  # exactly as Genshi splits it
            names = self.targets(self.statements(target), "for")
            # Genshi compiles 'iter(<values>)': check that very expression.
            call = self.expression_tree(f"iter({values.strip()})")
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "iter"
                    and len(call.args) == 1 and not call.keywords):
                self.refuse(_("%(code)s over \u2018%(values)s\u2019.", code="{% for %}", values=values.strip()))
            self.whole(call.args[0], bound)
            return bound | names
        if cls is WithDirective:
            if not isinstance(value, str):
                self.refuse(_("%(code)s with this value.", code="{% with %}"))
            inner = set(bound)
            for statement in self.statements(value.strip()):
                if not isinstance(statement, ast.Assign):
                    self.refuse(_("%(code)s takes only assignments (NAME = VALUE; ...).", code="{% with %}"))
                self.whole(statement.value, frozenset(inner))
                for assigned in statement.targets:
                    inner |= self._target_names(assigned, "with")
            return frozenset(inner)
        if cls is DefDirective:
            self.refuse(_("%(code)s (template functions).", code="{% def %}"))
        self.refuse(_("the directive \u2018%(name)s\u2019.", name=name))

    def expression_tree(self, source: str) -> ast.expr:
        tree: ast.Expression = self.parse(source, "eval")
        return tree.body

    def statements(self, source: str) -> list[ast.stmt]:
        tree: ast.Module = self.parse(source, "exec")
        return tree.body

    def parse(self, source: str, mode: str) -> Any:
        """``source`` parsed in ``mode`` (an ``ast.Expression`` for "eval",
        an ``ast.Module`` for "exec")."""
        try:
            return genshi_parse(source, mode)  # the very parse Genshi compiles
        except SyntaxError as exc:
            raise SandboxError(_("%(error)s in \u2018%(source)s\u2019", error=exc.msg, source=source.strip()),
                               self.line) from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise SandboxError(_("\u2018%(source)s\u2019 cannot be read (%(error)s)", source=source.strip()[:80],
                                 error=exc.__class__.__name__), self.line) from None

    def targets(self, statements: list[ast.stmt], what: str) -> frozenset[str]:
        first = statements[0] if len(statements) == 1 else None
        if not isinstance(first, ast.Expr):
            self.refuse(_("%(code)s must assign to names.", code="{% " + what + " %}"))
        return self._target_names(first.value, what)

    def _target_names(self, node: ast.AST, what: str) -> frozenset[str]:
        if isinstance(node, ast.Name):
            if node.id.startswith("_") or node.id in _RESERVED_TARGETS:
                self.refuse(_("%(code)s may not define the name ‘%(name)s’.", code="{% " + what + " %}", name=node.id))
            return frozenset({node.id})
        if isinstance(node, ast.Tuple):
            out: frozenset[str] = frozenset()
            for elt in node.elts:
                out |= self._target_names(elt, what)
            return out
        self.refuse(_("%(code)s must assign to names, not to \u2018%(target)s\u2019.", code="{% " + what + " %}",
                      target=ast.unparse(node)))

    def expression(self, source: str | None, bound: frozenset[str]) -> None:
        if not isinstance(source, str):
            self.refuse(_("an expression Genshi built from something other than text."))
        self.whole(self.expression_tree(source), bound)

    def whole(self, node: ast.AST, bound: frozenset[str]) -> None:
        """One whole expression: its nodes, and how many operators."""
        try:
            self.node(node, bound)
        except RecursionError:
            raise SandboxError(_("the expression is nested too deeply"), self.line) from None
        operators = sum(isinstance(n, ast.BinOp) for n in ast.walk(node))
        if operators > MAX_OPERATORS:
            self.refuse(_("%(count)s operators in one expression (at most %(most)s; %(code)s can name a part).",
                          count=operators, most=MAX_OPERATORS, code="{% with %}"))

    # -- one expression -------------------------------------------------------
    def node(self, node: ast.AST, bound: frozenset[str]) -> None:
        kind = type(node)
        if kind in REFUSED_KINDS:
            self.refuse(_("%(kind)s (\u2018%(code)s\u2019).", kind=REFUSED_KINDS[kind], code=_shown(node)))
        if isinstance(node, ast.Constant):
            if not (node.value is None or isinstance(node.value, (str, bool, int, float))):
                self.refuse(_("the literal \u2018%(code)s\u2019.", code=_shown(node)))
            return
        if isinstance(node, ast.Name):
            self.name(node, bound)
            return
        if isinstance(node, ast.Attribute):
            parts = chain(node)
            if parts is not None and self.dotted(parts, node, bound):
                return
            self.node(node.value, bound)  # the leftmost problem first: __import__ before .system
            self.attribute(node.attr, node)
            return
        if isinstance(node, ast.Call):
            self.call(node, bound)
            return
        if isinstance(node, ast.Subscript):
            if not isinstance(node.ctx, ast.Load):
                self.refuse(_("assignment (\u2018%(code)s\u2019).", code=_shown(node)))
            index = node.slice
            if isinstance(index, ast.Constant) and not isinstance(index.value, (int, bool)):
                self.refuse(_("the item ‘%(code)s’ (only numbers and slices index a value).", code=_shown(node)))
            self.node(node.value, bound)
            self.node(index, bound)
            return
        if isinstance(node, ast.Slice):
            for part in (node.lower, node.upper, node.step):
                if part is not None:
                    self.node(part, bound)
            return
        if isinstance(node, ast.BinOp):
            if isinstance(node.op, (ast.Add, ast.Sub)):
                pass
            elif isinstance(node.op, ast.Mod):
                self.percent(node)
            else:
                self.refuse(_("the operator in ‘%(code)s’ (only +, - and '...' %% values).", code=_shown(node)))
            self.node(node.left, bound)
            self.node(node.right, bound)
            return
        if isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                self.refuse(_("the operator in \u2018%(code)s\u2019.", code=_shown(node)))
            self.node(node.operand, bound)
            return
        if isinstance(node, ast.BoolOp):
            for value in node.values:
                self.node(value, bound)
            return
        if isinstance(node, ast.Compare):
            if not all(isinstance(op, _COMPARE_OPS) for op in node.ops):
                self.refuse(_("the comparison \u2018%(code)s\u2019.", code=_shown(node)))
            self.node(node.left, bound)
            for value in node.comparators:
                self.node(value, bound)
            return
        if isinstance(node, ast.IfExp):
            for part in (node.test, node.body, node.orelse):
                self.node(part, bound)
            return
        if isinstance(node, (ast.Tuple, ast.List)):
            if not isinstance(node.ctx, ast.Load):
                self.refuse(_("assignment (\u2018%(code)s\u2019).", code=_shown(node)))
            for elt in node.elts:
                self.node(elt, bound)
            return
        self.refuse(_("\u2018%(code)s\u2019 (%(kind)s).", code=_shown(node), kind=kind.__name__))

    def dotted(self, parts: list[str], node: ast.Attribute, bound: frozenset[str]) -> bool:
        """``a.b.c`` as one variable (:mod:`.names`): an unknown one is
        recorded whole; True when that settled it."""
        root = parts[0]
        if any(p.startswith("_") for p in parts) or root in bound or root in self.builtins or root in (
                "defined", "value_of", "Markup", "Undefined"):
            return False  # the generic check says what it is
        if root not in self.names:
            self.record_unknown(".".join(parts))
            return True
        if root != "my":
            return False
        kind, i = walk_my(parts)
        if kind == "hidden":
            self.refuse(_("the attribute ‘.%(attr)s’ in ‘%(code)s’ (a template may read the request's "
                          "fields, e.g. my.urgent or my.patient.family_name; the list is beside the editor).",
                          attr=parts[i], code=_shown(node)))
        if kind == "unknown":
            self.record_unknown(".".join(parts[:i + 1]))
        for attr in parts[i:] if kind == "value" else ():
            self.attribute(attr, node)
        return True

    def name(self, node: ast.Name, bound: frozenset[str]) -> None:
        name = node.id
        if not isinstance(node.ctx, ast.Load):
            self.refuse(_("assignment to \u2018%(name)s\u2019.", name=name))
        if name.startswith("_"):
            self.refuse(_("the name \u2018%(name)s\u2019 (names starting with _ are never available).", name=name))
        if name in bound or name in self.names:
            return
        if name in self.builtins or name in ("defined", "value_of", "Markup", "Undefined"):
            self.refuse(_("\u2018%(name)s\u2019 (of Python's built-ins a template may use only %(functions)s).",
                          name=name, functions=", ".join(sorted(FUNCTIONS))))
        self.record_unknown(name)

    def attribute(self, attr: str, node: ast.AST) -> None:
        if attr.startswith("_"):
            self.refuse(_("\u2018%(code)s\u2019 (attributes starting with _ are never available).", code=_shown(node)))
        if attr not in self.attributes:
            self.refuse(_("the attribute ‘.%(attr)s’ in ‘%(code)s’ (a template may read the request's "
                          "fields, e.g. my.urgent or my.patient.family_name, and call string methods such as "
                          "upper(); the list is beside the editor).", attr=attr, code=_shown(node)))

    def call(self, node: ast.Call, bound: frozenset[str]) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            self.node(func.value, bound)
        elif not isinstance(func, ast.Name):
            self.node(func, bound)  # lambdas and the like say what they are
        if isinstance(func, ast.Name):
            if func.id not in FUNCTIONS or func.id in bound:
                self.name(func, bound)  # refuses built-ins and unknown names with their own message
                self.refuse(_("calling ‘%(name)s’ (a template may call only %(functions)s and string methods).",
                              name=func.id, functions=", ".join(sorted(FUNCTIONS))))
        elif isinstance(func, ast.Attribute):
            if func.attr not in METHODS and func.attr not in DATE_CALLS:
                self.attribute(func.attr, func)
                self.refuse(_("calling \u2018.%(name)s()\u2019 (a template may call string methods such as upper(); "
                              "the list is beside the editor).", name=func.attr))
        else:
            self.refuse(_("calling \u2018%(code)s\u2019 (only named functions and string methods).", code=_shown(func)))
        for arg in node.args:
            self.node(arg, bound)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.refuse(_("'**' in \u2018%(code)s\u2019.", code=_shown(node)))
            if keyword.arg.startswith("_"):
                self.refuse(_("the argument \u2018%(name)s\u2019.", name=keyword.arg))
            self.node(keyword.value, bound)

    def percent(self, node: ast.BinOp) -> None:
        left = node.left
        if not (isinstance(left, ast.Constant) and isinstance(left.value, str)):
            self.refuse(_("‘%(code)s’ (%% formats only a literal text: '%%s-%%s' %% (A, B)).", code=_shown(node)))
        conversions = list(_PERCENT_SPEC.finditer(left.value))
        if len(conversions) > MAX_CONVERSIONS:
            self.refuse(_("%(count)s conversions in one '%%' format (at most %(most)s).", count=len(conversions),
                          most=MAX_CONVERSIONS))
        for m in conversions:
            width, precision = m.group(2), m.group(3)
            for number in (width, precision):
                if number == "*" or (number and len(number) > 3):
                    self.refuse(_("the width ‘%(width)s’ in ‘%(code)s’ (at most 999).", width=m.group(0),
                                      code=_shown(node)))


def _shown(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        text = type(node).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def check_stream(stream: Iterable[tuple[Any, Any, Any]], body: str) -> None:
    """Refuse (:class:`SandboxError`, with the line) anything in a parsed
    Genshi text template that is not part of the worklist template language."""
    checker = _Checker(body)
    checker.stream(stream, frozenset())
    if checker.unknown:
        raise UnknownVariables(checker.unknown, checker.unknown_line)
