"""ghimaging: a light radiology front end for small clinics.

Importing the package is cheap: :func:`create_app` imports the application
(``ghimaging/factory.py``) when it is called."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__version__ = "0.1.0"

PACKAGE_DIR = Path(__file__).resolve().parent
MIGRATIONS_DIR = PACKAGE_DIR / "migrations"


def resource_dir(name: str) -> Path:
    """``templates``, ``static`` and ``worklist_templates`` live at the top of
    the checkout and inside the package once installed from a wheel."""
    inside = PACKAGE_DIR / name
    if inside.is_dir():
        return inside
    return PACKAGE_DIR.parent / name


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """The application: settings (defaults, then ``instance/config.py``,
    then ``GHIMAGING_*`` variables, then ``test_config``), extensions,
    blueprints and commands (see :mod:`ghimaging.factory`)."""
    from .factory import create_app as build

    return build(test_config)
