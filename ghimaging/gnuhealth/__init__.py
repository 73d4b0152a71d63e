"""Optional sync with a GNU Health server over XML-RPC.

- ``client``: the only code speaking XML-RPC (session login); ``errors``:
  every way a call fails; ``remote``: GNU Health's records as we use them.
- ``settings``: the server, user and password; "Test connection".
- ``pull``: patients and requested imaging requests from GNU Health.
- ``push`` and ``outbox``: requests and results sent there, never twice.
- ``worker``: the sync's steps, each committing its own work, and the
  background loop; ``commands``: ``ghimaging gnuhealth``; ``routes``: pages.
"""

from __future__ import annotations

from flask import Flask


def _wake(sender: object, **kw: object) -> None:
    """A request changed: the outbox item is already written with the
    change; let the loop send it now rather than at its next look."""
    from .outbox import wake

    wake.set()


def init_app(app: Flask) -> None:
    from ..imaging.workflow import request_changed
    from . import outbox, pull
    from .routes import bp

    outbox.listen()
    pull.listen()
    request_changed.connect(_wake, weak=False)
    app.register_blueprint(bp)

    @app.context_processor
    def _gnuhealth_helpers() -> dict[str, object]:
        from . import status
        from .settings import active_config

        return {"gnuhealth_status": status.of_request, "gnuhealth_patient_link": status.patient_link,
                "gnuhealth_enabled": lambda: active_config() is not None}
