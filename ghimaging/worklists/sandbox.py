"""Worklist templates in a sandbox.

Genshi compiles every ``${...}``, ``$Name`` and directive of a template to
Python and runs it with the real built-ins: an administrator's template
could import ``subprocess`` or read the secret key, and it would run again
each time a physician submits or views an order. A worklist template only
needs to print values, so it gets a small language instead:

- the documented variables, ``my`` (the request, read-only) and literals;
- a few functions (:data:`FUNCTIONS`) and string methods (:data:`METHODS`);
- ``if``/``else`` expressions, comparisons, ``and``/``or``/``not``, ``+``,
  ``-``, ``%`` on a literal format, indexing and slicing;
- the directives ``if``, ``for``, ``choose``/``when``/``otherwise``, ``with``.

Everything else is refused: names or attributes starting with ``_``, other
built-ins (``__import__``, ``open``, ``eval``, ``getattr``, ``type``, ...),
lambdas, comprehensions, ``{% python %}``, ``{% def %}``, ``{% include %}``.

Two independent lines of defence:

1. :func:`check_stream` reads the template as Genshi parsed it (so exactly
   the code Genshi would compile) and validates each expression's syntax
   tree against a whitelist, naming the line. It runs when a template is
   saved and again before every render (:mod:`.render` compiles through
   :class:`SandboxedNewTextTemplate` / :class:`SandboxedOldTextTemplate`).
2. At run time, :class:`SandboxLookup` resolves every name, attribute and
   item: no Python built-ins (the code runs with an empty ``__builtins__``),
   attributes only on strings (the listed methods), dates and ``my``; no
   include loader. Loops, text and string growth are bounded, so a template
   cannot hang a submit either.
"""

from __future__ import annotations

import ast
import contextvars
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from genshi.template import NewTextTemplate, OldTextTemplate
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
from genshi.template.eval import UNDEFINED, StrictLookup, UndefinedError
from genshi.template.eval import _parse as genshi_parse

from .errors import RenderError
from .values import SafeProxy, all_exposed_names

#: Longest string a template may build or read back (a .wl value is at most
#: 10240 characters; the whole file a few kilobytes).
MAX_TEXT = 65536
#: Longest rendered text.
MAX_OUTPUT = 1 << 20
#: Items all ``for`` loops of one render may go through together.
MAX_ITEMS = 10000
#: Operators (+, -, %) in one expression and conversions in one '%' format:
#: with values of at most MAX_TEXT characters, one expression stays within a
#: few megabytes however it nests.
MAX_OPERATORS = 16
MAX_CONVERSIONS = 32


class SandboxError(RenderError):
    """Something a worklist template may not do; ``line`` when known. A
    :class:`RenderError`, so every caller that handles a broken template
    (the editor, the submit, the folder rebuild) handles this one too."""


# -- what a template may use --------------------------------------------------

