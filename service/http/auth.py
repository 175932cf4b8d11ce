"""Authentication (``Authorization: Bearer hk_…``) and role guards."""

from __future__ import annotations

from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from service.http.problems import forbidden
from service.storage.keys import Principal, authenticate

#: paths anyone may call (regular expressions anchored at the start): tiny links, unsubscribes and receipts
#: (authenticated by the provider's signature) included
PUBLIC = ("/health", "/ready", "/schema", "/t/", "/u/?$", "/api/v1/webhooks/")


class KeyAuth(AbstractAuthenticationMiddleware):
    """Find the caller's principal from their API key; 401 without a valid one."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("send your API key as `Authorization: Bearer hk_…`",
                                         headers={"WWW-Authenticate": "Bearer"})
        engine = connection.app.state.db.engine
        principal = await anyio.to_thread.run_sync(authenticate, engine, key.strip())
        if principal is None:
            raise NotAuthorizedException("the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        return AuthenticationResult(user=principal, auth=key)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller."""
    user = connection.scope.get("user")
    assert isinstance(user, Principal)
    return user


def requires(*roles: str):
    """A guard: the caller needs one of ``roles`` (403 otherwise, naming them)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if not principal_of(connection).has(*roles):
            raise forbidden(f"this needs the role {' or '.join(roles)}")

    return guard


#: who may change content (messages, audiences, creatives, incentives, rulesets, customers)
EDITORS = requires("marketer", "admin")
#: who may read content
READERS = requires("marketer", "approver", "admin")
#: who may evaluate
EVALUATORS = requires("marketer", "approver", "admin", "service")
#: who may approve or reject
APPROVERS = requires("approver")
#: org settings, users and keys
ADMINS = requires("admin")
