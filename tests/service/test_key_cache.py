"""The API-key cache: a key that authenticated is trusted for at most KEY_TTL (≤ 5 s) without a database
look-up; a key revoked in the database stops working once its TTL is over; unknown keys and wrong secrets are
never let in; on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update

from service.http.auth import KEY_TTL, KeyCache
from service.storage.db import transaction
from service.storage.tables import ApiKey, utcnow


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _revoke(db_engine, key: str) -> None:
    prefix = key.split("_")[1]
    with transaction(db_engine) as s:
        s.execute(update(ApiKey).where(ApiKey.prefix == prefix).values(revoked_at=utcnow()))  # type: ignore[arg-type]


def test_the_ttl_is_at_most_five_seconds():
    assert 0 < KEY_TTL <= 5.0


def test_a_revoked_key_works_until_its_ttl_is_over_then_never(db_engine, org):
    clock = Clock()
    cache = KeyCache(ttl=5.0, clock=clock)
    key = org.keys["service"]
    principal = cache.lookup(db_engine, key)
    assert principal is not None and principal.org_id == org.org_id and principal.roles == {"service"}
    _revoke(db_engine, key)
    clock.now += 4.9
    assert cache.cached(key) == principal  # trusted without asking the database, within the TTL
    clock.now += 0.2
    assert cache.cached(key) is None  # the TTL is over: the database is asked again
    assert cache.lookup(db_engine, key) is None
    assert cache.cached(key) is None


def test_only_the_exact_key_that_authenticated_hits(db_engine, org):
    cache = KeyCache(clock=Clock())
    key = org.keys["marketer"]
    assert cache.lookup(db_engine, key) is not None
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")  # same prefix, another secret
    assert cache.cached(wrong) is None and cache.lookup(db_engine, wrong) is None
    assert cache.cached("hk_nope_nope") is None and cache.lookup(db_engine, "hk_nope_nope") is None
    assert cache.cached(key) is not None


def test_the_cache_is_bounded(db_engine, org):
    cache = KeyCache(size=2, clock=Clock())
    for who in ("marketer", "approver", "service"):
        assert cache.lookup(db_engine, org.keys[who]) is not None
    assert cache.cached(org.keys["marketer"]) is None  # the oldest was dropped
    assert cache.cached(org.keys["approver"]) is not None and cache.cached(org.keys["service"]) is not None


def test_over_http_a_revoked_key_is_refused_once_its_ttl_is_over(app, client, db_engine, org):
    clock = Clock()
    previous = app.state.get("key_cache")
    app.state.key_cache = KeyCache(ttl=KEY_TTL, clock=clock)
    try:
        headers = org.headers("approver")
        assert client.get("/api/v1/me", headers=headers).status_code == 200
        _revoke(db_engine, org.keys["approver"])
        assert client.get("/api/v1/me", headers=headers).status_code == 200  # within the TTL
        clock.now += KEY_TTL
        r = client.get("/api/v1/me", headers=headers)
        assert r.status_code == 401 and "revoked" in r.text
        clock.now += 60
        assert client.get("/api/v1/me", headers=headers).status_code == 401
        assert client.get("/api/v1/me", headers=org.headers("marketer")).status_code == 200
    finally:
        app.state.key_cache = previous