def _bounded(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise SandboxError(f"A worklist template may not build text longer than {MAX_TEXT} characters.")
    return text


def _len(value: Any) -> int:
    return len(value)


def _str(value: Any = "") -> str:
    return _bounded(str(value))


def _int(value: Any = 0, base: int | None = None) -> int:
    return int(value) if base is None else int(value, base)


def _abs(value: Any) -> Any:
    return abs(value)


def _bool(value: Any = False) -> bool:
    return bool(value)


def _min(*args: Any) -> Any:
    return min(*args)


def _max(*args: Any) -> Any:
    return max(*args)


def _enumerate(items: Iterable, start: int = 0) -> Iterable:
    return enumerate(items, start)


#: Functions a template may call, by name.
FUNCTIONS: dict[str, Any] = {"len": _len, "str": _str, "int": _int, "abs": _abs, "bool": _bool,
                             "min": _min, "max": _max, "enumerate": _enumerate}

_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("worklist_template_items")


def _iter(items: Iterable) -> Iterable:
    """What ``{% for %}`` loops through (Genshi writes ``iter(...)``): at
    most :data:`MAX_ITEMS` items per render, all loops together."""
    budget = _budget.get(None) or [MAX_ITEMS]
    for item in items:
        if budget[0] <= 0:
            raise SandboxError(f"The template's loops went through more than {MAX_ITEMS} items.")
        budget[0] -= 1
        yield item


def new_budget() -> contextvars.Token:
    """Start the loop budget of one render; pass the token to
    :func:`end_budget` afterwards."""
    return _budget.set([MAX_ITEMS])


def end_budget(token: contextvars.Token) -> None:
    _budget.reset(token)


_RUNTIME_FUNCTIONS = dict(FUNCTIONS, iter=_iter)


def _replace(s: str, old: str, new: str, count: int = -1) -> str:
    old, new = str(old), str(new)
    hits = s.count(old)
    if count >= 0:
        hits = min(hits, count)
    if len(s) + hits * max(0, len(new) - len(old)) > MAX_TEXT:
        raise SandboxError(f"A worklist template may not build text longer than {MAX_TEXT} characters.")
    return s.replace(old, new, count)


def _padding(name: str):
    method = getattr(str, name)

    def pad(s: str, width: int, *args: Any) -> str:
        if int(width) > MAX_TEXT:
            raise SandboxError(f"A worklist template may not build text longer than {MAX_TEXT} characters.")
        return method(s, width, *args)
    return pad


def _join(s: str, items: Iterable) -> str:
    items = list(_iter(items))
    if sum(len(i) for i in items if isinstance(i, str)) + len(s) * max(0, len(items) - 1) > MAX_TEXT:
        raise SandboxError(f"A worklist template may not build text longer than {MAX_TEXT} characters.")
    return s.join(items)


_PLAIN_METHODS = ("upper", "lower", "title", "capitalize", "casefold", "swapcase", "strip", "lstrip", "rstrip",
                  "startswith", "endswith", "split", "rsplit", "splitlines", "partition", "rpartition",
                  "count", "find", "rfind", "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower",
                  "isnumeric", "isdecimal", "removeprefix", "removesuffix")

#: String methods a template may call: ``${PatientID.upper()}``. Not
#: ``format``/``format_map`` (they read attributes: ``'{0.__class__}'``).
METHODS: dict[str, Any] = {name: getattr(str, name) for name in _PLAIN_METHODS}
METHODS.update({"replace": _replace, "join": _join, "zfill": _padding("zfill"), "ljust": _padding("ljust"),
                "rjust": _padding("rjust"), "center": _padding("center")})

#: What a template may read or call on a date or time.
DATE_ATTRS = frozenset({"year", "month", "day", "hour", "minute", "second", "isoformat", "strftime",
                        "weekday", "isoweekday"})
_DATE_CALLS = frozenset({"isoformat", "strftime", "weekday", "isoweekday"})


def allowed_names() -> frozenset[str]:
    """Names a template may use besides the ones its loops and ``with``
    define: the documented variables, ``my`` and :data:`FUNCTIONS`."""
    from .variables import VARIABLES

    return frozenset(VARIABLES) | {"my"} | frozenset(FUNCTIONS)


def allowed_attributes() -> frozenset[str]:
    return frozenset(METHODS) | DATE_ATTRS | all_exposed_names()


# -- the run-time line of defence ----------------------------------------------------

def _value_allowed(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float, date, datetime, SafeProxy)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_value_allowed(v) for v in value)
    return False


