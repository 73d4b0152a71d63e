"""Encryption of stored credentials (Orthanc and GNU Health passwords).

The key lives in the instance folder (``credentials.key``, mode 0600), apart
from the database, so a copied database alone does not reveal passwords.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

KEY_FILE = "credentials.key"


class CredentialError(RuntimeError):
    """A stored secret cannot be decrypted (key file replaced or lost)."""


def _key() -> bytes:
    path = Path(current_app.instance_path) / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        key = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker won the race
            return path.read_bytes().strip()
        with os.fdopen(fd, "wb") as fh:
            fh.write(key + b"\n")
        return key


def encrypt(secret: str) -> str:
    if not secret:
        return ""
    return Fernet(_key()).encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    try:
        return Fernet(_key()).decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialError(
            f"a stored password cannot be decrypted: {KEY_FILE} in the instance folder has changed; "
            "enter the password again") from None
