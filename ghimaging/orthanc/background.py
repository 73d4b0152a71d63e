"""Work the Orthanc server pages leave to a thread: the re-check after an
administrator changed a server's connection details (the page and the API
answer at once; the server page shows the outcome). The thread is a
background step: its own app context, session and transaction."""

from __future__ import annotations

import threading

from flask import Flask, current_app

from ..extensions import db
from ..models import OrthancServer
from .servers import recheck


def recheck_in_background(server_id: int) -> threading.Thread:
    """Re-check the server and commit the outcome, in a thread of its own.
    Call it after the change that asked for it is committed, or the thread
    reads the old details."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]

    def run() -> None:
        with app.app_context():
            try:
                server = db.session.get(OrthancServer, server_id)
                if server is not None:
                    recheck(server)
                    db.session.commit()
            finally:
                db.session.remove()

    t = threading.Thread(target=run, name=f"orthanc-recheck-{server_id}", daemon=True)
    t.start()
    return t
