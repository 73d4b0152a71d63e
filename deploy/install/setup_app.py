"""The installer's steps inside the application, run by deploy/install.sh
as the service user with the installed settings and the venv's Python:

    setup_app.py --orthanc-url URL --orthanc-user USER [--new-token] < password

Registers the local Orthanc (checked for real by the same service as the
Orthanc page) unless a server with that URL exists, makes sure the push user exists (role
technologist: it may start a sync; its password is random and never used),
and with --new-token prints a new API token for it. Prints one JSON line:
{"server_id": N, "token": "..." | null}.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

LABEL = "This Orthanc"
PUSH_USER = "orthanc-push"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orthanc-url", required=True)
    ap.add_argument("--orthanc-user", required=True)
    ap.add_argument("--new-token", action="store_true")
    args = ap.parse_args(argv)
    password = sys.stdin.readline().strip()

    from sqlalchemy import select

    from ghimaging import create_app
    from ghimaging.auth import service
    from ghimaging.extensions import db
    from ghimaging.models import OrthancServer, Role
    from ghimaging.orthanc import servers

    app = create_app()
    with app.app_context():
        server = db.session.scalars(select(OrthancServer).where(OrthancServer.url == args.orthanc_url)).first()
        if server is None:
            label = LABEL
            taken = {s.label.casefold() for s in db.session.scalars(select(OrthancServer))}
            n = 2
            while label.casefold() in taken:
                label, n = f"{LABEL} {n}", n + 1
            server = servers.add_server(label=label, url=args.orthanc_url, username=args.orthanc_user,
                                        password=password)
        db.session.commit()
        user = service.find_user(PUSH_USER)
        if user is None:
            user = service.create_user(PUSH_USER, secrets.token_urlsafe(24) + "aA1!", [Role.TECHNOLOGIST],
                                       full_name="Orthanc push (installer)")
            db.session.commit()
        token = service.create_token(user, "orthanc-push (installer)") if args.new_token else None
        db.session.commit()
        print(json.dumps({"server_id": server.id, "token": token}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
