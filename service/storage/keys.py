"""API keys: ``hk_<prefix>_<secret>``; only the prefix (to find the row) and a SHA-256 of the key are kept.

Keys carry 256 bits of randomness, so a fast hash is enough (as for GitHub's and Stripe's tokens); they are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session, select

from service.storage.tables import ApiKey, Org, User

ROLES = ("marketer", "approver", "admin", "service")


@dataclass(frozen=True)
class Principal:
    """Who is calling: their org, user, key and roles."""

    org_id: int
    user_id: int
    key_id: int
    roles: frozenset[str]

    def has(self, *roles: str) -> bool:
        """True when the caller has any of ``roles``."""
        return bool(self.roles.intersection(roles))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_roles(text: str) -> frozenset[str]:
    """Roles from their comma-separated form."""
    return frozenset(r for r in text.split(",") if r)


def check_roles(roles: list[str] | tuple[str, ...]) -> str:
    """Roles as stored; ``ValueError`` naming an unknown one."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise ValueError(f"roles must be some of {', '.join(ROLES)}; got {', '.join(unknown) or 'none'}")
    return ",".join(sorted(set(roles)))


def issue_key(session: Session, user: User, roles: list[str] | tuple[str, ...] | None = None) -> tuple[ApiKey, str]:
    """A new key for ``user`` (with the user's roles unless narrowed): the row, and the key, shown only once."""
    assert user.id is not None
    wanted = check_roles(list(roles)) if roles else user.roles
    if not parse_roles(wanted) <= parse_roles(user.roles):
        raise ValueError("a key cannot have roles its user does not have")
    prefix = secrets.token_hex(6)
    key = f"hk_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(org_id=user.org_id, user_id=user.id, prefix=prefix, secret_hash=_digest(key), roles=wanted)
    session.add(row)
    session.flush()
    return row, key


def authenticate(engine: Engine, key: str) -> Principal | None:
    """The principal of ``key``, or ``None`` when it is malformed, unknown or revoked."""
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "hk" or len(key) > 200:
        return None
    with Session(engine) as session:
        row = session.exec(select(ApiKey).where(ApiKey.prefix == parts[1])).first()
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.secret_hash, _digest(key)):
        return None
    assert row.id is not None
    return Principal(row.org_id, row.user_id, row.id, parse_roles(row.roles))


def create_org(session: Session, name: str, admin_name: str = "admin") -> tuple[Org, User, str]:
    """A new org with one admin user (every role) and that admin's first key (returned once)."""
    org = Org(name=name)
    session.add(org)
    session.flush()
    assert org.id is not None
    admin = User(org_id=org.id, name=admin_name, roles=",".join(ROLES))
    session.add(admin)
    session.flush()
    _, key = issue_key(session, admin)
    return org, admin, key
