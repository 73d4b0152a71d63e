"""The ``ghimaging`` command group: Flask's command line (the same options,
``run``, ``shell``, ``routes``, ``.env`` files, ``@with_appcontext``) without
building the application to list or find a command.

Flask's ``FlaskGroup`` creates the application to list the commands it
carries, so ``ghimaging --help`` and the gunicorn master of ``ghimaging
serve`` each held a whole application (issue 11, small footprint). Here the
commands are registered on the group itself; each creates the application
when it runs (``@with_appcontext``), and the commands kept in other modules
are :class:`LazyCommand` stand-ins that import them when they are used. The
Flask-specific steps run only when a command is invoked, so ``--help``
imports neither Flask nor SQLAlchemy.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from flask import Flask

F = TypeVar("F", bound=Callable[..., Any])


class LazyCommand(click.Command):
    """A command (or group) kept in another module: ``target`` is
    ``"module:attribute"``, imported when the command is run or its own
    help is asked for. ``help`` is the line shown in the parent's list of
    commands (tests/test_lazy_imports.py checks that it is the command's
    own)."""

    def __init__(self, name: str, target: str, help: str) -> None:
        super().__init__(name, help=help, add_help_option=False)
        self.target = target
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            module, attr = self.target.split(":")
            self._real = getattr(importlib.import_module(module), attr)
        assert self._real is not None
        return self._real

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        # The real command parses its arguments and is the one invoked.
        return self.real().make_context(info_name, args, parent=parent, **extra)


def _stash(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[f"ghimaging.{param.name}"] = value
    return value


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool | None:
    """Flask's ``--debug/--no-debug``: the flag, when given, goes to
    FLASK_DEBUG (read by the application factory)."""
    if ctx.get_parameter_source(param.name or "") in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
        return None
    os.environ["FLASK_DEBUG"] = "1" if value else "0"
    return value


def _version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from flask.cli import get_version

    get_version(ctx, param, value)


def with_appcontext(f: F) -> F:
    """Flask's ``with_appcontext``, importing Flask only when the command runs."""
    @click.pass_context
    def run_in_app(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        from flask import current_app
        from flask.cli import ScriptInfo

        if not current_app:
            ctx.with_resource(ctx.ensure_object(ScriptInfo).load_app().app_context())
        return ctx.invoke(f, *args, **kwargs)

    return functools.update_wrapper(run_in_app, f)  # type: ignore[return-value]


def current_app_object() -> Flask:
    """The application of the current app context (the real object, not the proxy)."""
    from flask import current_app

    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    return app


class CommandGroup(click.Group):
    """Flask's ``FlaskGroup`` surface for a factory ``create_app``, which is
    called only by the commands that need the application."""

    def __init__(self, create_app: Callable[[], Flask], lazy: dict[str, tuple[str, str]], **extra: Any) -> None:
        params = [
            click.Option(["-e", "--env-file"], type=click.Path(exists=True, dir_okay=False), is_eager=True,
                         expose_value=False, callback=_stash,
                         help="Load environment variables from this file, taking precedence over those set "
                              "by '.env' and '.flaskenv'. Variables set directly in the environment take "
                              "highest precedence. python-dotenv must be installed."),
            click.Option(["-A", "--app"], metavar="IMPORT", is_eager=True, expose_value=False, callback=_stash,
                         help="The Flask application or factory function to load, in the form 'module:name'. "
                              "Module can be a dotted import or file path. Name is not required if it is "
                              "'app', 'application', 'create_app', or 'make_app', and can be 'name(args)' to "
                              "pass arguments."),
            click.Option(["--debug/--no-debug"], help="Set debug mode.", expose_value=False, callback=_set_debug),
            click.Option(["--version"], help="Show the Flask version.", expose_value=False, is_flag=True,
                         is_eager=True, callback=_version),
        ]
        extra.setdefault("context_settings", {}).setdefault("auto_envvar_prefix", "FLASK")
        super().__init__(params=params, **extra)
        self.create_app = create_app
        for name, (target, help_line) in lazy.items():
            self.add_command(LazyCommand(name, target, help_line))

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        os.environ["FLASK_RUN_FROM_CLI"] = "true"  # app.run() outside a __main__ guard does nothing
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        """Before a command runs (never for ``--help``): the ``.env`` files
        and ``--env-file``, then the ScriptInfo that ``@with_appcontext``
        builds the application from."""
        from flask.cli import ScriptInfo, load_dotenv
        from flask.helpers import get_load_dotenv

        env_file = ctx.meta.get("ghimaging.env_file")
        if env_file is not None:
            try:
                importlib.import_module("dotenv")
            except ImportError:
                raise click.BadParameter("python-dotenv must be installed to load an env file.",
                                         ctx=ctx, param_hint="'-e' / '--env-file'") from None
        defaults = get_load_dotenv(True)
        if env_file is not None or defaults:
            load_dotenv(env_file, load_defaults=defaults)
        info = ScriptInfo(create_app=self.create_app, set_debug_flag=True, load_dotenv_defaults=True)
        info.app_import_path = ctx.meta.get("ghimaging.app")
        ctx.obj = info
        return super().invoke(ctx)
