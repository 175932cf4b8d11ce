"""Authentication (``Authorization: Bearer hk_…``) and role guards.

A key that authenticated is remembered for at most :data:`KEY_TTL` seconds (by a SHA-256 of the whole key,
in this process), so a busy caller costs one database look-up per key per TTL, not one per request. The
price: a key revoked (or a user's roles changed) in the database stops working (or changes) within
:data:`KEY_TTL` seconds, not at once. Unknown and revoked keys are never remembered.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
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
#: how long (seconds) a key that authenticated is trusted without asking the database again
KEY_TTL = 5.0
#: keys remembered at most (least recently stored dropped first)
KEY_CACHE_SIZE = 10_000


class KeyCache:
    """Principals of keys that authenticated, each trusted for ``ttl`` seconds after its database look-up.

    Keyed by the SHA-256 of the whole key (secret included), so only the exact key that authenticated can
    hit; bounded to ``size`` entries; thread-safe. ``clock`` is monotonic seconds (a test can drive it)."""

    def __init__(self, ttl: float = KEY_TTL, size: int = KEY_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._items: OrderedDict[bytes, tuple[Principal, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    def cached(self, key: str) -> Principal | None:
        """The principal of ``key`` when it authenticated less than ``ttl`` seconds ago, else ``None``."""
        digest = self._digest(key)
        with self._lock:
            found = self._items.get(digest)
            if found is None:
                return None
            if found[1] <= self.clock():
                del self._items[digest]
                return None
            return found[0]

    def lookup(self, engine: Any, key: str) -> Principal | None:
        """The principal of ``key`` from the database (then remembered), or ``None`` (then forgotten)."""
        principal = authenticate(engine, key)
        digest = self._digest(key)
        with self._lock:
            if principal is None:
                self._items.pop(digest, None)
                return None
            self._items[digest] = (principal, self.clock() + self.ttl)
            self._items.move_to_end(digest)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return principal

    def clear(self) -> None:
        """Forget every key (the next request of each asks the database)."""
        with self._lock:
            self._items.clear()


#: the process's key cache (an app may set its own as ``app.state.key_cache``)
KEYS = KeyCache()


class KeyAuth(AbstractAuthenticationMiddleware):
    """Find the caller's principal from their API key (remembered up to :data:`KEY_TTL` s); 401 without a
    valid one."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise NotAuthorizedException("send your API key as `Authorization: Bearer hk_…`",
                                         headers={"WWW-Authenticate": "Bearer"})
        key = key.strip()
        cache: KeyCache = connection.app.state.get("key_cache") or KEYS
        principal = cache.cached(key)  # a hit costs no database round trip and no worker thread
        if principal is None:
            principal = await anyio.to_thread.run_sync(cache.lookup, connection.app.state.db.engine, key)
        if principal is None:
            raise NotAuthorizedException("the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"})
        return AuthenticationResult(user=principal, auth=key)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The authenticated caller."""
    user = connection.scope.get("user")
    assert isinstance(user, Principal)
    return user


def requires(*roles: str):
    """A guard: the caller needs one of ``roles`` (403 otherwise, naming them). It is a coroutine function
    because it only looks at the principal already found: Litestar runs a plain function guard in a worker
    thread, a hop that cost about as much as a whole hello-world request."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
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
