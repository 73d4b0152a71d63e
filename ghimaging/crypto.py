"""Encryption of stored credentials (Orthanc and GNU Health passwords).

The key lives in the instance folder (``credentials.key``, mode 0600), apart
from the database, so a copied database alone does not reveal passwords.
``cryptography`` is imported by the first call, not with the application.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app
from flask_babel import gettext as _  # type: ignore[import-untyped]  # Flask-Babel ships no types

from .config import write_private
from .exceptions import UpstreamFailure

KEY_FILE = "credentials.key"


class CredentialError(UpstreamFailure, RuntimeError):
    """A stored secret cannot be decrypted (key file replaced or lost): the
    system it opens (Orthanc, GNU Health) cannot be reached with it, so the
    kind is :class:`~ghimaging.exceptions.UpstreamFailure` (502), like a
    server that does not answer. Still a ``RuntimeError`` for the callers
    that catch it with other failures."""

    code = "credential"

    def __init__(self, message: str) -> None:
        super().__init__(message)


def _key() -> bytes:
    from cryptography.fernet import Fernet

    path = Path(current_app.instance_path) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        key = Fernet.generate_key()
        try:
            write_private(path, key + b"\n", exclusive=True)  # 0600 whatever the umask
        except FileExistsError:  # another worker won the race
            return path.read_bytes().strip()
        return key


def encrypt(secret: str) -> str:
    if not secret:
        return ""
    from cryptography.fernet import Fernet

    return Fernet(_key()).encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    from cryptography.fernet import Fernet, InvalidToken

    try:
        return Fernet(_key()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialError(_(
            "a stored password cannot be decrypted: %(file)s in the instance folder has changed; enter the "
            "password again", file=KEY_FILE)) from None