class SandboxLookup(StrictLookup):
    """Genshi's name, attribute and item lookups for worklist templates: only
    the template's variables and :data:`FUNCTIONS`, never Python's
    built-ins; attributes only of strings (:data:`METHODS`), dates and
    ``my``; items only by number or slice. What the check at save time
    already refuses is refused here again, in case a path around it exists."""

    @classmethod
    def globals(cls, data):
        out = super().globals(data)
        out["__builtins__"] = {}  # a name Genshi leaves untranslated finds nothing
        return out

    @classmethod
    def lookup_name(cls, data, name):
        __traceback_hide__ = True
        if name.startswith("_") or name in ("defined", "value_of"):
            raise SandboxError(f"Not allowed in a worklist template: the name \u2018{name}\u2019.")
        if name in _RUNTIME_FUNCTIONS:
            return _RUNTIME_FUNCTIONS[name]
        value = data.get(name, UNDEFINED)
        if value is UNDEFINED:
            raise UndefinedError(name)
        if not _value_allowed(value):
            raise SandboxError(f"Not allowed in a worklist template: \u2018{name}\u2019 holds a "
                               f"{type(value).__name__}.")
        if isinstance(value, str):
            _bounded(value)
        return value

    @classmethod
    def lookup_attr(cls, obj, key):
        __traceback_hide__ = True
        if not isinstance(key, str) or key.startswith("_"):
            raise SandboxError(f"Not allowed in a worklist template: the attribute \u2018{key}\u2019.")
        if isinstance(obj, SafeProxy):
            try:
                return getattr(obj, key)
            except AttributeError:
                raise UndefinedError(key, owner=obj) from None
        if isinstance(obj, str) and key in METHODS:
            method = METHODS[key]
            return lambda *args, **kwargs: method(obj, *args, **kwargs)
        if isinstance(obj, (date, datetime)) and key in DATE_ATTRS:
            return getattr(obj, key)
        raise SandboxError(f"Not allowed in a worklist template: \u2018.{key}\u2019 on a "
                           f"{type(obj).__name__} value.")

    @classmethod
    def lookup_item(cls, obj, key):
        __traceback_hide__ = True
        if len(key) == 1:
            key = key[0]
        if isinstance(key, str):
            if isinstance(obj, SafeProxy):
                return cls.lookup_attr(obj, key)
            raise SandboxError(f"Not allowed in a worklist template: the item [{key!r}].")
        if isinstance(obj, (str, list, tuple)) and isinstance(key, (int, slice)):
            return obj[key]
        raise SandboxError(f"Not allowed in a worklist template: an item of a {type(obj).__name__} value.")

    @classmethod
    def undefined(cls, key, owner=UNDEFINED):
        __traceback_hide__ = True
        raise UndefinedError(key, owner=owner)


class _NoLoader:
    """Stands in for Genshi's file loader: a worklist template includes nothing."""

    auto_reload = True

    def load(self, *args, **kwargs):
        raise SandboxError("Not allowed in a worklist template: {% include %}.")


class _Sandboxed:
    """Mix-in for Genshi's text templates: the sandbox lookup, no Python
    blocks, no includes, and :func:`check_stream` on what was parsed."""

    def __init__(self, source: str, **kwargs):
        self._sandbox_body = source
        super().__init__(source, lookup=SandboxLookup, **kwargs)

    def _init_loader(self):
        self.loader = _NoLoader()

    def _init_filters(self):
        self.filters = [self._flatten, _refuse_includes]  # not self._include

    def _parse(self, source, encoding):
        self.allow_exec = False  # NewTextTemplate drops its own allow_exec=False
        stream = super()._parse(source, encoding)
        check_stream(stream, self._sandbox_body)
        return stream


def _refuse_includes(stream, ctxt, **vars):
    """In place of Genshi's include filter: an include that got this far is
    refused, not dropped silently."""
    for kind, data, pos in stream:
        if kind is INCLUDE:
            raise SandboxError("Not allowed in a worklist template: include directives.")
        yield kind, data, pos


class SandboxedNewTextTemplate(_Sandboxed, NewTextTemplate):
    """GNU Health 5.0 syntax (``${...}``, ``{% if %}``), sandboxed."""


class SandboxedOldTextTemplate(_Sandboxed, OldTextTemplate):
    """GNU Health 4.x syntax (``$Name``, ``#if``), sandboxed."""


# -- the check of what Genshi parsed ---------------------------------------------------

_DIRECTIVE_NAMES = {IfDirective: "if", ForDirective: "for", ChooseDirective: "choose", WhenDirective: "when",
                    OtherwiseDirective: "otherwise", WithDirective: "with", DefDirective: "def"}
