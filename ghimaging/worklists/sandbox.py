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

1. :func:`.checker.check_stream` reads the template as Genshi parsed it (so
   exactly the code Genshi would compile) and validates each expression's
   syntax tree against a whitelist, naming the line. It runs when a
   template is saved and again before every render (:mod:`.render` compiles
   through :class:`SandboxedNewTextTemplate` / :class:`SandboxedOldTextTemplate`).
2. At run time, :class:`SandboxLookup` resolves every name, attribute and
   item: no Python built-ins (the code runs with an empty ``__builtins__``),
   attributes only on strings (the listed methods), dates and ``my``; no
   include loader. Loops, text and string growth are bounded, so a template
   cannot hang a submit either.

This module holds the language (what a template may use, the limits) and
the run-time half; :mod:`.checker` the check of the parsed template.
"""

from __future__ import annotations

import ast
import contextvars
from collections.abc import Callable, Iterable, Iterator
from datetime import date, datetime
from typing import Any, NoReturn

from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types
from flask_babel import lazy_gettext as _l
from genshi.template import NewTextTemplate, OldTextTemplate
from genshi.template.base import INCLUDE, Template
from genshi.template.eval import UNDEFINED, StrictLookup, UndefinedError

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

#: Syntax a template may not use, named (lazily, in the reader's language) when
#: :mod:`.checker` refuses it.
REFUSED_KINDS: dict[type[ast.AST], Any] = {
    ast.Lambda: _l("lambda functions"), ast.ListComp: _l("comprehensions"), ast.SetComp: _l("comprehensions"),
    ast.DictComp: _l("comprehensions"), ast.GeneratorExp: _l("generator expressions"),
    ast.NamedExpr: _l("':=' assignments"), ast.Starred: _l("'*' unpacking"), ast.Dict: _l("dictionaries"),
    ast.Set: _l("sets"), ast.Await: "await", ast.Yield: "yield", ast.YieldFrom: "yield",
    ast.JoinedStr: _l("f-strings (Genshi cannot compile them; use + or '%s' % value)"),
}


class SandboxError(RenderError):
    """Something a worklist template may not do; ``line`` when known. A
    :class:`RenderError`, so every caller that handles a broken template
    (the editor, the submit, the folder rebuild) handles this one too."""


def _too_long() -> SandboxError:
    return SandboxError(_("A worklist template may not build text longer than %(count)s characters.", count=MAX_TEXT))


def _refused(what: str) -> SandboxError:
    """``what`` (translated) is the thing refused, as a phrase."""
    return SandboxError(_("Not allowed in a worklist template: %(what)s", what=what))


# -- what a template may use --------------------------------------------------

def _bounded(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise _too_long()
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


def _enumerate(items: Iterable[Any], start: int = 0) -> Iterable[tuple[int, Any]]:
    return enumerate(items, start)


#: Functions a template may call, by name.
FUNCTIONS: dict[str, Any] = {"len": _len, "str": _str, "int": _int, "abs": _abs, "bool": _bool,
                             "min": _min, "max": _max, "enumerate": _enumerate}

_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("worklist_template_items")


def _iter(items: Iterable[Any]) -> Iterator[Any]:
    """What ``{% for %}`` loops through (Genshi writes ``iter(...)``): at
    most :data:`MAX_ITEMS` items per render, all loops together."""
    budget = _budget.get(None) or [MAX_ITEMS]
    for item in items:
        if budget[0] <= 0:
            raise SandboxError(_("The template's loops went through more than %(count)s items.", count=MAX_ITEMS))
        budget[0] -= 1
        yield item


def new_budget() -> contextvars.Token[list[int]]:
    """Start the loop budget of one render; pass the token to
    :func:`end_budget` afterwards."""
    return _budget.set([MAX_ITEMS])


def end_budget(token: contextvars.Token[list[int]]) -> None:
    _budget.reset(token)


_RUNTIME_FUNCTIONS = dict(FUNCTIONS, iter=_iter)


def _replace(s: str, old: str, new: str, count: int = -1) -> str:
    old, new = str(old), str(new)
    hits = s.count(old)
    if count >= 0:
        hits = min(hits, count)
    if len(s) + hits * max(0, len(new) - len(old)) > MAX_TEXT:
        raise _too_long()
    return s.replace(old, new, count)


def _padding(name: str) -> Callable[..., str]:
    method: Callable[..., str] = getattr(str, name)

    def pad(s: str, width: int, *args: Any) -> str:
        if int(width) > MAX_TEXT:
            raise _too_long()
        return method(s, width, *args)
    return pad


def _join(s: str, items: Iterable[Any]) -> str:
    items = list(_iter(items))
    if sum(len(i) for i in items if isinstance(i, str)) + len(s) * max(0, len(items) - 1) > MAX_TEXT:
        raise _too_long()
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
DATE_CALLS = frozenset({"isoformat", "strftime", "weekday", "isoweekday"})


#: ``strftime`` directives a template may use, and what each gives. Python's
#: own ``strftime`` imports ``time`` through ``__import__``, which the
#: sandbox's empty ``__builtins__`` does not have; and the locale-dependent
#: directives (%A, %b, %c ...) would change with the server's locale.
STRFTIME_DIRECTIVES: dict[str, Callable[[date], str]] = {
    "Y": lambda d: f"{d.year:04d}",
    "m": lambda d: f"{d.month:02d}",
    "d": lambda d: f"{d.day:02d}",
    "H": lambda d: f"{getattr(d, 'hour', 0):02d}",
    "M": lambda d: f"{getattr(d, 'minute', 0):02d}",
    "S": lambda d: f"{getattr(d, 'second', 0):02d}",
    "y": lambda d: f"{d.year % 100:02d}",
    "j": lambda d: f"{d.timetuple().tm_yday:03d}",
    "%": lambda d: "%",
}
_STRFTIME_HELP = " ".join("%" + k for k in STRFTIME_DIRECTIVES)


def _strftime(value: date, pattern: Any) -> str:
    """``value.strftime(pattern)`` for the directives of
    :data:`STRFTIME_DIRECTIVES`; any other is refused, naming those."""
    if not isinstance(pattern, str):
        raise SandboxError(_("strftime takes a text pattern, e.g. %(example)s.", example="strftime('%Y%m%d')"))
    _bounded(pattern)
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch != "%":
            out.append(ch)
            continue
        code = next(chars, "")
        if code not in STRFTIME_DIRECTIVES:
            raise SandboxError(_("strftime in a worklist template takes only %(codes)s; not \u2018%(code)s\u2019.",
                                 codes=_STRFTIME_HELP, code="%" + code))
        out.append(STRFTIME_DIRECTIVES[code](value))
    return _bounded("".join(out))


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


class SandboxLookup(StrictLookup):  # type: ignore[misc]  # Genshi ships no types
    """Genshi's name, attribute and item lookups for worklist templates: only
    the template's variables and :data:`FUNCTIONS`, never Python's
    built-ins; attributes only of strings (:data:`METHODS`), dates and
    ``my``; items only by number or slice. What the check at save time
    already refuses is refused here again, in case a path around it exists."""

    @classmethod
    def globals(cls, data: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = super().globals(data)
        out["__builtins__"] = {}  # a name Genshi leaves untranslated finds nothing
        return out

    @classmethod
    def lookup_name(cls, data: dict[str, Any], name: str) -> Any:
        __traceback_hide__ = True
        if name.startswith("_") or name in ("defined", "value_of"):
            raise _refused(_("the name \u2018%(name)s\u2019.", name=name))
        if name in _RUNTIME_FUNCTIONS:
            return _RUNTIME_FUNCTIONS[name]
        value = data.get(name, UNDEFINED)
        if value is UNDEFINED:
            raise UndefinedError(name)
        if not _value_allowed(value):
            raise _refused(_("\u2018%(name)s\u2019 holds a %(kind)s.", name=name, kind=type(value).__name__))
        if isinstance(value, str):
            _bounded(value)
        return value

    @classmethod
    def lookup_attr(cls, obj: Any, key: Any) -> Any:
        __traceback_hide__ = True
        if not isinstance(key, str) or key.startswith("_"):
            raise _refused(_("the attribute \u2018%(name)s\u2019.", name=key))
        if isinstance(obj, SafeProxy):
            try:
                return getattr(obj, key)
            except AttributeError:
                raise UndefinedError(key, owner=obj) from None
        if isinstance(obj, str) and key in METHODS:
            method = METHODS[key]
            return lambda *args, **kwargs: method(obj, *args, **kwargs)
        if isinstance(obj, (date, datetime)) and key == "strftime":
            return lambda pattern: _strftime(obj, pattern)
        if isinstance(obj, (date, datetime)) and key in DATE_ATTRS:
            return getattr(obj, key)
        raise _refused(_("\u2018.%(name)s\u2019 on a %(kind)s value.", name=key, kind=type(obj).__name__))

    @classmethod
    def lookup_item(cls, obj: Any, key: Any) -> Any:
        __traceback_hide__ = True
        if len(key) == 1:
            key = key[0]
        if isinstance(key, str):
            if isinstance(obj, SafeProxy):
                return cls.lookup_attr(obj, key)
            raise _refused(_("the item %(item)s.", item="[" + repr(key) + "]"))
        if isinstance(obj, (str, list, tuple)) and isinstance(key, (int, slice)):
            return obj[key]
        raise _refused(_("an item of a %(kind)s value.", kind=type(obj).__name__))

    @classmethod
    def undefined(cls, key: str, owner: Any = UNDEFINED) -> Any:
        __traceback_hide__ = True
        raise UndefinedError(key, owner=owner)


class _NoLoader:
    """Stands in for Genshi's file loader: a worklist template includes nothing."""

    auto_reload = True

    def load(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise _refused("{% include %}.")


class _Sandboxed(Template):  # type: ignore[misc]  # Genshi ships no types
    """Mix-in for Genshi's text templates (before them in the bases): the
    sandbox lookup, no Python blocks, no includes, and
    :func:`.checker.check_stream` on what was parsed."""

    def __init__(self, source: str, **kwargs: Any) -> None:
        self._sandbox_body = source
        super().__init__(source, lookup=SandboxLookup, **kwargs)

    def _init_loader(self) -> None:
        self.loader = _NoLoader()

    def _init_filters(self) -> None:
        self.filters = [self._flatten, _refuse_includes]  # not self._include

    def _parse(self, source: str, encoding: str | None) -> list[Any]:
        from .checker import check_stream  # it imports this module's lists

        self.allow_exec = False  # NewTextTemplate drops its own allow_exec=False
        stream: list[Any] = super()._parse(source, encoding)
        check_stream(stream, self._sandbox_body)
        return stream


def _refuse_includes(stream: Iterable[tuple[Any, Any, Any]], ctxt: Any, **vars: Any
                     ) -> Iterator[tuple[Any, Any, Any]]:
    """In place of Genshi's include filter: an include that got this far is
    refused, not dropped silently."""
    for kind, data, pos in stream:
        if kind is INCLUDE:
            raise _refused(_("include directives."))
        yield kind, data, pos


class SandboxedNewTextTemplate(_Sandboxed, NewTextTemplate):  # type: ignore[misc]  # Genshi ships no types
    """GNU Health 5.0 syntax (``${...}``, ``{% if %}``), sandboxed."""


class SandboxedOldTextTemplate(_Sandboxed, OldTextTemplate):  # type: ignore[misc]  # Genshi ships no types
    """GNU Health 4.x syntax (``$Name``, ``#if``), sandboxed."""
