"""Secrets kept in the database (the orgs' webhook secrets) are sealed: encrypted and authenticated with
Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key the database does not hold.

Keys: ``HERALD_SECRET_KEY``, one Fernet key or several separated by commas (the first seals; every one
unseals, so a key is rotated by putting the new one first and re-setting the secrets). Without it, a SQLite
database gets a key file of its own beside it (``<database>.key``, created once, readable by its owner
only): the embedded default works with nothing to configure, and a copy of the database alone reveals no
secret. A PostgreSQL deployment must set the variable: storing a secret without a key is refused.

A sealed value is ``fernet:<token>``; a value without that prefix was stored before sealing existed and is
read as it is (setting the secret again seals it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy.engine import make_url

PREFIX = "fernet:"


class SealingError(RuntimeError):
    """A secret cannot be sealed (no key is configured) or unsealed (no configured key opens it)."""


def check_keys(raw: str) -> tuple[str, ...]:
    """The Fernet keys of a ``HERALD_SECRET_KEY`` value (comma-separated); ``ValueError`` saying which one is
    not a key (32 url-safe base64-encoded bytes, as ``Fernet.generate_key()`` makes)."""
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ValueError(f"key {i} of {len(keys)} is not a Fernet key (32 url-safe base64 bytes; make one "
                             "with: python -c 'from cryptography.fernet import Fernet; "
                             "print(Fernet.generate_key().decode())')") from None
    return keys


class Sealer:
    """Seals and unseals secrets with the given keys (none: unsealed values still read, sealing refused)."""

    def __init__(self, keys: Sequence[str] = ()):
        self._fernet = MultiFernet([Fernet(k) for k in keys]) if keys else None

    def seal(self, secret: str) -> str:
        """The stored form of ``secret``."""
        if self._fernet is None:
            raise SealingError("no key to seal secrets with: set HERALD_SECRET_KEY")
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def unseal(self, stored: str) -> str:
        """The secret of a stored value."""
        if not stored.startswith(PREFIX):
            return stored
        if self._fernet is None:
            raise SealingError("a sealed secret is stored but no key is configured: set HERALD_SECRET_KEY")
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SealingError("a stored secret does not open with any key of HERALD_SECRET_KEY (was the key "
                               "that sealed it removed?)") from None


def key_file(database_url: str) -> Path | None:
    """The key file beside a SQLite database file (``None`` for PostgreSQL or an in-memory SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(f"{url.database}.key")


def sealer_for(database_url: str, keys: Sequence[str] = ()) -> Sealer:
    """The sealer of a deployment: its configured keys, else the SQLite database's own key file (made now when
    missing, mode 0600), else one that refuses to seal."""
    if keys:
        return Sealer(keys)
    path = key_file(database_url)
    if path is None:
        return Sealer()
    if not path.exists():
        # written whole under a temporary name, then linked into place: a process that starts at the same time
        # finds either no file or a complete one, and the first link wins
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    raw = path.read_text().strip()
    try:
        return Sealer(check_keys(raw))
    except ValueError as exc:
        raise SealingError(f"{path}: {exc}") from None