_RESERVED_TARGETS = frozenset(FUNCTIONS) | {"iter", "defined", "value_of"}

_COMPARE_OPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot)
_REFUSED_KINDS = {
    ast.Lambda: "lambda functions", ast.ListComp: "comprehensions", ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions", ast.GeneratorExp: "generator expressions", ast.NamedExpr: "':=' assignments",
    ast.Starred: "'*' unpacking", ast.Dict: "dictionaries", ast.Set: "sets", ast.Await: "await",
    ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.JoinedStr: "f-strings (Genshi cannot compile them; use + or '%s' % value)",
}
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

    def refuse(self, message: str) -> None:
        raise SandboxError(f"Not allowed in a worklist template: {message}", self.line)

    # -- the stream ---------------------------------------------------------
    def stream(self, events, bound: frozenset[str]) -> None:
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
                self.refuse("Python code blocks ({% python %}).")
            elif kind is INCLUDE:
                self.line = self.locate(None, hint, "include")
                self.refuse("include directives (a template cannot read other files).")
            else:
                self.line = hint
                self.refuse(f"this part of the template ({kind}).")

    def directive(self, cls, name: str, value, bound: frozenset[str]) -> frozenset[str]:
        if cls in (IfDirective, ChooseDirective, WhenDirective):
            if value is not None and not isinstance(value, str):
                self.refuse(f"{{% {name} %}} with this value.")
            if value and value.strip():
                self.expression(value, bound)
            elif cls is IfDirective:
                self.refuse("{% if %} needs a condition.")
            return bound
        if cls is OtherwiseDirective:
            return bound  # Genshi ignores its value
        if cls is ForDirective:
            if not isinstance(value, str) or " in " not in value:
                self.refuse("{% for %} must read {% for NAME in VALUES %}.")
            target, values = value.split(" in ", 1)  # exactly as Genshi splits it
            names = self.targets(self.parse(target, "exec"), "for")
            # Genshi compiles 'iter(<values>)': check that very expression.
            tree = self.parse("iter(%s)" % values.strip(), "eval")
            call = tree.body
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "iter"
                    and len(call.args) == 1 and not call.keywords):
                self.refuse(f"{{% for %}} over \u2018{values.strip()}\u2019.")
            self.whole(call.args[0], bound)
            return bound | names
        if cls is WithDirective:
            if not isinstance(value, str):
                self.refuse("{% with %} with this value.")
            tree = self.parse(value.strip(), "exec")
            inner = set(bound)
            for statement in tree.body:
                if not isinstance(statement, ast.Assign):
                    self.refuse("{% with %} takes only assignments (NAME = VALUE; ...).")
                self.whole(statement.value, frozenset(inner))
                for target in statement.targets:
                    inner |= self._target_names(target, "with")
            return frozenset(inner)
        if cls is DefDirective:
            self.refuse("{% def %} (template functions).")
        self.refuse(f"the directive \u2018{name}\u2019.")
        return bound

    def parse(self, source: str, mode: str) -> ast.AST:
        try:
            return genshi_parse(source, mode)  # the very parse Genshi compiles
        except SyntaxError as exc:
            raise SandboxError(f"{exc.msg} in \u2018{source.strip()}\u2019", self.line) from None
        except (ValueError, RecursionError, MemoryError) as exc:
            raise SandboxError(f"\u2018{source.strip()[:80]}\u2019 cannot be read ({exc.__class__.__name__})",
                               self.line) from None

    def targets(self, tree: ast.AST, what: str) -> frozenset[str]:
        body = getattr(tree, "body", None)
        if not (isinstance(body, list) and len(body) == 1 and isinstance(body[0], ast.Expr)):
            self.refuse(f"{{% {what} %}} must assign to names.")
        return self._target_names(body[0].value, what)

    def _target_names(self, node: ast.AST, what: str) -> frozenset[str]:
        if isinstance(node, ast.Name):
            if node.id.startswith("_") or node.id in _RESERVED_TARGETS:
                self.refuse(f"{{% {what} %}} may not define the name \u2018{node.id}\u2019.")
            return frozenset({node.id})
        if isinstance(node, ast.Tuple):
            out: frozenset[str] = frozenset()
            for elt in node.elts:
                out |= self._target_names(elt, what)
            return out
        self.refuse(f"{{% {what} %}} must assign to names, not to \u2018{ast.unparse(node)}\u2019.")
        return frozenset()

    def expression(self, source: str | None, bound: frozenset[str]) -> None:
        if not isinstance(source, str):
            self.refuse("an expression Genshi built from something other than text.")
        self.whole(self.parse(source, "eval").body, bound)

    def whole(self, node: ast.AST, bound: frozenset[str]) -> None:
        """One whole expression: its nodes, and how many operators."""
        try:
            self.node(node, bound)
        except RecursionError:
            raise SandboxError("the expression is nested too deeply", self.line) from None
        operators = sum(isinstance(n, ast.BinOp) for n in ast.walk(node))
        if operators > MAX_OPERATORS:
            self.refuse(f"{operators} operators in one expression (at most {MAX_OPERATORS}; "
                        "{% with %} can name a part).")

    # -- one expression -------------------------------------------------------
    def node(self, node: ast.AST, bound: frozenset[str]) -> None:
        kind = type(node)
        if kind in _REFUSED_KINDS:
            self.refuse(f"{_REFUSED_KINDS[kind]} (\u2018{_shown(node)}\u2019).")
        if kind is ast.Constant:
            if not (node.value is None or isinstance(node.value, (str, bool, int, float))):
                self.refuse(f"the literal \u2018{_shown(node)}\u2019.")
            return
        if kind is ast.Name:
            self.name(node, bound)
            return
        if kind is ast.Attribute:
            self.node(node.value, bound)  # the leftmost problem first: __import__ before .system
            self.attribute(node.attr, node)
            return
        if kind is ast.Call:
            self.call(node, bound)
            return
        if kind is ast.Subscript:
            if not isinstance(node.ctx, ast.Load):
                self.refuse(f"assignment (\u2018{_shown(node)}\u2019).")
            index = node.slice
            if isinstance(index, ast.Constant) and not isinstance(index.value, (int, bool)):
                self.refuse(f"the item \u2018{_shown(node)}\u2019 (only numbers and slices index a value).")
            self.node(node.value, bound)
            self.node(index, bound)
            return
        if kind is ast.Slice:
            for part in (node.lower, node.upper, node.step):
                if part is not None:
                    self.node(part, bound)
            return
        if kind is ast.BinOp:
            if isinstance(node.op, (ast.Add, ast.Sub)):
                pass
            elif isinstance(node.op, ast.Mod):
                self.percent(node)
            else:
                self.refuse(f"the operator in \u2018{_shown(node)}\u2019 (only +, - and '...' % values).")
            self.node(node.left, bound)
            self.node(node.right, bound)
            return
        if kind is ast.UnaryOp:
            if not isinstance(node.op, (ast.Not, ast.USub, ast.UAdd)):
                self.refuse(f"the operator in \u2018{_shown(node)}\u2019.")
            self.node(node.operand, bound)
            return
        if kind is ast.BoolOp:
            for value in node.values:
                self.node(value, bound)
            return
        if kind is ast.Compare:
            if not all(isinstance(op, _COMPARE_OPS) for op in node.ops):
                self.refuse(f"the comparison \u2018{_shown(node)}\u2019.")
            self.node(node.left, bound)
            for value in node.comparators:
                self.node(value, bound)
            return
        if kind is ast.IfExp:
            for part in (node.test, node.body, node.orelse):
                self.node(part, bound)
            return
        if kind in (ast.Tuple, ast.List):
            if not isinstance(node.ctx, ast.Load):
                self.refuse(f"assignment (\u2018{_shown(node)}\u2019).")
            for elt in node.elts:
                self.node(elt, bound)
            return
        self.refuse(f"\u2018{_shown(node)}\u2019 ({kind.__name__}).")

    def name(self, node: ast.Name, bound: frozenset[str]) -> None:
        name = node.id
        if not isinstance(node.ctx, ast.Load):
            self.refuse(f"assignment to \u2018{name}\u2019.")
        if name.startswith("_"):
            self.refuse(f"the name \u2018{name}\u2019 (names starting with _ are never available).")
        if name in bound or name in self.names:
            return
        if name in self.builtins or name in ("defined", "value_of", "Markup", "Undefined"):
            self.refuse(f"\u2018{name}\u2019 (of Python's built-ins a template may use only "
                        f"{', '.join(sorted(FUNCTIONS))}).")
        raise SandboxError(f"Unknown name \u2018{name}\u2019: a template may use the variables listed beside "
                           "the editor, my (the request) and the names its own for/with define.", self.line)

    def attribute(self, attr: str, node: ast.AST) -> None:
        if attr.startswith("_"):
            self.refuse(f"\u2018{_shown(node)}\u2019 (attributes starting with _ are never available).")
        if attr not in self.attributes:
            self.refuse(f"the attribute \u2018.{attr}\u2019 in \u2018{_shown(node)}\u2019 (a template may read "
                        "the request's fields, e.g. my.urgent or my.patient.family_name, and call string methods "
                        "such as upper(); the list is beside the editor).")

    def call(self, node: ast.Call, bound: frozenset[str]) -> None:
        func = node.func
        if isinstance(func, ast.Attribute):
            self.node(func.value, bound)
        elif not isinstance(func, ast.Name):
            self.node(func, bound)  # lambdas and the like say what they are
        if isinstance(func, ast.Name):
            if func.id not in FUNCTIONS or func.id in bound:
                self.name(func, bound)  # refuses built-ins and unknown names with their own message
                self.refuse(f"calling \u2018{func.id}\u2019 (a template may call only "
                            f"{', '.join(sorted(FUNCTIONS))} and string methods).")
        elif isinstance(func, ast.Attribute):
            if func.attr not in METHODS and func.attr not in _DATE_CALLS:
                self.attribute(func.attr, func)
                self.refuse(f"calling \u2018.{func.attr}()\u2019 (a template may call string methods such as "
                            "upper(); the list is beside the editor).")
        else:
            self.refuse(f"calling \u2018{_shown(func)}\u2019 (only named functions and string methods).")
        for arg in node.args:
            self.node(arg, bound)
        for keyword in node.keywords:
            if keyword.arg is None:
                self.refuse(f"'**' in \u2018{_shown(node)}\u2019.")
            if keyword.arg.startswith("_"):
                self.refuse(f"the argument \u2018{keyword.arg}\u2019.")
            self.node(keyword.value, bound)

    def percent(self, node: ast.BinOp) -> None:
        left = node.left
        if not (isinstance(left, ast.Constant) and isinstance(left.value, str)):
            self.refuse(f"\u2018{_shown(node)}\u2019 (% formats only a literal text: '%s-%s' % (A, B)).")
        conversions = list(_PERCENT_SPEC.finditer(left.value))
        if len(conversions) > MAX_CONVERSIONS:
            self.refuse(f"{len(conversions)} conversions in one '%' format (at most {MAX_CONVERSIONS}).")
        for m in conversions:
            width, precision = m.group(2), m.group(3)
            for number in (width, precision):
                if number == "*" or (number and len(number) > 3):
                    self.refuse(f"the width \u2018{m.group(0)}\u2019 in \u2018{_shown(node)}\u2019 (at most 999).")


def _shown(node: ast.AST) -> str:
    try:
        text = ast.unparse(node)
    except Exception:  # pragma: no cover - unparse handles every parsed node
        text = type(node).__name__
    return text if len(text) <= 80 else text[:77] + "..."


def check_stream(stream, body: str) -> None:
    """Refuse (:class:`SandboxError`, with the line) anything in a parsed
    Genshi text template that is not part of the worklist template language."""
    _Checker(body).stream(stream, frozenset())
