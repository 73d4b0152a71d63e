"""A test client that behaves like a browser about CSRF tokens."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse


class CsrfClient:
    """A test client that sends the CSRF token of the page it last loaded,
    the way a browser would, so CSRF stays on in the functional tests."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def token(self, path: str = "/account") -> str:
        html = self.client.get(path).get_data(as_text=True)
        m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
            re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert m, f"no CSRF token on {path}"
        return m.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, *, token_from: str = "/account",
             **kw: Any) -> TestResponse:
        data = dict(data or {})
        data.setdefault("csrf_token", self.token(token_from))
        return self.client.post(path, data=data, **kw)

    def get(self, *a: Any, **kw: Any) -> TestResponse:
        return self.client.get(*a, **kw)
