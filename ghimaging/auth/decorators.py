"""The one decorator for pages: sign-in, then the permission map."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import abort
from flask_login import current_user, login_required

from ..permissions import Action

F = TypeVar("F", bound=Callable[..., Any])


def requires(action: Action) -> Callable[[F], F]:
    """Sign-in (else the login page), then ``action`` from the permission
    map (else 403)."""

    def decorator(view: F) -> F:
        @wraps(view)
        @login_required  # type: ignore[untyped-decorator]
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.can(action):
                abort(403)
            return view(*args, **kwargs)

        wrapped.required_action = action  # type: ignore[attr-defined]  # read by the permission tests
        return wrapped  # type: ignore[return-value]

    return decorator
