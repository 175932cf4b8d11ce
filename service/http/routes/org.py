"""The caller's org: who am I, users and API keys (admins)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import get, post
from litestar.params import JSONBody
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from service.http.auth import ADMINS
from service.http.deps import Caller, DbDep
from service.http.problems import conflict, error, unprocessable
from service.storage.keys import check_roles, issue_key
from service.storage.tables import Org, User


class UserIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new user of the caller's org, and their first key."""

    name: str
    roles: list[str]


@get("/me", operation_id="whoAmI", tags=["org"], sync_to_thread=True)
def me(caller: Caller, db: DbDep) -> dict[str, Any]:
    """The caller's org, user and roles."""
    with db.tx() as s:
        org = s.get(Org, caller.org_id)
        user = s.get(User, caller.user_id)
        assert org is not None and user is not None
        return {"org": {"id": org.id, "name": org.name}, "user": {"id": user.id, "name": user.name},
                "roles": sorted(caller.roles)}


@get("/users", operation_id="listUsers", tags=["org"], guards=[ADMINS], sync_to_thread=True)
def list_users(caller: Caller, db: DbDep) -> list[dict[str, Any]]:
    """The org's users."""
    with db.tx() as s:
        rows = s.exec(select(User).where(User.org_id == caller.org_id).order_by(User.id)).all()  # type: ignore[arg-type]
        return [{"id": u.id, "name": u.name, "roles": u.roles.split(",")} for u in rows]


@post("/users", operation_id="createUser", tags=["org"], guards=[ADMINS], sync_to_thread=True)
def create_user(data: JSONBody[UserIn], caller: Caller, db: DbDep) -> dict[str, Any]:
    """A new user with the given roles and their first API key — shown in this response only."""
    try:
        roles = check_roles(data.roles)
    except ValueError as exc:
        raise unprocessable("invalid roles", [error("/roles", "invalid", str(exc))]) from None
    name = data.name.strip()
    if not 1 <= len(name) <= 200:
        raise unprocessable("invalid name", [error("/name", "length", "a name is 1 to 200 characters")])
    with db.tx() as s:
        user = User(org_id=caller.org_id, name=name, roles=roles)
        s.add(user)
        try:
            s.flush()
        except IntegrityError:
            raise conflict(f"a user named {name!r} exists in your org", "duplicate") from None
        _, key = issue_key(s, user)
        return {"id": user.id, "name": user.name, "roles": roles.split(","), "api_key": key}


HANDLERS = [me, list_users, create_user]
